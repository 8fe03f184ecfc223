"""Help text that reads like git's or ruff's, and the CLI reference made from it.

Typer's own help shows internal types (`<bool>`, `<list[str]>`, `{SLUG}`) and, in rich mode,
swallows any words in square brackets as markup. Here every command and group gets plain
click help instead: value options show a metavar named for what they take (`--rate RATE`),
flags show nothing, optional arguments `[SLUG]`, and docstrings are reflowed to the
terminal except for `Example:` and indented lines, which stay as written so they can be
copied and run. `reference()` renders every command's help at a fixed width for
docs/cli.md; tests/test_cli_docs.py fails when that file is stale.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Iterator
from types import MethodType
from typing import Any

# Typer builds its commands on the click it vendors (typer._click) or on click itself,
# depending on its version: the code below only uses what both have, by duck typing.
Command = Any
Context = Any
Formatter = Any
Param = Any

WIDTH = 88


def _metavar(param: Param) -> str:
    if param.metavar:
        return str(param.metavar)
    long_names = [name for name in getattr(param, "opts", ()) if name.startswith("--")]
    if long_names:
        return str(long_names[0][2:].upper().replace("-", "_"))
    return str(param.name or "value").upper()


def _argument_usage(param: Param) -> str:
    name = _metavar(param)
    if param.nargs != 1 and not param.metavar:
        name += "..."
    return name if param.required or param.metavar else f"[{name}]"


def _option_record(param: Param) -> tuple[str, str]:
    names = ", ".join(param.opts)
    if param.secondary_opts:
        names += " / " + ", ".join(param.secondary_opts)
    if not param.is_flag and not param.count:
        names += f" {_metavar(param)}"
        if param.multiple:
            names += " (repeatable)"
    help_text = " ".join((param.help or "").split())
    extra = []
    if param.envvar and param.show_envvar is not False and isinstance(param.envvar, str):
        extra.append(f"env: {param.envvar}")
    default = param.default
    if (
        param.show_default is not False
        and default not in (None, False, (), [], "")
        and not callable(default)
        and not param.is_flag
    ):
        extra.append(f"default: {default}")
    if extra:
        help_text = f"{help_text} [{'; '.join(extra)}]".strip()
    return names, help_text


def _paragraphs(text: str) -> Iterator[tuple[bool, str]]:
    """(verbatim, text) per paragraph: examples and indented blocks stay as written."""
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines = paragraph.splitlines()
        verbatim = any(line.startswith(("Example", "  ", "$ ", "newsletter ")) for line in lines)
        yield verbatim, paragraph if verbatim else " ".join(paragraph.split())


def _wrap(text: str, width: int, indent: str, first: str | None = None) -> str:
    """Wrapped at spaces only: never inside a hyphenated word or a URL (textwrap's default
    splits "double-opts-in" and "grid-explainer")."""
    return textwrap.fill(
        text,
        width=max(width, 20),
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_on_hyphens=False,
        break_long_words=False,
    )


def _write_text(formatter: Formatter, text: str) -> None:
    indent = " " * formatter.current_indent
    formatter.write(_wrap(text, formatter.width, indent) + "\n")


def _write_dl(formatter: Formatter, rows: list[tuple[str, str]]) -> None:
    indent = " " * formatter.current_indent
    first = min(max((len(name) for name, _ in rows), default=0), 30) + 2
    for name, help_text in rows:
        head = f"{indent}{name}"
        gap = " " * (len(indent) + first)
        if not help_text:
            formatter.write(head + "\n")
        elif len(name) + 2 <= first:
            formatter.write(_wrap(help_text, formatter.width, gap, head.ljust(len(gap))) + "\n")
        else:
            formatter.write(head + "\n" + _wrap(help_text, formatter.width, gap) + "\n")


class PlainHelp:
    """Mixed into Typer's command and group classes (see `plain`)."""

    __slots__ = ()

    def format_usage(self: Any, ctx: Context, formatter: Formatter) -> None:
        pieces = ["[OPTIONS]"]
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(_argument_usage(param))
        if hasattr(self, "list_commands"):
            pieces.append("COMMAND [ARGS]...")
        formatter.write_usage(ctx.command_path, " ".join(pieces))

    def format_help_text(self: Any, ctx: Context, formatter: Formatter) -> None:
        if not self.help:
            return
        formatter.write_paragraph()
        with formatter.indentation():
            for number, (verbatim, text) in enumerate(_paragraphs(self.help)):
                if number:
                    formatter.write_paragraph()
                if verbatim:
                    for line in text.splitlines():
                        formatter.write(f"{'':>{formatter.current_indent}}{line}\n")
                else:
                    _write_text(formatter, text)

    def format_options(self: Any, ctx: Context, formatter: Formatter) -> None:
        arguments = [
            (_metavar(param), " ".join((getattr(param, "help", None) or "").split()))
            for param in self.get_params(ctx)
            if param.param_type_name == "argument"
        ]
        options = [
            _option_record(param)
            for param in self.get_params(ctx)
            if param.param_type_name == "option" and not param.hidden
        ]
        if arguments:
            with formatter.section("Arguments"):
                _write_dl(formatter, arguments)
        if options:
            with formatter.section("Options"):
                _write_dl(formatter, options)
        if hasattr(self, "list_commands"):
            self.format_commands(ctx, formatter)

    def format_commands(self: Any, ctx: Context, formatter: Formatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=WIDTH)))
        if rows:
            with formatter.section("Commands"):
                _write_dl(formatter, rows)

    def format_help(self: Any, ctx: Context, formatter: Formatter) -> None:
        self.format_usage(ctx, formatter)
        self.format_help_text(ctx, formatter)
        self.format_options(ctx, formatter)


_METHODS = ("format_help", "format_usage", "format_help_text", "format_options")


def plain(command: Command) -> Command:
    """The same command with plain help. Typer builds the command objects itself (and a
    subclass cannot be swapped in: its classes refuse `__class__` assignment), so the help
    methods are bound on the instance; PlainHelp's methods call each other through `self`,
    so they find one another there."""
    if getattr(command, "_plain_help", False):
        return command
    group = hasattr(command, "list_commands")
    for name in (*_METHODS, "format_commands") if group else _METHODS:
        setattr(command, name, MethodType(getattr(PlainHelp, name), command))
    if group:  # and so do the commands it hands out
        original = command.get_command

        def get_command(ctx: Context, name: str) -> Command:
            sub = original(ctx, name)
            return plain(sub) if sub is not None else None

        command.get_command = get_command
    command._plain_help = True
    return command


def reference(root: Command) -> str:
    """Every command's help, in the order `--help` lists them, as Markdown."""
    out = [
        "# Command-line reference",
        "",
        "Generated from `newsletter ... --help` by `python -m newsletter.cli.reference`;",
        "tests/test_cli_docs.py fails when this file is out of date.",
        "",
    ]

    def walk(command: Command, path: list[str], parent: Context | None) -> None:
        ctx = command.context_class(
            command, info_name=path[-1], parent=parent, terminal_width=WIDTH,
            max_content_width=WIDTH,
        )  # fmt: skip
        formatter = ctx.make_formatter()
        command.format_help(ctx, formatter)
        help_text = formatter.getvalue().rstrip()
        out.extend([f"## {' '.join(path)}", "", "```text", help_text, "```", ""])
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, [*path, name], ctx)

    walk(root, ["newsletter"], None)
    return "\n".join(out)
