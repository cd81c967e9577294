"""The application object every command receives, and the one error wrapper.

`mlpack [--debug] [--quiet] COMMAND ...`: the global options live on one `Application`
(the command line context's object), not in module state. Every command function takes it as its
first parameter; `command()` wraps the function so that a problem the user can fix is
one line on stderr and an exit code, and anything else keeps its traceback for --debug.
`command()` also gives every command `--quiet`/`-q`, so that it works after the command's
name as well as before it.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import typer

from ..errors import MlpackError
from ..progress import Progress
from .options import QuietOption


@dataclass
class Application:
    debug: bool = False
    quiet: bool = False

    def progress(self, quiet: bool = False) -> Progress:
        """Progress lines on stderr, unless --quiet was given globally or to the command."""
        return Progress(quiet=self.quiet or quiet)

    def echo(self, text: str = "") -> None:
        typer.echo(text)

    def note(self, text: str) -> None:
        """A line for the user on stderr, beside a result on stdout (never silenced by --quiet)."""
        typer.echo(text, err=True)

    def echo_json(self, data: Any) -> None:
        """One machine-readable summary on stdout (`--json`): the only thing written there."""
        import json

        typer.echo(json.dumps(data, indent=2, default=str))

    def fail(self, message: str, code: int = 1) -> None:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code)


def command(func: Callable[..., Any]) -> Callable[..., Any]:
    """A command function `f(app, **options)` as typer sees it (`f(**options)`), wrapped in
    mlpack's error handling."""

    signature = inspect.signature(func, eval_str=True)
    declares_quiet = "quiet" in signature.parameters  # it takes the value too (e.g. for app.progress(quiet))

    @functools.wraps(func)
    def wrapped(*args: Any, _mlpack_context: typer.Context, **kwargs: Any) -> Any:
        app = _mlpack_context.find_object(Application) or Application()
        quiet = kwargs.get("quiet", False) if declares_quiet else kwargs.pop("quiet", False)
        app.quiet = app.quiet or quiet
        try:
            return func(app, *args, **kwargs)
        except MlpackError as exc:
            if app.debug:
                raise
            app.fail(exc.one_line(), exc.exit_code)
        except KeyboardInterrupt:
            app.fail("interrupted; nothing was left half-written", 130)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if app.debug:
                raise
            text = str(exc).strip()
            detail = text.splitlines()[0] if text else ""
            app.fail(f"unexpected {type(exc).__name__}: {detail}; rerun with --debug for the traceback")

    # Typer reads the options from the signature: the application is not one of them, and a
    # context parameter (typer passes it by its type) brings the application along.
    context = inspect.Parameter("_mlpack_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
    options = list(signature.parameters.values())[1:]
    if not declares_quiet:
        options.append(inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False,
                                         annotation=QuietOption))
    wrapped.__signature__ = signature.replace(parameters=[*options, context])  # type: ignore[attr-defined]
    return wrapped
