"""Help that shows no value type for on/off flags.

typer 0.29's rich help prints every option's type, so `--force`, `--debug` and `--help`
read `--force <bool>` as if they took a value. A flag takes none: `FlagsWithoutType` (the
app's group class) gives every flag of every command an empty metavar, which the help
prints as nothing, before the help is formatted or the command runs.
"""

from __future__ import annotations

from typing import Any

import typer.core


def untype_flags(command: Any, ctx: Any) -> None:
    """Give the flags of `command` (its help option too) an empty metavar."""
    params = list(getattr(command, "params", []))
    help_option = command.get_help_option(ctx) if hasattr(command, "get_help_option") else None
    for param in [*params, help_option]:
        if param is not None and getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class FlagsWithoutType(typer.core.TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        untype_flags(self, ctx)
        return super().get_params(ctx)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            untype_flags(found, ctx)
        return found
