"""What the package declares: every distribution the code imports, and its licence."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "users_api"

# Imported directly but chosen by another declared dependency, which re-exports it:
# FastAPI's own API hands out Starlette's types, and FastAPI pins Starlette's versions.
_COMES_WITH = {"starlette": "fastapi"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["project"]  # type: ignore[no-any-return]  # TOML is untyped


def _declared() -> set[str]:
    dependencies = _pyproject()["dependencies"]
    assert isinstance(dependencies, list)
    return {_normalized(re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0]) for spec in dependencies}


def _imported_top_level_modules() -> set[str]:
    found: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.partition(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__", "users_api"}


def test_every_imported_distribution_is_declared() -> None:
    """A module the code imports must come from a dependency of pyproject.toml, not
    happen to be installed because something else pulled it in (psutil was)."""
    distributions = importlib.metadata.packages_distributions()
    declared = _declared()
    missing = {}
    for module in sorted(_imported_top_level_modules()):
        if _COMES_WITH.get(module) in declared:
            continue
        names = {_normalized(name) for name in distributions.get(module, [module])}
        if not names & declared:
            missing[module] = sorted(names)
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


def test_the_licence_file_matches_pyproject() -> None:
    assert _pyproject()["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "users-api contributors" in text
    assert "Permission is hereby granted, free of charge" in text
