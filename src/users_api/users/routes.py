"""HTTP for users: parse, call one service method, shape status and headers."""

from __future__ import annotations

from urllib.parse import quote_plus, unquote_plus

from fastapi import Request, Response, status
from starlette.datastructures import URL

# As the login reads it; moves out of `auth` on the sessions branch (`http/`).
from users_api.auth.client_address import client_address
from users_api.etags import format_etag, if_none_match_hits, parse_if_match
from users_api.http import parse
from users_api.http.openapi import Auth, Body, Header, PathId, Query, doc
from users_api.http.routing import api_router
from users_api.responses import json_response
from users_api.users.queries import UserRow
from users_api.users.schemas import UserCreate, UserListQuery, UserOut, UserPage, UserUpdate
from users_api.users.service import RowPage, UserService

router = api_router("/api/v1/users", "users")

IF_MATCH = Header("If-Match", "Only act if the user's ETag still matches (412 otherwise).")
IF_NONE_MATCH = Header("If-None-Match", "304 with no body if the user's ETag matches.")
USER_ID = PathId("user_id")


def _users(request: Request) -> UserService:
    service: UserService = request.app.state.users
    return service


def user_response(row: UserRow, if_none_match: str | None = None) -> Response:
    etag = format_etag(row["version"])
    if if_none_match_hits(if_none_match, row["version"]):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return json_response(row, headers={"ETag": etag})


@router.get(
    "/me", **doc("getCurrentUser", "The signed-in user", UserOut, (304, 401), IF_NONE_MATCH)
)
async def get_me(request: Request) -> Response:
    caller = parse.caller(request)
    row = await _users(request).get(caller.user_id, caller=caller)
    return user_response(row, parse.header(request, "if-none-match"))


@router.get(
    "/{user_id}", **doc("getUser", "Get a user", UserOut, (304, 401, 404), USER_ID, IF_NONE_MATCH)
)
async def get_user(request: Request) -> Response:
    caller = parse.caller(request)
    user_id = parse.path_id(request)
    row = await _users(request).get(user_id, caller=caller)
    return user_response(row, parse.header(request, "if-none-match"))


@router.patch(
    "/{user_id}",
    **doc(
        "updateUser",
        "Change a user (JSON merge patch)",
        UserOut,
        (400, 401, 403, 404, 409, 412),
        USER_ID,
        IF_MATCH,
        Body(UserUpdate),
    ),
)
async def update_user(request: Request) -> Response:
    caller = parse.caller(request)
    user_id = parse.path_id(request)
    patch = await parse.json_body(request, UserUpdate)
    if_match = parse_if_match(parse.header(request, "if-match"))
    row = await _users(request).update(user_id, patch, caller=caller, if_match=if_match)
    return user_response(row)


@router.get("", **doc("listUsers", "List users", UserPage, (400, 401, 403), Query(UserListQuery)))
async def list_users(request: Request) -> Response:
    caller = parse.caller(request)
    query = parse.query(request, UserListQuery)
    page = await _users(request).list(query, caller=caller)
    return page_response(page, request.url)


def next_page_url(url: URL, cursor: str) -> str:
    """This page's URL with `cursor` set to the next page's, the rest as the client sent it.

    The other parameters are kept as they came, encoded: decoding and encoding them
    again (`URL.include_query_params`) cost more than the rest of the header.
    """
    base, _, query = str(url).partition("?")
    kept = [
        part
        for part in query.split("&")
        if part and unquote_plus(part.partition("=")[0]) != "cursor"
    ]
    kept.append(f"cursor={quote_plus(cursor)}")
    return f"{base}?{'&'.join(kept)}"


def page_response(page: RowPage, url: URL) -> Response:
    headers = {}
    if page.next_cursor is not None:
        headers["Link"] = f'<{next_page_url(url, page.next_cursor)}>; rel="next"'
    return json_response({"items": page.items, "next_cursor": page.next_cursor}, headers=headers)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    **doc(
        "createUser",
        "Register a user",
        UserOut,
        (400, 401, 403, 409, 429),
        Body(UserCreate),
        Auth.OPTIONAL,
    ),
)
async def create_user(request: Request) -> Response:
    caller = parse.optional_caller(request)
    body = await parse.json_body(request, UserCreate)
    address = client_address(request, request.app.state.settings.trusted_proxies)
    row = await _users(request).create(body, caller=caller, address=address)
    # What `request.url_for("getUser", ...).path` gives, without its search of the
    # routes and its absolute URL: 6 % of a registration's event-loop time, measured.
    root_path = request.scope.get("root_path", "").rstrip("/")
    location = f"{root_path}{router.prefix}/{row['id']}"
    headers = {"Location": location, "ETag": format_etag(row["version"])}
    return json_response(row, status_code=status.HTTP_201_CREATED, headers=headers)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    **doc("deleteUser", "Delete a user", None, (401, 404, 409, 412), USER_ID, IF_MATCH),
)
async def delete_user(request: Request) -> Response:
    caller = parse.caller(request)
    user_id = parse.path_id(request)
    if_match = parse_if_match(parse.header(request, "if-match"))
    await _users(request).delete(user_id, caller=caller, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
