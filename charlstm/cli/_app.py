"""What every command shares: the typer `app` and its global options, the error boundary (`user_errors`, `main`),
the options several commands take, shell completion and the epilogs.

The only place that turns errors into exit codes: a `UserError` becomes one red line on stderr and exit 1 (the
work failed) or 2 (usage), a click usage error the same one-line form with exit 2; see `charlstm.errors`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar, get_args

import typer

# typer vendors click and does not re-export its exception types
from typer import _click as click
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from charlstm import __version__, ui
from charlstm.errors import EXIT_CODES, UsageError, UserError

F = TypeVar("F", bound=Callable[..., Any])


class Color(str, Enum):  # a typed choice: --help lists it, the parser rejects anything else (exit 2)
    auto = "auto"
    always = "always"
    never = "never"


# --- shell completion (kept JAX-free: completion runs the program once per TAB) ----------------------------


def complete_runs(ctx: typer.Context, incomplete: str) -> list[str]:
    """Run names in --runs-dir (the runs/ default when not typed yet), and latest."""
    runs = Path(ctx.params.get("runs_dir") or "runs")
    try:
        names = sorted(p.name for p in runs.iterdir() if p.name != "latest" and (p / "config.yaml").is_file())
    except OSError:
        return []
    return [n for n in ["latest", *names] if n.startswith(incomplete)]


def complete_checkpoints(ctx: typer.Context, incomplete: str) -> list[str]:
    """latest, best and the saved steps of the run given by --run (or runs/latest)."""
    from charlstm.training import rundir

    steps: list[str] = []
    try:
        run = rundir.resolve(ctx.params.get("run"), Path(ctx.params.get("runs_dir") or "runs"))
        steps = sorted((p.name for p in run.checkpoints.iterdir() if p.name.isdigit()), key=int)
    except (UserError, OSError):
        pass
    return [c for c in ["latest", "best", *steps] if c.startswith(incomplete)]


def complete_configs(incomplete: str) -> list[str]:
    """Bundled config names, and YAML files beside what has been typed."""
    from charlstm import config as config_lib

    where = Path(incomplete).parent
    try:
        files = sorted(
            str(where / p.name) if str(where) != "." else p.name
            for p in where.iterdir()
            if p.suffix in (".yaml", ".yml")
        )
    except OSError:
        files = []
    return [c for c in [*config_lib.list_configs(), *files] if c.startswith(incomplete)]


# --- option checks done by the parser ----------------------------------------------------------------------


def _checkpoint_value(value: str) -> str:
    from charlstm import api

    try:
        return api.parse_checkpoint(value)
    except UsageError as err:
        raise typer.BadParameter(f"{value!r}: use latest, best, or a step number") from err


def _version(value: bool) -> None:
    if value:
        print(f"charlstm {__version__}")
        raise typer.Exit(0)


# --- help a person reads ----------------------------------------------------------------------------------

# A value's placeholder in --help, by the option's type (an explicit metavar wins): words, not Python types.
_TYPE_WORDS: dict[object, str] = {int: "INT", float: "NUMBER", str: "TEXT", Path: "PATH"}


def _placeholder(param: TyperOption | TyperArgument) -> str:
    desc = param.type_descriptor
    if desc.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
    kind = get_args(desc.annotation)[0] if desc.is_list else desc.annotation
    return _TYPE_WORDS.get(kind, "VALUE")


class _Argument(TyperArgument):
    """A positional argument shown as its name in capitals: CORPUS, [CORPUS] when optional, [RUN]... for many."""

    def display_type_rich(self, ctx: click.Context) -> str | None:
        return None  # the name says what it is; its help says the rest

    def _rich_display_name(self) -> str:
        return self._usage_display_name()

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


class _Option(TyperOption):
    """An option whose default may be given in words (`show_default="the config's train.steps"`)."""

    def _get_default_string(self, *, ctx: click.Context, show_default_is_str: bool, default_value: Any) -> str:
        if show_default_is_str:
            return str(self.show_default)
        return super()._get_default_string(
            ctx=ctx, show_default_is_str=show_default_is_str, default_value=default_value
        )


def _plain(params: Sequence[click.Parameter]) -> None:
    """Give every parameter the help form `Command` describes (in place: typer makes the parameters)."""
    for param in params:
        if isinstance(param, TyperArgument):
            param.__class__ = _Argument
            param.metavar = param.metavar.strip("[].") if param.metavar else (param.name or "value").upper()
        elif isinstance(param, TyperOption):
            param.__class__ = _Option
            if param.metavar is None and not param.is_flag:
                param.metavar = _placeholder(param)


class Command(TyperCommand):
    """A command whose --help reads as a person's: flags bare, values named in words (TEXT, INT, RUN, a|b),
    arguments in capitals in one usage style, defaults shown, and the examples as the epilog."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain(self.params)


class Group(TyperGroup):
    """A group of commands (the program itself, `corpus`, `config`) whose options read as `Command`'s do."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain(self.params)


def examples(*lines: tuple[str, str]) -> str:
    """A command's epilog: its examples, each a command line and what it does, kept as written by --help."""
    width = max(len(cmd) for cmd, _ in lines)
    return "\b\nExamples:\n" + "\n".join(f"  {cmd:<{width}}  # {what}" if what else f"  {cmd}" for cmd, what in lines)


# --- the app -----------------------------------------------------------------------------------------------

EXIT_EPILOG = (
    "\b\nExit codes:\n" + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES) + "\n\n"
    "Environment: NO_COLOR turns colour off (as --color never); CHARLSTM_CACHE is the cache directory for "
    "downloads, encoded corpora and compiled programs (default ~/.cache/charlstm; set it empty to compile every time)."
)
CONFIG_EPILOG = (
    "Every config key, its value and what it does: charlstm config show [NAME] [--set KEY=VALUE ...] "
    "prints the resolved YAML."
)

app = typer.Typer(
    help="Train character-level LSTM / GRU / RNN language models on any text file, sample from them, and see "
    "why an LSTM beats a plain RNN on long-range dependencies.",
    epilog=examples(
        ("charlstm train", "train on the bundled corpus"),
        ('charlstm sample --prompt "Jammu"', "sample the newest run"),
        ("charlstm COMMAND --help", "a command's options and examples"),
    )
    + "\n\n"
    + EXIT_EPILOG,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text as written: "[plots]" is an extra's name, not markup
    cls=Group,
)


@app.callback()
def _global_options(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_version, help="Print the version and exit."
    ),
    color: Color = typer.Option(
        Color.auto,
        "--color",
        help="Colour in the output: auto (a terminal, unless NO_COLOR is set), always, or "
        "never. Charts and heatmaps use letters and bars without it.",
    ),
) -> None:
    """Options that come before the command name."""
    ui.set_color(color.value)


def user_errors(fn: F) -> F:
    """Turn UserError into one line and its exit code; Ctrl-C outside training exits 130 quietly."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            ui.error(err.message, err.hint)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            ui.error("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:  # `charlstm sample | head`: the reader left, nothing to report
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps fn's signature; F cannot say so


# --- options several commands take -------------------------------------------------------------------------

ConfigOpt = typer.Option(
    None,
    "--config",
    "-c",
    metavar="FILE|NAME",
    show_default="default",
    autocompletion=complete_configs,
    help="YAML config file, or a bundled name (default, tiny, shakespeare, ...).",
)
SetOpt = typer.Option(
    [], "--set", "-s", metavar="KEY=VALUE", help="Override a config value, e.g. --set model.hidden=128 (repeatable)."
)
RunsDirOpt = typer.Option(Path("runs"), "--runs-dir", metavar="DIR", help="Directory holding runs.")
RunOpt = typer.Option(
    None,
    "--run",
    "-r",
    metavar="RUN",
    show_default="runs/latest, the newest run",
    autocompletion=complete_runs,
    help="Run directory, or a run's name in --runs-dir.",
)
CkptOpt = typer.Option(
    "latest",
    "--checkpoint",
    metavar="latest|best|STEP",
    callback=_checkpoint_value,
    autocompletion=complete_checkpoints,
    help="Which checkpoint: the latest, the best (lowest validation loss), or a step number.",
)
JsonOpt = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


# --- entry point -------------------------------------------------------------------------------------------


def prepare_args(argv: Sequence[str]) -> list[str]:
    """The arguments as the parser takes them: `--resume` may stand alone (meaning runs/latest), so it gets its
    value here."""
    out = []
    for k, a in enumerate(argv):
        out.append(a)
        if a == "--resume" and (k + 1 == len(argv) or argv[k + 1].startswith("-")):
            out.append("latest")
    return out


def _usage_error(err: ClickException) -> int:
    """A click usage error (unknown option, bad value, missing argument) as the same one line as ours."""
    ctx = getattr(err, "ctx", None)
    ui.error(err.format_message(), f"see: {ctx.command_path} --help" if ctx is not None else "see: charlstm --help")
    return err.exit_code


def run(argv: Sequence[str]) -> int:
    """Run the command line on `argv` (the arguments after the program name) and return its exit code; what
    `main` does, for callers that go on afterwards (scripts/make_pictures.py)."""
    from charlstm import perf

    perf.tune_malloc()  # before JAX allocates anything: see charlstm/perf.py
    perf.deterministic_gpu()  # before JAX creates a GPU backend
    perf.compile_cache()  # environment variables only: JAX reads them if a command starts it
    try:
        code = app(args=prepare_args(argv), prog_name="charlstm", standalone_mode=False)
    except NoArgsIsHelpError as err:  # `charlstm` or `charlstm corpus` alone: the help, as --help shows it
        assert err.ctx is not None
        print(err.ctx.get_help())
        code = 0
    except ClickException as err:
        code = _usage_error(err)
    except typer.Abort:
        code = 1
    return int(code or 0)


def main() -> None:
    """Console-script entry point. The commands are on `app` by now: importing this module ran `charlstm.cli`,
    which registers them."""
    sys.exit(run(sys.argv[1:]))
