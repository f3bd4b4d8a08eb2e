"""HTTP for groups: parse, call one `GroupService` method, shape status and headers.
Groups are for admins; a user's own groups are for the user too."""

from __future__ import annotations

from fastapi import Request, Response, status

from users_api.etags import format_etag, if_none_match_hits, parse_if_match
from users_api.groups import examples
from users_api.groups.queries import GroupRow
from users_api.groups.schemas import (
    GroupCreate,
    GroupList,
    GroupListQuery,
    GroupOut,
    GroupPage,
    GroupUpdate,
    MemberListQuery,
)
from users_api.groups.service import GroupService
from users_api.http import parse
from users_api.http.openapi import Body, Header, PathId, Query, Reply, doc
from users_api.http.routing import USER_SEGMENT, api_router, path_of
from users_api.responses import json_response
from users_api.users.routes import page_response
from users_api.users.schemas import UserPage

router = api_router("/api/v1/groups", "groups")
# A user's groups, under the user's path.
user_groups_router = api_router("/api/v1/users", "groups")

GROUP_ID = PathId("group_id")
USER_ID = PathId("user_id")
IF_MATCH = Header("If-Match", "Only act if the group's ETag still matches (412 otherwise).")
IF_NONE_MATCH = Header("If-None-Match", "304 with no body if the group's ETag matches.")
A_GROUP = Reply(200, "The group; its ETag is its `version`.", examples.GROUP, ("ETag",))
PAGE_REPLY = ("Link",)


def _groups(request: Request) -> GroupService:
    service: GroupService = request.app.state.groups
    return service


def _path(request: Request, suffix: str = "") -> str:
    """This app's path of the groups, and `suffix` under it."""
    return path_of(request, f"{router.prefix}{suffix}")


def group_response(row: GroupRow, if_none_match: str | None = None) -> Response:
    etag = format_etag(row["version"])
    if if_none_match_hits(if_none_match, row["version"]):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return json_response(row, headers={"ETag": etag})


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    **doc(
        "createGroup",
        "Create a group",
        GroupOut,
        (400, 401, 403, 409),
        Body(GroupCreate, examples.NEW_GROUP),
        reply=Reply(201, "The new group.", examples.GROUP, ("Location", "ETag")),
    ),
)
async def create_group(request: Request) -> Response:
    caller = parse.caller(request)
    body = await parse.json_body(request, GroupCreate)
    row = await _groups(request).create(body, caller=caller)
    headers = {"Location": _path(request, f"/{row['id']}"), "ETag": format_etag(row["version"])}
    return json_response(row, status_code=status.HTTP_201_CREATED, headers=headers)


@router.get(
    "",
    **doc(
        "listGroups",
        "List groups",
        GroupPage,
        (400, 401, 403),
        Query(GroupListQuery),
        reply=Reply(200, "A page of groups; `Link` names the next one.", examples.PAGE, PAGE_REPLY),
    ),
)
async def list_groups(request: Request) -> Response:
    caller = parse.caller(request)
    query = parse.query(request, GroupListQuery)
    page = await _groups(request).list(query, caller=caller)
    return page_response(page, _path(request), query)


@router.get(
    "/{group_id}",
    **doc(
        "getGroup",
        "Get a group",
        GroupOut,
        (304, 401, 403, 404),
        GROUP_ID,
        IF_NONE_MATCH,
        reply=A_GROUP,
    ),
)
async def get_group(request: Request) -> Response:
    caller = parse.caller(request)
    group_id = parse.path_id(request, "group_id")
    row = await _groups(request).get(group_id, caller=caller)
    return group_response(row, parse.header(request, "if-none-match"))


@router.patch(
    "/{group_id}",
    **doc(
        "updateGroup",
        "Change a group (JSON merge patch)",
        GroupOut,
        (400, 401, 403, 404, 409, 412),
        GROUP_ID,
        IF_MATCH,
        Body(GroupUpdate, examples.CHANGE),
        reply=Reply(
            200, "The changed group, with its new ETag.", examples.CHANGED_GROUP, ("ETag",)
        ),
    ),
)
async def update_group(request: Request) -> Response:
    caller = parse.caller(request)
    group_id = parse.path_id(request, "group_id")
    patch = await parse.json_body(request, GroupUpdate)
    if_match = parse_if_match(parse.header(request, "if-match"))
    row = await _groups(request).update(group_id, patch, caller=caller, if_match=if_match)
    return group_response(row)


@router.delete(
    "/{group_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    **doc(
        "deleteGroup",
        "Delete a group (its members stay users)",
        None,
        (401, 403, 404, 412),
        GROUP_ID,
        IF_MATCH,
    ),
)
async def delete_group(request: Request) -> Response:
    caller = parse.caller(request)
    group_id = parse.path_id(request, "group_id")
    if_match = parse_if_match(parse.header(request, "if-match"))
    await _groups(request).delete(group_id, caller=caller, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{group_id}/members",
    **doc(
        "listGroupMembers",
        "List a group's members (users, by id)",
        UserPage,
        (400, 401, 403, 404),
        GROUP_ID,
        Query(MemberListQuery),
        reply=Reply(
            200,
            "A page of the group's users; `Link` names the next one.",
            examples.MEMBERS,
            PAGE_REPLY,
        ),
    ),
)
async def list_group_members(request: Request) -> Response:
    caller = parse.caller(request)
    group_id = parse.path_id(request, "group_id")
    query = parse.query(request, MemberListQuery)
    page = await _groups(request).members(group_id, query, caller=caller)
    return page_response(page, _path(request, f"/{group_id}/members"), query)


@router.put(
    "/{group_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    **doc(
        "addGroupMember",
        "Add a user to a group (idempotent)",
        None,
        (401, 403, 404, 412),
        GROUP_ID,
        USER_ID,
        IF_MATCH,
    ),
)
async def add_group_member(request: Request) -> Response:
    return await _change_member(request, add=True)


@router.delete(
    "/{group_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    **doc(
        "removeGroupMember",
        "Remove a user from a group (idempotent)",
        None,
        (401, 403, 404, 412),
        GROUP_ID,
        USER_ID,
        IF_MATCH,
    ),
)
async def remove_group_member(request: Request) -> Response:
    return await _change_member(request, add=False)


async def _change_member(request: Request, *, add: bool) -> Response:
    """PUT (add) or DELETE (remove) of `/{group_id}/members/{user_id}`: the same request
    and the same answer, 204 with the group's new ETag (a client can go on with
    `If-Match`)."""
    caller = parse.caller(request)
    group_id = parse.path_id(request, "group_id")
    user_id = parse.path_id(request, "user_id")
    if_match = parse_if_match(parse.header(request, "if-match"))
    groups = _groups(request)
    change = groups.add_member if add else groups.remove_member
    row = await change(group_id, user_id, caller=caller, if_match=if_match)
    return Response(
        status_code=status.HTTP_204_NO_CONTENT, headers={"ETag": format_etag(row["version"])}
    )


@user_groups_router.get(
    f"/{USER_SEGMENT}/groups",
    **doc(
        "listUserGroups",
        "List a user's groups",
        GroupList,
        (401, 404),
        USER_ID,
        reply=Reply(200, "Every group of the user, by id.", examples.USER_GROUPS),
    ),
)
async def list_user_groups(request: Request) -> Response:
    caller = parse.caller(request)
    user_id = parse.path_id(request)
    rows = await _groups(request).user_groups(user_id, caller=caller)
    return json_response({"items": rows})
