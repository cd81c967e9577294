"""Help that reads as written: flags show no value type, placeholders keep their brackets.

typer 0.29's rich help prints every option's type, so `--force`, `--debug` and `--help`
read `--force <bool>` as if they took a value. A flag takes none: `FlagsWithoutType` (the
app's group class) gives every flag of every command an empty metavar, which the help
prints as nothing, before the help is formatted or the command runs.

The help is rendered as Markdown (`rich_markup_mode="markdown"`), which reads a placeholder
such as `mlpack-<artifact>` as an HTML tag and drops it. The same hook escapes each `<`
outside code spans (Markdown shows `\\<` as `<`), so help texts are written as they read.
"""

from __future__ import annotations

import re
from typing import Any

import typer.core

_CODE_SPAN = re.compile(r"(`[^`]*`)")
_BARE_OPEN = re.compile(r"(?<!\\)<")


def untype_flags(command: Any, ctx: Any) -> None:
    """Give the flags of `command` (its help option too) an empty metavar."""
    params = list(getattr(command, "params", []))
    help_option = command.get_help_option(ctx) if hasattr(command, "get_help_option") else None
    for param in [*params, help_option]:
        if param is not None and getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


def markdown_literal(text: str) -> str:
    """`text` with every `<` outside code spans escaped for Markdown (idempotent)."""
    parts = _CODE_SPAN.split(text)
    return "".join(part if i % 2 else _BARE_OPEN.sub(r"\\<", part) for i, part in enumerate(parts))


def keep_placeholders(command: Any) -> None:
    """Escape the `<...>` of a command's help and of its parameters' help, for rich's Markdown."""
    if not typer.core.HAS_RICH:  # plain click help prints the text as it is
        return
    if getattr(command, "help", None):
        command.help = markdown_literal(command.help)
    for param in getattr(command, "params", []):
        if getattr(param, "help", None):
            param.help = markdown_literal(param.help)


class FlagsWithoutType(typer.core.TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        untype_flags(self, ctx)
        keep_placeholders(self)
        return super().get_params(ctx)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            untype_flags(found, ctx)
            keep_placeholders(found)
        return found
