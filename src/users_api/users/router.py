"""HTTP for users: parse, call one service method, shape status and headers."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import quote_plus, unquote_plus

from fastapi import APIRouter, Header, Query, Request, Response, status
from starlette.datastructures import URL

from users_api.deps import (
    Caller,
    CurrentUser,
    OptionalCaller,
    QuickUpdateDep,
    UserCreationDep,
    UserReaderDep,
    UserServiceDep,
    UserServicesDep,
)
from users_api.errors import problem_responses
from users_api.etags import format_etag, if_none_match_hits, parse_if_match
from users_api.responses import json_response
from users_api.users.reader import RowPage
from users_api.users.reads import PUBLIC_FIELDS, UserRow
from users_api.users.schemas import UserCreate, UserListQuery, UserOut, UserPage, UserUpdate

router = APIRouter(prefix="/api/v1/users", tags=["users"])

IfMatch = Annotated[str | None, Header(description="Only act if the user's ETag still matches.")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=problem_responses(400, 401, 403, 409),
    summary="Register a user",
)
async def create_user(
    body: UserCreate, request: Request, caller: OptionalCaller, creation: UserCreationDep
) -> Response:
    row = await creation.create(body, caller=caller)
    # What `request.url_for("get_user", ...).path` gives, without its search of the
    # routes and its absolute URL: 6 % of a registration's event-loop time, measured.
    root_path = request.scope.get("root_path", "").rstrip("/")
    location = f"{root_path}{router.prefix}/{row['id']}"
    headers = {"Location": location, "ETag": format_etag(row["version"])}
    return json_response(row, status_code=status.HTTP_201_CREATED, headers=headers)


def user_row_response(row: UserRow, if_none_match: str | None = None) -> Response:
    etag = format_etag(row["version"])
    if if_none_match_hits(if_none_match, row["version"]):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return json_response(row, headers={"ETag": etag})


@router.get(
    "",
    response_model=UserPage,
    responses=problem_responses(400, 401, 403),
    summary="List users",
)
async def list_users(
    query: Annotated[UserListQuery, Query()],
    request: Request,
    caller: Caller,
    reader: UserReaderDep,
) -> Response:
    return page_response(await reader.list(query, caller=caller), request.url)


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


@router.get(
    "/me",
    response_model=UserOut,
    responses=problem_responses(304, 401),
    summary="The signed-in user",
)
async def get_me(
    caller: Caller,
    reader: UserReaderDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    return user_row_response(await reader.get(caller.user_id, caller=caller), if_none_match)


@router.get(
    "/{user_id}",
    response_model=UserOut,
    responses=problem_responses(304, 401, 404),
    summary="Get a user",
    name="get_user",
)
async def get_user(
    user_id: uuid.UUID,
    caller: Caller,
    reader: UserReaderDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    return user_row_response(await reader.get(user_id, caller=caller), if_none_match)


@router.patch(
    "/{user_id}",
    response_model=UserOut,
    responses=problem_responses(400, 401, 403, 404, 409, 412),
    summary="Change a user (JSON merge patch)",
)
async def update_user(
    user_id: uuid.UUID,
    body: UserUpdate,
    caller: Caller,
    quick: QuickUpdateDep,
    services: UserServicesDep,
    if_match: IfMatch = None,
) -> Response:
    versions = parse_if_match(if_match)
    row = None
    if quick.covers(body):  # a name, email or username: one statement
        row = await quick.apply(user_id, body, caller=caller, if_match=versions)
    if row is None:  # anything else, or it changed nothing: the full rules say why
        async with services.open() as service:
            actor = await service.actor(caller)
            user = await service.update(user_id, body, actor=actor, if_match=versions)
        row = {name: getattr(user, name) for name in PUBLIC_FIELDS}
    return user_row_response(row)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 404, 409, 412),
    summary="Delete a user",
)
async def delete_user(
    user_id: uuid.UUID, service: UserServiceDep, actor: CurrentUser, if_match: IfMatch = None
) -> None:
    await service.delete(user_id, actor=actor, if_match=parse_if_match(if_match))
