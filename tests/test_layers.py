"""The folders follow the flow, and imports only go down it (docs/architecture.md, "Layers"):
the base modules import only each other; each stage imports the base and the stages below
it; nothing imports the CLI. A new import across the grain fails here."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "newsletter"
STAGES = (
    "collect",
    "editorial",
    "audience",
    "delivery",
    "feedback",
    "reporting",
    "web",
    "cli",
    "migrations",
)
# What each part may import besides the base and itself.
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "collect": set(),
    "editorial": {"collect"},
    "audience": set(),
    "delivery": {"audience", "editorial"},
    "feedback": {"audience", "delivery"},
    "reporting": {"audience", "delivery", "feedback"},
    "web": {"audience", "delivery", "editorial", "feedback"},
    "project": {"audience"},
    "migrations": set(),
    "cli": {
        "collect",
        "editorial",
        "audience",
        "delivery",
        "feedback",
        "reporting",
        "web",
        "project",
    },
    "__main__": {"cli"},
}


def part(module: str) -> str:
    pieces = module.split(".")
    if len(pieces) == 1:
        return "base"
    if pieces[1] in STAGES:
        return pieces[1]
    return pieces[1] if pieces[1] in ("project", "__main__") else "base"


def imports() -> list[tuple[str, str]]:
    found = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("newsletter"):
                targets = (
                    [f"newsletter.{alias.name}" for alias in node.names]
                    if node.module == "newsletter"
                    else [node.module or ""]
                )
                found += [(module, target) for target in targets]
            elif isinstance(node, ast.Import):
                found += [(module, a.name) for a in node.names if a.name.startswith("newsletter")]
    return found


def test_imports_only_go_down_the_flow() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, target in imports()
        if part(target) not in {"base", part(module)} | ALLOWED[part(module)]
    ]
    assert wrong == []


def test_every_stage_is_a_folder() -> None:
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").is_file() or stage == "migrations"


def test_the_ledger_alone_writes_a_deliverys_state() -> None:
    """delivery/ledger.py holds the states and their moves (docs/architecture.md); a state
    written elsewhere is a move it does not know."""
    import re

    writes = re.compile(
        r"UPDATE deliveries SET[^\"]*\bstate\b|update\(Delivery\)[\s\S]{0,300}?state="
    )
    found = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "ledger.py" and writes.search(path.read_text())
    ]
    assert found == []
