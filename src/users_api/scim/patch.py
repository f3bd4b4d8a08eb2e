"""SCIM PATCH (RFC 7644 3.5.2) on a resource as SCIM shows it, as real clients send it.

The operations change the resource's document (a dict); the caller then stores the
result through the service, as a PUT of it, so every rule holds. Accepted: `op` in any
case (Entra's `Replace`), path-less operations whose value holds attributes or paths
(Okta's `{"op": "replace", "value": {"active": false}}`), value filters in paths
(`emails[type eq "work"].value`, `members[value eq "..."]`). Paths are parsed by
scim2-models; a value filter picks elements of the one resource in hand.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scim2_models.exceptions import SCIMException
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Path,
    Present,
    ValuePath,
)

from users_api.scim.errors import ScimError, invalid_path, invalid_syntax, invalid_value, mutability

PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
_OPS = ("add", "replace", "remove")


@dataclass(frozen=True, slots=True)
class Shape:
    """What a resource type's PATCH may touch."""

    canonical: Callable[[str], str | None]  # a top-level name as the schema spells it
    read_only: frozenset[str]
    core_schema: str
    extensions: tuple[str, ...] = ()


def _key(mapping: dict[str, Any], name: str) -> Any:
    for key, value in mapping.items():
        if key.lower() == name:
            return value
    return None


def operations(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise invalid_syntax("The body must be a PatchOp object.")
    schemas = _key(body, "schemas")
    if schemas is not None and (
        not isinstance(schemas, list)
        or PATCH_SCHEMA.lower() not in [str(s).lower() for s in schemas]
    ):
        raise invalid_syntax(f"schemas must hold {PATCH_SCHEMA}.")
    ops = _key(body, "operations")
    if not isinstance(ops, list) or not ops or not all(isinstance(op, dict) for op in ops):
        raise invalid_syntax("Operations must be a non-empty list of operations.")
    return ops


def apply_patch(document: dict[str, Any], body: Any, shape: Shape) -> dict[str, Any]:
    """The document once every operation is applied; nothing applied on any error."""
    result = copy.deepcopy(document)
    for operation in operations(body):
        kind = str(_key(operation, "op") or "").lower()
        if kind not in _OPS:
            raise invalid_syntax(
                f"op must be add, replace or remove, not {_key(operation, 'op')!r}."
            )
        path = _key(operation, "path")
        value = _key(operation, "value")
        if path in (None, ""):
            if kind == "remove":
                raise ScimError(400, "remove needs a path.", "noTarget")
            if not isinstance(value, dict):
                raise invalid_value("An operation without a path takes an object value.")
            for name, sub in value.items():
                if _unchanged_read_only(result, name, sub, shape):
                    continue  # Okta sends the group's `id` along, unchanged
                if name.lower() in (s.lower() for s in shape.extensions) and isinstance(sub, dict):
                    for inner, inner_value in sub.items():
                        _apply(result, kind, f"{name}:{inner}", inner_value, shape)
                else:
                    _apply(result, kind, name, sub, shape)
        else:
            if not isinstance(path, str):
                raise invalid_path("path must be a string.")
            if kind != "remove" and "value" not in (key.lower() for key in operation):
                raise invalid_value(f"{kind} needs a value.")
            _apply(result, kind, path, value, shape)
    return result


def _unchanged_read_only(document: dict[str, Any], name: str, value: Any, shape: Shape) -> bool:
    canonical = shape.canonical(name)
    return canonical in shape.read_only and document.get(canonical) == value


def _parse(path: str) -> AttrPath | ValuePath:
    try:
        node = Path(path).ast
    except (SCIMException, ValueError) as exc:
        raise invalid_path(f"Invalid path {path!r}: {exc}") from None
    if not isinstance(node, AttrPath | ValuePath):
        raise invalid_path(f"Invalid path {path!r}.")
    return node


def _container(
    document: dict[str, Any], attr: AttrPath, shape: Shape, *, create: bool
) -> tuple[dict[str, Any], str]:
    """The dict that holds the attribute, and its key there (schema spelling)."""
    uri = attr.uri
    if uri is not None and uri.lower() != shape.core_schema.lower():
        extension = next((e for e in shape.extensions if e.lower() == uri.lower()), None)
        if extension is None:
            raise invalid_path(f"{uri} is not a schema of this resource.")
        holder = document.get(extension)
        if not isinstance(holder, dict):
            holder = {}
            if create:
                document[extension] = holder
        existing = next((key for key in holder if key.lower() == attr.attr.lower()), attr.attr)
        return holder, existing
    name = shape.canonical(attr.attr)
    if name is None:
        raise invalid_path(f"{attr.attr} is not an attribute of this resource.")
    if name in shape.read_only:
        raise mutability(f"{name} is read-only.")
    return document, name


def _merge(old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        merged = dict(old)
        for key, value in new.items():
            existing = next((k for k in merged if k.lower() == key.lower()), key)
            merged.pop(existing, None)
            merged[existing] = value
        return merged
    return new


def _foreign(text: str, shape: Shape) -> bool:
    """A path (or a path-less value's key) in a schema this resource does not have: an
    extension the service keeps none of, as a create ignores it (Entra sends a custom
    extension's attributes when an admin maps them)."""
    lowered = text.lower()
    if not lowered.startswith("urn:"):
        return False
    known = (shape.core_schema, *shape.extensions)
    return not any(lowered.startswith(schema.lower()) for schema in known)


def _apply(document: dict[str, Any], kind: str, text: str, value: Any, shape: Shape) -> None:
    if _foreign(text, shape):
        return
    extension = next((e for e in shape.extensions if e.lower() == text.lower()), None)
    if extension is not None:  # the extension's object as a whole
        if kind == "remove":
            document.pop(extension, None)
        elif not isinstance(value, dict):
            raise invalid_value(f"{extension} takes an object value.")
        else:
            document[extension] = _merge(document.get(extension) or {}, value)
        return
    node = _parse(text)
    if isinstance(node, ValuePath):
        _apply_filtered(document, kind, node, value, shape)
        return
    holder, name = _container(document, node, shape, create=kind != "remove")
    if node.sub_attr is not None:
        complex_value = holder.get(name)
        if isinstance(complex_value, list):
            raise invalid_path(f"{text}: use a value filter for a multi-valued attribute.")
        if not isinstance(complex_value, dict):
            complex_value = {}
        sub = next((k for k in complex_value if k.lower() == node.sub_attr.lower()), node.sub_attr)
        if kind == "remove":
            complex_value.pop(sub, None)
        else:
            complex_value[sub] = value
        holder[name] = complex_value
        return
    if kind == "remove" and isinstance(value, list) and isinstance(holder.get(name), list):
        # Entra removes members as `{"op": "Remove", "path": "members", "value": [...]}`:
        # the elements with those values go, the others stay.
        gone = {str(_value_of(item)).lower() for item in value}
        holder[name] = [item for item in holder[name] if str(_value_of(item)).lower() not in gone]
    elif kind == "remove":
        holder.pop(name, None)
    elif kind == "add" and isinstance(holder.get(name), list):
        added = value if isinstance(value, list) else [value]
        holder[name] = _one_primary(_without_duplicates([*holder[name], *added]), added)
    elif kind == "add" and isinstance(value, list):
        holder[name] = _without_duplicates(value)
    else:
        holder[name] = _merge(holder.get(name), value)


def _value_of(item: Any) -> Any:
    return item.get("value") if isinstance(item, dict) else item


def _without_duplicates(items: list[Any]) -> list[Any]:
    """Elements once each; elements with a `value` (members) once per value."""
    kept: list[Any] = []
    values: set[str] = set()
    for item in items:
        value = _value_of(item)
        if isinstance(item, dict) and value is not None:
            if str(value).lower() in values:
                continue
            values.add(str(value).lower())
        elif item in kept:
            continue
        kept.append(item)
    return kept


def _apply_filtered(
    document: dict[str, Any], kind: str, node: ValuePath, value: Any, shape: Shape
) -> None:
    holder, name = _container(document, node.attr_path, shape, create=kind != "remove")
    elements = holder.get(name)
    if elements is None:
        elements = []
    if not isinstance(elements, list):
        raise invalid_path(f"{name} is not multi-valued.")
    matched = [
        element
        for element in elements
        if isinstance(element, dict) and _matches(element, node.val_filter)
    ]
    sub = node.sub_attr
    if kind == "remove":
        if sub is None:
            holder[name] = [element for element in elements if element not in matched]
        else:
            for element in matched:
                key = next((k for k in element if k.lower() == sub.lower()), sub)
                element.pop(key, None)
        return
    if not matched:
        # Entra replaces `emails[type eq "work"].value` on a user with no work email yet:
        # the element the filter describes is added.
        element = _described(node.val_filter)
        if sub is not None:
            element[sub] = value
        elif isinstance(value, dict):
            element.update(value)
        else:
            raise invalid_value(f"{name}[...] takes an object value.")
        elements.append(element)
        holder[name] = _one_primary(elements, [element])
        return
    for element in matched:
        if sub is None:
            if not isinstance(value, dict):
                raise invalid_value(f"{name}[...] takes an object value.")
            element.update(_merge(element, value))
        else:
            key = next((k for k in element if k.lower() == sub.lower()), sub)
            element[key] = value
    holder[name] = _one_primary(elements, matched)
    return


def _one_primary(elements: list[Any], changed: list[Any]) -> list[Any]:
    """RFC 7643 2.4: `primary` is true on one value at most. When a change made one
    primary, the others are not any more."""
    made = [
        element
        for element in changed
        if _primary(element) and any(element is kept for kept in elements)
    ]
    if made:
        for element in elements:
            chosen = any(element is one for one in made)
            if isinstance(element, dict) and not chosen and _primary(element):
                key = next(k for k in element if k.lower() == "primary")
                element[key] = False
    return elements


def _primary(element: Any) -> bool:
    if not isinstance(element, dict):
        return False
    flag = next((v for k, v in element.items() if k.lower() == "primary"), False)
    return flag is True or (isinstance(flag, str) and flag.lower() == "true")


def _described(node: FilterNode) -> dict[str, Any]:
    """The sub-attributes an `eq` filter (or an `and` of them) says an element has."""
    if isinstance(node, Comparison) and node.op == CompareOperator.eq:
        return {node.attr_path.attr: node.value}
    if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_:
        described: dict[str, Any] = {}
        for term in node.terms:
            described.update(_described(term))
        return described
    raise ScimError(400, "No element matches the path's filter.", "noTarget")


def _matches(element: dict[str, Any], node: FilterNode) -> bool:
    """Whether one element of the resource in hand passes a value filter."""
    if isinstance(node, LogicalExpr):
        results = (_matches(element, term) for term in node.terms)
        return all(results) if node.op == LogicalOperator.and_ else any(results)
    if isinstance(node, Not):
        return not _matches(element, node.expr)
    if isinstance(node, Present):
        return _sub(element, node.attr_path) not in (None, "", [])
    if isinstance(node, Comparison):
        return _compare(_sub(element, node.attr_path), node.op, node.value)
    raise invalid_path("Value filters do not nest.")


def _sub(element: dict[str, Any], path: AttrPath) -> Any:
    return next((v for k, v in element.items() if k.lower() == path.attr.lower()), None)


def _compare(actual: Any, op: CompareOperator, expected: Any) -> bool:
    if isinstance(actual, str) and isinstance(expected, str):
        actual, expected = actual.lower(), expected.lower()
    elif isinstance(expected, bool) and isinstance(actual, str):
        actual = actual.lower() == "true"
    if op == CompareOperator.eq:
        return bool(actual == expected)
    if op == CompareOperator.ne:
        return bool(actual != expected)
    if not isinstance(actual, str) or not isinstance(expected, str):
        return False
    checks = {
        CompareOperator.co: expected in actual,
        CompareOperator.sw: actual.startswith(expected),
        CompareOperator.ew: actual.endswith(expected),
        CompareOperator.gt: actual > expected,
        CompareOperator.ge: actual >= expected,
        CompareOperator.lt: actual < expected,
        CompareOperator.le: actual <= expected,
    }
    return checks[op]
