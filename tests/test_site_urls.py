"""One maker of every public URL (newsletter/site_urls.py): the routes the app answers are
its constants, each constant is a route, and no other module spells a public path."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from newsletter import site_urls
from newsletter.web.app import create_app
from tests.conftest import Project

PACKAGE = Path(__file__).resolve().parent.parent / "newsletter"
ROUTES = {
    name: value
    for name, value in vars(site_urls).items()
    if name.isupper() and isinstance(value, str)
}


def _paths(routes: list[Any]) -> Iterator[str]:
    for route in routes:
        if hasattr(route, "path"):
            yield route.path
        else:  # an included router (FastAPI keeps it whole)
            yield from _paths(route.original_router.routes)


def test_the_app_answers_exactly_the_site_urls(project: Project) -> None:
    app = create_app(project.config, project.engine(), b"k" * 32)
    declared = set(_paths(app.routes))
    assert declared - {"/"} == set(ROUTES.values())


def test_no_other_module_spells_a_public_path() -> None:
    prefixes = sorted({"/" + site_urls.first_segment(route) + "/" for route in ROUTES.values()})
    prefixes += [site_urls.SUBSCRIBE]
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "site_urls.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in docstrings:
                    continue
                text = node.value
                if any(text.startswith(p) or f"}}{p}" in text for p in prefixes):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {text!r}")
    assert found == []


def test_secret_paths_are_redacted_from_the_log() -> None:
    from newsletter.web.server import redact

    for route in site_urls.SECRET_PATHS:
        line = f"GET {route.format(token='abc.0.def')} HTTP/1.1"
        assert "abc.0.def" not in redact(line), route
