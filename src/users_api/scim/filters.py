"""SCIM filters (RFC 7644 3.4.2.2) as SQLAlchemy conditions on the users table.

scim2-models parses the filter (its grammar and syntax tree: `ScimFilter(...).ast`);
this module only says what each attribute is in SQL. Nothing is evaluated in Python:
every comparison is a condition the database checks, and each is made two-valued
(`attribute IS NOT NULL AND ...`) so that `not` means what it says on absent attributes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scim2_models.exceptions import SCIMException
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    FilterVisitor,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ScimFilter,
    ValuePath,
)
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Text,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB

from users_api.groups.models import GroupMember
from users_api.scim.discovery import ENTERPRISE_SCHEMA, USER_SCHEMA
from users_api.scim.errors import invalid_filter
from users_api.scim.mapping import EMAIL_VALUES, KEPT_STRINGS, MULTI_VALUED, NAME_PARTS
from users_api.users.models import User
from users_api.users.schemas import utc_bound

_ORDERED = {CompareOperator.gt, CompareOperator.ge, CompareOperator.lt, CompareOperator.le}
_TEXT_ONLY = {CompareOperator.co, CompareOperator.sw, CompareOperator.ew}
# Multi-valued kept attributes (`mapping.MULTI_VALUED`) are filtered element by element.
_MULTI = {name.lower(): name for name in MULTI_VALUED}
# Single-valued string attributes kept as sent.
_KEPT_STRINGS = {name.lower(): name for name in KEPT_STRINGS}
# The parts of `name` kept as sent (`formatted` is `full_name`, a column).
_NAME_PARTS = {name.lower(): name for name in NAME_PARTS if name != "formatted"}


@dataclass(frozen=True, slots=True)
class Operand:
    """What an attribute is in SQL: an expression and how it compares."""

    expression: Any  # a column or an SQL expression
    kind: str  # "text" (case-insensitive), "exact" (case-exact text), "bool", "uuid", "time"


def parse(text: str) -> FilterNode:
    """A filter's syntax tree; 400 invalidFilter when it is no filter."""
    if len(text) > 2000:
        raise invalid_filter("The filter is too long.")
    try:
        return ScimFilter(text).ast
    except (SCIMException, ValueError) as exc:
        raise invalid_filter(f"Invalid filter: {exc}") from None


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _text_value(value: Any) -> str:
    if not isinstance(value, str):
        raise invalid_filter("This attribute compares with a string.")
    return value


def compare(operand: Operand, op: CompareOperator, value: Any) -> ColumnElement[bool]:
    """One comparison, two-valued: NULL (an absent attribute) compares false."""
    expression, kind = operand.expression, operand.kind
    condition: ColumnElement[bool]
    if value is None:  # `eq null` is `not pr`, `ne null` is `pr` (RFC 7644 3.4.2.2)
        if op not in (CompareOperator.eq, CompareOperator.ne):
            raise invalid_filter("Only eq and ne compare with null.")
        present: ColumnElement[bool] = expression.is_not(None)
        return not_(present) if op == CompareOperator.eq else present
    if kind == "bool":
        if op not in (CompareOperator.eq, CompareOperator.ne) or not isinstance(value, bool):
            raise invalid_filter("A boolean attribute compares with eq or ne and true or false.")
        condition = expression == value
    elif kind == "uuid":
        if op not in (CompareOperator.eq, CompareOperator.ne):
            # The other operators compare the id's canonical text (`id sw "0190"`).
            return compare(Operand(cast(expression, Text), "text"), op, value)
        try:
            condition = expression == uuid.UUID(_text_value(value))
        except ValueError:
            condition = false()  # no id is not a UUID
    elif kind == "time":
        if op in _TEXT_ONLY:
            raise invalid_filter("A dateTime attribute does not take co, sw or ew.")
        try:
            moment = utc_bound(datetime.fromisoformat(_text_value(value)))
        except ValueError:
            raise invalid_filter("A dateTime attribute compares with an RFC 3339 time.") from None
        condition = _ordered(expression, op, literal(moment))
    else:
        text = _text_value(value)
        folded = kind == "text"
        left = func.lower(expression) if folded else expression
        right = func.lower(literal(text)) if folded else literal(text)
        if op in _TEXT_ONLY:
            pattern = {
                CompareOperator.co: f"%{_escape(text)}%",
                CompareOperator.sw: f"{_escape(text)}%",
                CompareOperator.ew: f"%{_escape(text)}",
            }[op]
            like = expression.ilike if folded else expression.like
            condition = like(pattern, escape="\\")
        else:
            condition = _ordered(left, op, right)
    if op == CompareOperator.ne:
        condition = not_(condition)
    # Two-valued: an absent attribute (NULL) compares false, so `not` means what it says.
    # A guard rather than coalesce(), so that the indexes still serve `eq`.
    guarded: ColumnElement[bool] = and_(expression.is_not(None), condition)
    return guarded


def _ordered(left: Any, op: CompareOperator, right: Any) -> ColumnElement[bool]:
    comparisons: dict[CompareOperator, Callable[[Any, Any], ColumnElement[bool]]] = {
        CompareOperator.eq: lambda a, b: a == b,
        CompareOperator.ne: lambda a, b: a == b,  # negated by the caller
        CompareOperator.gt: lambda a, b: a > b,
        CompareOperator.ge: lambda a, b: a >= b,
        CompareOperator.lt: lambda a, b: a < b,
        CompareOperator.le: lambda a, b: a <= b,
    }
    return comparisons[op](left, right)


def _present(operand: Operand) -> ColumnElement[bool]:
    expression = operand.expression
    if operand.kind in ("text", "exact"):
        return func.coalesce(expression != "", false())
    present: ColumnElement[bool] = expression.is_not(None)
    return present


def json_array(document: Any) -> Any:
    """`document` when it is a JSON array, else an empty one (never an error in SQL)."""
    return case(
        (func.jsonb_typeof(document) == "array", document), else_=cast(literal("[]"), JSONB)
    )


class ConditionFilter(FilterVisitor[ColumnElement[bool]]):
    """A filter as an SQL condition. `and`, `or` and `not` mean the same on every resource
    and attribute, so they are written once here; a subclass says what its comparisons and
    presence tests are."""

    def visit_logical_expr(self, node: LogicalExpr) -> ColumnElement[bool]:
        join = and_ if node.op == LogicalOperator.and_ else or_
        return join(*(self.visit(term) for term in node.terms))

    def visit_not(self, node: Not) -> ColumnElement[bool]:
        return not_(self.visit(node.expr))


class MembershipFilter(ConditionFilter):
    """A filter on the `value` of a membership (a user's `groups`, a group's `members`): a
    membership always has its value, and a value path does not nest in one. A subclass
    says which id `value` is and how it compares."""

    def visit_present(self, node: Present) -> ColumnElement[bool]:
        return true()

    def visit_value_path(self, node: ValuePath) -> ColumnElement[bool]:
        raise invalid_filter("Value paths do not nest.")


class _ElementFilter(ConditionFilter):
    """A filter on one element of a multi-valued attribute (`emails[type eq "work"]`)."""

    def __init__(self, element: Any) -> None:
        self.element = element

    def _operand(self, path: AttrPath) -> Operand:
        if path.sub_attr is not None:
            raise invalid_filter(f"{path} is not a sub-attribute.")
        name = path.attr
        if name.lower() == "primary":
            return Operand(cast(func.jsonb_extract_path_text(self.element, name), Boolean), "bool")
        # Sub-attribute names as the client spelled them when it stored them: both cases.
        text = func.coalesce(
            func.jsonb_extract_path_text(self.element, name),
            func.jsonb_extract_path_text(self.element, name.lower()),
        )
        return Operand(text, "text")

    def visit_comparison(self, node: Comparison) -> ColumnElement[bool]:
        return compare(self._operand(node.attr_path), node.op, node.value)

    def visit_present(self, node: Present) -> ColumnElement[bool]:
        return _present(self._operand(node.attr_path))

    def visit_value_path(self, node: ValuePath) -> ColumnElement[bool]:
        raise invalid_filter("Value paths do not nest.")


def _any_element(array: Any, test: Callable[[Any], ColumnElement[bool]]) -> ColumnElement[bool]:
    """Some element of the JSON `array` passes `test`."""
    elements = func.jsonb_array_elements(json_array(array)).table_valued("value").alias()
    return exists(select(literal(1)).select_from(elements).where(test(elements.c.value)))


class UserFilter(ConditionFilter):
    """A filter on SCIM Users as a condition on the users table. `resolve` finds the value paths of
    attributes of other packages (a user's `groups`)."""

    def __init__(
        self,
        resolve: Callable[[AttrPath, FilterNode], ColumnElement[bool] | None] | None = None,
    ) -> None:
        self.resolve = resolve

    def visit_present(self, node: Present) -> ColumnElement[bool]:
        path = node.attr_path
        if path.attr.lower() == "groups":
            return exists().where(GroupMember.user_id == User.id)
        multi = _MULTI.get(path.attr.lower())
        if multi is not None and self._in_core(path):
            if path.sub_attr is None:
                if multi == "emails":
                    return true()  # every user has an email
                return func.jsonb_array_length(json_array(_kept(multi))) > 0
            return _any_element(
                _shown(multi),
                lambda element: _ElementFilter(element).visit(
                    Present(AttrPath(path.sub_attr or ""))
                ),
            )
        return _present(self._operand(path))

    def visit_comparison(self, node: Comparison) -> ColumnElement[bool]:
        path = node.attr_path
        if path.attr.lower() == "groups" and (path.sub_attr or "value").lower() == "value":
            return _in_group(Comparison(AttrPath("value"), node.op, node.value))
        multi = _MULTI.get(path.attr.lower())
        if multi is not None and self._in_core(path):
            sub = path.sub_attr or "value"
            element_test = Comparison(AttrPath(sub), node.op, node.value)
            kept = _any_element(
                _shown(multi), lambda element: _ElementFilter(element).visit(element_test)
            )
            if multi == "emails" and sub.lower() == "value":
                if node.op == CompareOperator.ne:  # no address of the user's is the value
                    return not_(self.visit(Comparison(path, CompareOperator.eq, node.value)))
                return or_(compare(Operand(User.email, "text"), node.op, node.value), kept)
            return kept
        return compare(self._operand(path), node.op, node.value)

    def visit_value_path(self, node: ValuePath) -> ColumnElement[bool]:
        path = node.attr_path
        if path.attr.lower() == "groups" and path.sub_attr is None:
            return _in_group(node.val_filter)
        if self.resolve is not None:
            found: ColumnElement[bool] | None = self.resolve(path, node.val_filter)
            if found is not None:
                return found
        multi = _MULTI.get(path.attr.lower())
        if multi is None or path.sub_attr is not None or not self._in_core(path):
            raise invalid_filter(f"{path} is not a multi-valued attribute.")
        if multi == "emails":
            wanted = _value_eq(node.val_filter)
            found = _any_element(
                _shown(multi), lambda element: _ElementFilter(element).visit(node.val_filter)
            )
            if wanted is None:
                return found
            # What must hold for `value eq` to: the address is kept, or (none kept) is the
            # user's own; both indexed, so the scan above runs on those rows alone.
            kept = User.scim.op("->")(literal_column(f"'{EMAIL_VALUES}'"))
            hint = or_(
                kept.op("@>")(cast(literal(json.dumps([wanted.lower()])), JSONB)),
                and_(_kept("emails").is_(None), func.lower(User.email) == func.lower(wanted)),
            )
            return and_(hint, found)
        array = _kept(multi)
        return _any_element(array, lambda element: _ElementFilter(element).visit(node.val_filter))

    @staticmethod
    def _in_core(path: AttrPath) -> bool:
        return path.uri is None or path.uri.lower() == USER_SCHEMA.lower()

    def _operand(self, path: AttrPath) -> Operand:
        operand = user_operand(path)
        if operand is None:
            raise invalid_filter(f"{path} is not an attribute users can be filtered on.")
        return operand


def _in_group(node: FilterNode) -> ColumnElement[bool]:
    """The user is in some group that passes `node` (on `value`, the group id)."""
    return exists().where(GroupMember.user_id == User.id, _GroupValue().visit(node))


class _GroupValue(MembershipFilter):
    def visit_comparison(self, node: Comparison) -> ColumnElement[bool]:
        if node.attr_path.attr.lower() != "value":
            raise invalid_filter("A user's groups are filtered by value.")
        return compare(Operand(GroupMember.group_id, "uuid"), node.op, node.value)


def _value_eq(node: FilterNode) -> str | None:
    """X when the element filter is `value eq X`, or an `and` holding it."""
    if isinstance(node, Comparison):
        attr = node.attr_path
        if attr.attr.lower() == "value" and attr.sub_attr is None and node.op == CompareOperator.eq:
            return node.value if isinstance(node.value, str) else None
        return None
    if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_:
        return next((v for term in node.terms if (v := _value_eq(term)) is not None), None)
    return None


def _kept(name: str) -> Any:
    return func.jsonb_extract_path(User.scim, name)


def _shown(name: str) -> Any:
    """A multi-valued attribute as the resource shows it (`mapping.to_resource`), so that
    `emails[type eq "work"]` and `emails.type eq "work"` find the same users: a user who
    kept no emails (one made over REST) shows their address as the primary work one."""
    if name != "emails":
        return _kept(name)
    shown = func.jsonb_build_object("value", User.email, "type", "work", "primary", True)
    return func.coalesce(_kept(name), func.jsonb_build_array(shown))


def user_operand(path: AttrPath) -> Operand | None:
    """A single-valued User attribute in SQL (filters and sortBy), or None."""
    attr, sub = path.attr.lower(), (path.sub_attr or "").lower() or None
    if path.uri is not None and path.uri.lower() == ENTERPRISE_SCHEMA.lower():
        parts = [path.attr] if path.sub_attr is None else [path.attr, path.sub_attr]
        return Operand(func.jsonb_extract_path_text(User.scim, ENTERPRISE_SCHEMA, *parts), "text")
    if path.uri is not None and path.uri.lower() != USER_SCHEMA.lower():
        return None
    simple: dict[tuple[str, str | None], Operand] = {
        ("id", None): Operand(User.id, "uuid"),
        ("username", None): Operand(User.username, "text"),
        ("externalid", None): Operand(User.external_id, "exact"),
        ("active", None): Operand(User.is_active, "bool"),
        ("name", "formatted"): Operand(User.full_name, "text"),
        ("meta", "created"): Operand(User.created_at, "time"),
        ("meta", "lastmodified"): Operand(User.updated_at, "time"),
        ("emails", None): Operand(User.email, "text"),
        ("emails", "value"): Operand(User.email, "text"),
    }
    if (attr, sub) in simple:
        return simple[(attr, sub)]
    if attr == "name" and sub in _NAME_PARTS:
        return Operand(func.jsonb_extract_path_text(User.scim, "name", _NAME_PARTS[sub]), "text")
    if attr in _KEPT_STRINGS and sub is None:
        return Operand(func.jsonb_extract_path_text(User.scim, _KEPT_STRINGS[attr]), "text")
    return None


def user_condition(text: str | None) -> ColumnElement[bool]:
    """The condition of a filter on Users (true for none)."""
    if not text:
        return true()
    return UserFilter().visit(parse(text))
