"""`/scim/v2`: its own small app, mounted under the API's, with SCIM's media type and
error bodies. Every request needs a live provisioning token; nothing else opens it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from scim2_models.exceptions import SCIMException
from scim2_models.path import AttrPath, Path
from sqlalchemy import func, true
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from users_api.errors import DomainError
from users_api.etags import if_none_match_hits, parse_if_match
from users_api.events.writer import Actor, acting_as
from users_api.http.client import CLIENT_SCOPE
from users_api.scim import discovery, mapping
from users_api.scim import groups as scim_groups
from users_api.scim.errors import (
    ScimError,
    error_response,
    from_domain,
    invalid_value,
    not_found,
    scim_response,
)
from users_api.scim.filters import UserFilter, parse, user_operand
from users_api.scim.groups import ScimGroups, group_condition, group_order
from users_api.scim.tokens import ScimTokens
from users_api.scim.users import ScimUsers
from users_api.texts import holds_nul

LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SEARCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
DEFAULT_COUNT = 100
MOUNTED_AT = "/scim/v2"
Handler = Callable[[Request, Any], Awaitable[Response]]


def _base_url(request: Request) -> str:
    """Where `/scim/v2` is, as the client reached it (`meta.location`, `$ref`)."""
    base = str(request.base_url).rstrip("/")
    return base if base.endswith(MOUNTED_AT) else base + MOUNTED_AT


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def _json(request: Request) -> Any:
    body = await request.body()
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ScimError(400, "The body is not JSON.", "invalidSyntax") from None
    # A NUL can only arrive escaped: the walk is for the bodies that hold the escape.
    if b"\\u0000" in body and holds_nul(document):
        raise invalid_value("No value may hold a NUL character.")
    return document


def _user_id(request: Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params["id"])
    except ValueError:
        raise not_found() from None


# --- attributes and excludedAttributes -----------------------------------------------


def _names(text: str | None) -> list[AttrPath]:
    if not text:
        return []
    paths = []
    for part in text.split(","):
        try:
            node = Path(part.strip()).ast
        except (SCIMException, ValueError):
            raise invalid_value(f"{part.strip()!r} is not an attribute name.") from None
        if not isinstance(node, AttrPath):
            raise invalid_value(f"{part.strip()!r} is not an attribute name.")
        paths.append(node)
    return paths


def _find(document: dict[str, Any], name: str) -> str | None:
    return next((key for key in document if key.lower() == name.lower()), None)


def _extensions(text: str | None, document: dict[str, Any]) -> tuple[list[str], str | None]:
    """The extensions `text` names whole, by their URN (the document's keys), and the
    rest of `text`: `attributes=urn:…:enterprise:2.0:User` is all of that extension."""
    if not text:
        return [], text
    whole, rest = [], []
    for part in text.split(","):
        key = _find(document, part.strip()) if part.strip().lower().startswith("urn:") else None
        if key is not None and isinstance(document[key], dict):
            whole.append(key)
        else:
            rest.append(part)
    return whole, ",".join(rest)


def project(
    document: dict[str, Any], attributes: str | None, excluded: str | None
) -> dict[str, Any]:
    """RFC 7644 3.4.2.5: only `attributes` (with `id` and `schemas`), or all but `excluded`."""
    extensions, attributes = _extensions(attributes, document)
    wanted = _names(attributes)
    if wanted or extensions:
        result: dict[str, Any] = {"schemas": document["schemas"], "id": document["id"]}
        for urn in extensions:
            result[urn] = document[urn]
        for path in wanted:
            holder, target = document, result
            if path.uri is not None and path.uri.lower() != document["schemas"][0].lower():
                key = _find(document, path.uri)
                if key is None or not isinstance(document[key], dict):
                    continue
                holder = document[key]
                target = result.setdefault(key, {})
            key = _find(holder, path.attr)
            if key is None:
                continue
            if path.sub_attr is None:
                target[key] = holder[key]
            elif isinstance(holder[key], dict):
                sub = _find(holder[key], path.sub_attr)
                if sub is not None:
                    target.setdefault(key, {})[sub] = holder[key][sub]
            elif isinstance(holder[key], list):
                picked = [
                    {k: v for k, v in element.items() if k.lower() == path.sub_attr.lower()}
                    for element in holder[key]
                    if isinstance(element, dict)
                ]
                target[key] = [element for element in picked if element]
        return result
    extensions, excluded = _extensions(excluded, document)
    result = {key: value for key, value in document.items() if key not in extensions}
    for path in _names(excluded):
        key = _find(result, path.attr)
        if key is None or key in ("id", "schemas"):
            continue
        if path.sub_attr is None:
            del result[key]
        elif isinstance(result[key], dict):
            result[key] = {
                k: v for k, v in result[key].items() if k.lower() != path.sub_attr.lower()
            }
    return result


# --- lists ------------------------------------------------------------------------------


def _integer(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid_value(f"{name} must be an integer.") from None


# Past any result there can be (PostgreSQL's OFFSET is a bigint): a larger startIndex
# answers the same empty page.
_LAST_INDEX = 2**63 - 1


def _window(query: dict[str, Any]) -> tuple[int, int]:
    """A list request's `startIndex` (1-based, at least 1) and `count` (DEFAULT_COUNT when
    absent, else 0 to MAX_RESULTS): the same for Users, Groups and the root `.search`."""
    start = min(max(_integer(query.get("startIndex"), "startIndex") or 1, 1), _LAST_INDEX)
    count = _integer(query.get("count"), "count")
    count = DEFAULT_COUNT if count is None else min(max(count, 0), discovery.MAX_RESULTS)
    return start, count


def _filter_text(query: dict[str, Any]) -> str | None:
    """A list request's `filter`, which must be a string when sent."""
    text = query.get("filter")
    if text is not None and not isinstance(text, str):
        raise invalid_value("filter must be a string.")
    return text


def _list_response(resources: list[dict[str, Any]], *, total: int, start: int) -> Response:
    """A ListResponse (RFC 7644 3.4.2): `resources`, the page from the `start`-th of the
    `total` there are. Every list answers with it (Users, Groups, `.search`, discovery)."""
    return scim_response(
        {
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": len(resources),
            "Resources": resources,
        }
    )


def _order(sort_by: str | None, sort_order: str | None) -> list[Any]:
    if sort_order is not None and sort_order.lower() not in ("ascending", "descending"):
        raise invalid_value("sortOrder is ascending or descending.")
    if not sort_by:
        return []
    try:
        node = Path(sort_by).ast
    except (SCIMException, ValueError):
        raise invalid_value(f"{sort_by!r} is not an attribute name.") from None
    operand = user_operand(node) if isinstance(node, AttrPath) else None
    if operand is None:
        raise invalid_value(f"Users cannot be sorted by {sort_by}.")
    key = operand.expression
    if operand.kind == "text":
        key = func.lower(key)
    descending = (sort_order or "").lower() == "descending"
    return [key.desc().nulls_last() if descending else key.asc().nulls_last()]


async def _list_users(request: Request, users: ScimUsers, query: dict[str, Any]) -> Response:
    start, count = _window(query)
    text = _filter_text(query)
    condition = UserFilter().visit(parse(text)) if text else None
    order = _order(query.get("sortBy"), query.get("sortOrder"))
    page = await users.list(
        condition if condition is not None else true(), order, start=start, count=count
    )
    base = _base_url(request)
    attributes, excluded = (
        _joined(query.get("attributes")),
        _joined(query.get("excludedAttributes")),
    )
    resources = [project(mapping.to_resource(row, base), attributes, excluded) for row in page.rows]
    return _list_response(resources, total=page.total, start=start)


async def _list_groups(request: Request, groups: ScimGroups, query: dict[str, Any]) -> Response:
    start, count = _window(query)
    text = _filter_text(query)
    sort_by, sort_order = query.get("sortBy"), query.get("sortOrder")
    if sort_order is not None and str(sort_order).lower() not in ("ascending", "descending"):
        raise invalid_value("sortOrder is ascending or descending.")
    order: list[Any] = []
    if sort_by:
        try:
            node = Path(sort_by).ast
        except (SCIMException, ValueError):
            raise invalid_value(f"{sort_by!r} is not an attribute name.") from None
        if not isinstance(node, AttrPath):
            raise invalid_value(f"Groups cannot be sorted by {sort_by}.")
        try:
            key = group_order(node)
        except ScimError:
            raise invalid_value(f"Groups cannot be sorted by {sort_by}.") from None
        descending = str(sort_order or "").lower() == "descending"
        order = [key.desc().nulls_last() if descending else key.asc().nulls_last()]
    attributes, excluded = (
        _joined(query.get("attributes")),
        _joined(query.get("excludedAttributes")),
    )
    members = _wants_members(attributes, excluded)
    page = await groups.list(
        group_condition(text), order, start=start, count=count, members=members
    )
    base = _base_url(request)
    resources = [
        project(scim_groups.to_resource(row, base, members=members), attributes, excluded)
        for row in page.rows
    ]
    return _list_response(resources, total=page.total, start=start)


def _wants_members(attributes: str | None, excluded: str | None) -> bool:
    """Whether members are to be read at all (`excludedAttributes=members`: Entra's)."""
    if attributes:
        return any(
            name.strip().lower().split(".")[0].endswith("members") for name in attributes.split(",")
        )
    if excluded:
        return not any(name.strip().lower().endswith("members") for name in excluded.split(","))
    return True


def _joined(value: Any) -> str | None:
    """`attributes` as a query string (text) or in a SearchRequest (a list)."""
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return value if isinstance(value, str) else None


# --- the endpoints ---------------------------------------------------------------------


def _user_response(request: Request, row: dict[str, Any], *, status_code: int = 200) -> Response:
    resource = mapping.to_resource(row, _base_url(request))
    resource = project(
        resource,
        request.query_params.get("attributes"),
        request.query_params.get("excludedAttributes"),
    )
    headers = {"ETag": mapping.etag(row["tag"])}
    if status_code == 201:
        headers["Location"] = resource["meta"]["location"]
    return scim_response(resource, status_code=status_code, headers=headers)


async def list_users(request: Request, state: Any) -> Response:
    users: ScimUsers = state.scim_users
    return await _list_users(request, users, dict(request.query_params))


async def search_users(request: Request, state: Any) -> Response:
    users: ScimUsers = state.scim_users
    body = await _json(request)
    if not isinstance(body, dict):
        raise ScimError(400, "The body must be a SearchRequest.", "invalidSyntax")
    return await _list_users(request, users, body)


async def create_user(request: Request, state: Any) -> Response:
    users: ScimUsers = state.scim_users
    row = await users.create(await _json(request))
    return _user_response(request, row, status_code=201)


async def get_user(request: Request, state: Any) -> Response:
    users: ScimUsers = state.scim_users
    row = await users.get(_user_id(request))
    if if_none_match_hits(request.headers.get("if-none-match"), row["tag"]):
        return Response(status_code=304, headers={"ETag": mapping.etag(row["tag"])})
    return _user_response(request, row)


def _if_match(request: Request) -> frozenset[int] | None:
    return parse_if_match(request.headers.get("if-match"), weak=True)


async def replace_user(request: Request, state: Any) -> Response:
    users: ScimUsers = state.scim_users
    user_id = _user_id(request)
    row = await users.replace(user_id, await _json(request), _if_match(request))
    return _user_response(request, row)


async def patch_user(request: Request, state: Any) -> Response:
    users: ScimUsers = state.scim_users
    user_id = _user_id(request)
    row = await users.patch(user_id, await _json(request), _if_match(request))
    return _user_response(request, row)


async def delete_user(request: Request, state: Any) -> Response:
    users: ScimUsers = state.scim_users
    await users.delete(_user_id(request), _if_match(request))
    return Response(status_code=204)


def _group_id(request: Request) -> uuid.UUID:
    return _user_id(request)


def _group_response(request: Request, row: dict[str, Any], *, status_code: int = 200) -> Response:
    attributes = request.query_params.get("attributes")
    excluded = request.query_params.get("excludedAttributes")
    members = _wants_members(attributes, excluded)
    resource = scim_groups.to_resource(row, _base_url(request), members=members)
    resource = project(resource, attributes, excluded)
    headers = {"ETag": scim_groups.etag(row["version"])}
    if status_code == 201:
        headers["Location"] = resource["meta"]["location"]
    return scim_response(resource, status_code=status_code, headers=headers)


async def list_groups(request: Request, state: Any) -> Response:
    return await _list_groups(request, state.scim_groups, dict(request.query_params))


async def search_groups(request: Request, state: Any) -> Response:
    body = await _json(request)
    if not isinstance(body, dict):
        raise ScimError(400, "The body must be a SearchRequest.", "invalidSyntax")
    return await _list_groups(request, state.scim_groups, body)


async def search_all(request: Request, state: Any) -> Response:
    """POST /.search: Users, then Groups, as one list (RFC 7644 3.4.3). A filter on an
    attribute one of them lacks matches none of that type; one that neither type takes
    (bad syntax, or no such attribute anywhere) is a 400 `invalidFilter`, as it is at
    /Users/.search."""
    body = await _json(request)
    if not isinstance(body, dict):
        raise ScimError(400, "The body must be a SearchRequest.", "invalidSyntax")
    start, count = _window(body)
    resources: list[dict[str, Any]] = []
    total = 0
    refused: list[ScimError] = []
    for lister, store in ((_list_users, state.scim_users), (_list_groups, state.scim_groups)):
        query = {**body, "startIndex": max(start - total, 1), "count": count - len(resources)}
        query.pop("sortBy", None)
        try:
            answer = orjson.loads((await lister(request, store, query)).body)
        except ScimError as exc:
            if exc.scim_type != "invalidFilter":
                raise
            refused.append(exc)
            continue
        resources.extend(answer["Resources"])
        total += answer["totalResults"]
    if len(refused) == 2:  # neither type takes this filter
        raise refused[0]
    return _list_response(resources, total=total, start=start)


async def create_group(request: Request, state: Any) -> Response:
    row = await state.scim_groups.create(await _json(request))
    return _group_response(request, row, status_code=201)


async def get_group(request: Request, state: Any) -> Response:
    row = await state.scim_groups.get(_group_id(request))
    if if_none_match_hits(request.headers.get("if-none-match"), row["version"]):
        return Response(status_code=304, headers={"ETag": scim_groups.etag(row["version"])})
    return _group_response(request, row)


async def replace_group(request: Request, state: Any) -> Response:
    group_id = _group_id(request)
    row = await state.scim_groups.replace(group_id, await _json(request), _if_match(request))
    return _group_response(request, row)


async def patch_group(request: Request, state: Any) -> Response:
    group_id = _group_id(request)
    row = await state.scim_groups.patch(group_id, await _json(request), _if_match(request))
    return _group_response(request, row)


async def delete_group(request: Request, state: Any) -> Response:
    await state.scim_groups.delete(_group_id(request), _if_match(request))
    return Response(status_code=204)


async def not_implemented(request: Request, state: Any) -> Response:
    """`/Bulk` and `/Me`, which ServiceProviderConfig does not offer: 501, as RFC 7644
    3.7 and 3.11 ask, not a 404 that reads as a wrong base URL."""
    raise ScimError(501, f"{request.url.path.rsplit('/', 1)[-1]} is not supported here.")


async def service_provider_config(request: Request, state: Any) -> Response:
    return scim_response(discovery.service_provider_config(_base_url(request)))


def _one_or_all(request: Request, documents: list[dict[str, Any]]) -> Response:
    """A discovery endpoint (`/ResourceTypes`, `/Schemas`): every document as a list, or
    with an `{id}` the one document of that id (404 when there is none)."""
    wanted = request.path_params.get("id")
    if wanted is None:
        return _list_response(documents, total=len(documents), start=1)
    found = next((d for d in documents if d["id"] == wanted), None)
    if found is None:
        raise not_found()
    return scim_response(found)


async def resource_types(request: Request, state: Any) -> Response:
    return _one_or_all(request, discovery.resource_types(_base_url(request), with_groups=True))


async def schemas(request: Request, state: Any) -> Response:
    return _one_or_all(request, discovery.schemas(_base_url(request), with_groups=True))


@contextmanager
def _recording_client(request: Request) -> Iterator[None]:
    """For a request that may change state, its scope in `http.client.CLIENT_SCOPE`
    (the audit events' `ip_address`); a read records nothing."""
    if request.method in ("GET", "HEAD"):
        yield
        return
    token = CLIENT_SCOPE.set(request.scope)
    try:
        yield
    finally:
        CLIENT_SCOPE.reset(token)


def build(state: Any) -> Starlette:
    """The `/scim/v2` app; `state` is the API's, started (scim/mount.py builds this at the
    first SCIM request): the SCIM services are made here, on its database and services."""
    state.scim_users = ScimUsers(state.db, state.users)
    state.scim_groups = ScimGroups(state.db, state.groups)

    def guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            try:
                tokens: ScimTokens = state.scim_tokens
                token_id = await tokens.authenticate(_bearer(request))
                if token_id is None:
                    raise ScimError(401, "A live provisioning token is required.")
                # Every event this request writes names the token as its actor, and
                # (for a change) the client's address, as the REST write routes do.
                with acting_as(Actor("scim", token_id)), _recording_client(request):
                    return await handler(request, state)
            except ScimError as exc:
                return error_response(exc)
            except DomainError as exc:
                return error_response(from_domain(exc))

        return serve

    def route(path: str, **handlers: Handler) -> Route:
        """One route per path, whatever its methods, so that a 405 names them all in
        `Allow` (a route per method named only the first's)."""
        by_method = {method: guarded(handler) for method, handler in handlers.items()}

        async def serve(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await by_method[method](request)

        return Route(path, serve, methods=list(by_method))

    async def http_error(request: Request, exc: Exception) -> Response:
        """Starlette's refusals in SCIM's form: no route (404), a wrong method (405, with
        its `Allow`), a body that streamed past the limit (413, `middleware.BodySizeLimit`)."""
        assert isinstance(exc, HTTPException)
        status = exc.status_code
        detail = {404: "No such endpoint.", 405: "Method not allowed."}.get(status, exc.detail)
        return error_response(ScimError(status, detail, headers=exc.headers))

    return Starlette(
        routes=[
            route("/Bulk", POST=not_implemented),
            route(
                "/Me", **dict.fromkeys(("GET", "POST", "PUT", "PATCH", "DELETE"), not_implemented)
            ),
            route("/ServiceProviderConfig", GET=service_provider_config),
            route("/ResourceTypes", GET=resource_types),
            route("/ResourceTypes/{id}", GET=resource_types),
            route("/Schemas", GET=schemas),
            route("/Schemas/{id}", GET=schemas),
            route("/Users", GET=list_users, POST=create_user),
            route("/Users/.search", POST=search_users),
            route("/.search", POST=search_all),
            route(
                "/Users/{id}", GET=get_user, PUT=replace_user, PATCH=patch_user, DELETE=delete_user
            ),
            route("/Groups", GET=list_groups, POST=create_group),
            route("/Groups/.search", POST=search_groups),
            route(
                "/Groups/{id}",
                GET=get_group,
                PUT=replace_group,
                PATCH=patch_group,
                DELETE=delete_group,
            ),
        ],
        exception_handlers={HTTPException: http_error},
    )
