"""Command-line conventions: --version, help that lists choices and exit codes, shell completion, colour (and
working without it), `config show`, JSON output, sample separators, progress, and the compilation cache that
spares a second `train` or `sample` of the same model its compiling."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import TINY_TRAIN, assert_ok, cli_env, run_cli, run_cli_process
from rich.console import Console

from charlstm import cli, config, perf, ui
from charlstm.analysis import heatmap
from charlstm.data import download

# JAX logs every persistent-cache hit and miss with these set.
CACHE_LOG = {"JAX_LOG_COMPILES": "1", "JAX_EXPLAIN_CACHE_MISSES": "1"}


def charlstm(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process (only for commands that need no JAX): (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["charlstm", *args])
    monkeypatch.setenv("COLUMNS", "250")  # help on one line per option, whatever the test runner's terminal
    for var in (
        "JAX_COMPILATION_CACHE_DIR",
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
        "JAX_COMPILATION_CACHE_MAX_SIZE",
        "XLA_FLAGS",
    ):
        monkeypatch.delenv(var, raising=False)  # main() sets them for JAX: gone again after the test
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """A tiny run trained with --json into an empty cache: (runs dir, cache dir, the train process)."""
    root = tmp_path_factory.mktemp("conventions")
    runs, cache = root / "runs", root / "cache"
    proc = run_cli_process(
        ["train", *TINY_TRAIN, "--runs-dir", runs, "--name", "first", "--json"],
        cwd=root,
        env={"CHARLSTM_CACHE": str(cache), **CACHE_LOG},
        timeout=300,
    )
    assert_ok(proc)
    return runs, cache, proc


def test_version(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from charlstm import __version__

    assert charlstm(capsys, monkeypatch, "--version") == (0, f"charlstm {__version__}\n", "")


def test_help_lists_choices_metavars_and_exit_codes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = charlstm(capsys, monkeypatch, "--help")
    assert code == 0 and "auto|always|never" in out and "--install-completion" in out
    for line in ("0  success", "1  the work failed", "2  usage", "130  interrupted", "143  stopped by SIGTERM"):
        assert line in out, line
    _, train_help, _ = charlstm(capsys, monkeypatch, "train", "--help")
    train_help = " ".join(train_help.split())  # the help wraps at 80 columns
    assert "utf-8|bytes" in train_help and "KEY=VALUE" in train_help and "charlstm config show" in train_help
    assert "model.hidden" not in train_help.replace("--set model.hidden=128", "")  # no key list: config show has it
    _, compare_help, _ = charlstm(capsys, monkeypatch, "compare-rnn", "--help")
    compare_help = " ".join(compare_help.split())
    assert "params|hidden" in compare_help and "CELL,CELL..." in compare_help and "rnn, lstm, gru" in compare_help
    _, inspect_help, _ = charlstm(capsys, monkeypatch, "inspect", "--help")
    assert "forget|input|output|cell|update|reset|hidden" in inspect_help and "latest|best|STEP" in inspect_help


def leaf_commands() -> list[str]:
    """Every command a user runs, groups' commands included ("corpus get"), from the parser itself."""
    from typer import _click as click
    from typer.main import get_command

    def walk(command: click.Command, prefix: str) -> list[str]:
        subs = getattr(command, "commands", None)
        if not subs:
            return [prefix.strip()]
        return [name for key, sub in subs.items() for name in walk(sub, f"{prefix} {key}")]

    return walk(get_command(cli.app), "")


def test_every_command_has_examples() -> None:
    assert sorted(leaf_commands()) == sorted(cli.EXAMPLES)
    assert {"train", "sample", "compare-rnn", "eval", "export", "inspect", "serve"} <= set(cli.EXAMPLES)


# A value placeholder written as a Python type (<bool>, <str>, <list[int]>) or in angle brackets (<a|b>).
PLACEHOLDER = re.compile(r"<(?:bool|str|int|float|path|list\[[^\]]*\]|[\w.-]+(?:\|[\w.-]+)+)>")


@pytest.mark.parametrize("command", ["", *leaf_commands()], ids=lambda c: c or "charlstm")
def test_help_reads_as_words_with_defaults_and_an_example(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    code, out, err = charlstm(capsys, monkeypatch, *command.split(), "--help")
    assert code == 0 and err == ""
    assert not PLACEHOLDER.findall(out), PLACEHOLDER.findall(out)
    assert "Usage: charlstm" in out and "{" not in out.splitlines()[0] and "[[" not in out.splitlines()[0]
    examples = out.split("Examples:")[1] if "Examples:" in out else ""
    assert f"charlstm {command}".strip() in examples
    for line in out.splitlines():  # an option that takes a value names it in capitals or choices, never a type
        m = re.match(r"\s+(?:-\w, )?--[\w-]+ (\S+)", line)
        if m and not m.group(1).startswith("/"):
            assert not m.group(1).islower() or "|" in m.group(1), line


def test_placeholder_check_finds_what_it_looks_for() -> None:
    assert PLACEHOLDER.findall("--greedy <bool>  --cell <list[int]>  --x <steps|minutes>  corpus <str>") == [
        "<bool>",
        "<list[int]>",
        "<steps|minutes>",
        "<str>",
    ]
    assert not PLACEHOLDER.findall("--config FILE|NAME  --x steps|minutes  runs/NAME/  KEY=VALUE")


def test_charlstm_alone_prints_the_help_and_exits_0(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = charlstm(capsys, monkeypatch)
    assert code == 0 and out.startswith("Usage: charlstm [OPTIONS] COMMAND") and "compare-rnn" in out


def test_plot_help_names_the_plots_extra(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _, out, _ = charlstm(capsys, monkeypatch, "plot", "--help")
    assert 'pip install "charlstm[plots]"' in " ".join(out.split())


def test_config_show_prints_yaml_that_loads_back(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, out, err = charlstm(capsys, monkeypatch, "config", "show", "tiny", "--set", "model.hidden=64")
    assert code == 0 and err == ""
    want = config.load("tiny", ["model.hidden=64"])
    assert yaml.safe_load(out) == want.model_dump()
    assert "  hidden: 64" in out and "# hidden units per layer" in out
    saved = tmp_path / "mine.yaml"
    saved.write_text(out, encoding="utf-8")
    assert config.load(saved) == want  # a starting point for a config file of one's own
    code, _, err = charlstm(capsys, monkeypatch, "config", "show", "--set", "model.hiden=3")
    assert code == 2 and err.startswith("error: unknown config key 'model.hiden'")


@pytest.mark.slow
def test_train_json_is_the_summary(trained: tuple[Path, Path, subprocess.CompletedProcess[str]]) -> None:
    runs, _, proc = trained
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["run"] == str(runs / "first") and summary["steps"] == 4 and summary["params"] > 0
    assert summary["final_val_bpc"] == pytest.approx(summary["final_val_loss"] / 0.6931471805599453)
    assert "training summary" not in proc.stderr  # the table is replaced, not added


@pytest.mark.slow
def test_a_second_train_and_sample_load_their_programs_from_the_cache(
    trained: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    runs, cache, first_train = trained
    env = {"CHARLSTM_CACHE": str(cache), **CACHE_LOG}
    assert "PERSISTENT COMPILATION CACHE MISS for 'jit_step'" in first_train.stderr and (cache / "xla").is_dir()
    second_train = run_cli_process(["train", *TINY_TRAIN, "--runs-dir", runs, "--name", "second", "--quiet"], env=env)
    assert_ok(second_train)
    assert "cache hit for 'jit_step'" in second_train.stderr
    assert "PERSISTENT COMPILATION CACHE MISS" not in second_train.stderr
    samples = [
        run_cli_process(["sample", "--runs-dir", runs, "--length", "30", "--seed", str(seed)], env=env)
        for seed in (1, 2)
    ]
    for proc in samples:
        assert_ok(proc)
    assert "PERSISTENT COMPILATION CACHE MISS for 'jit_chunk'" in samples[0].stderr
    assert "cache hit for 'jit_chunk'" in samples[1].stderr
    assert "PERSISTENT COMPILATION CACHE MISS" not in samples[1].stderr


@pytest.mark.slow
def test_an_empty_charlstm_cache_turns_the_compilation_cache_off(
    trained: tuple[Path, Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    runs, _, _ = trained
    env = {k: v for k, v in cli_env().items() if k not in ("XDG_CACHE_HOME", "JAX_COMPILATION_CACHE_DIR")}
    env.update(CHARLSTM_CACHE="", HOME=str(tmp_path), **CACHE_LOG)
    proc = subprocess.run(
        [sys.executable, "-m", "charlstm.cli", "sample", "--runs-dir", str(runs), "--length", "10"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "persistent compilation cache" not in proc.stderr.lower() and not (tmp_path / ".cache").exists()


def test_compile_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHARLSTM_CACHE", str(tmp_path))
    assert perf.compile_cache_dir() == tmp_path / "xla"
    monkeypatch.setenv("CHARLSTM_CACHE", "")
    assert perf.compile_cache_dir() is None
    monkeypatch.delenv("CHARLSTM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert perf.compile_cache_dir() == tmp_path / "xdg" / "charlstm" / "xla" == download.cache_dir() / "xla"


@pytest.mark.slow
def test_several_samples_are_separated(trained: tuple[Path, Path, subprocess.CompletedProcess[str]]) -> None:
    runs, _, _ = trained
    proc = run_cli(["sample", "--runs-dir", runs, "--prompt", "I ", "--length", "25", "--num-samples", "3"])
    assert_ok(proc)
    lines = proc.stdout.splitlines()
    assert [ln for ln in lines if ln.startswith("--- sample")] == [
        "--- sample 1/3 ---",
        "--- sample 2/3 ---",
        "--- sample 3/3 ---",
    ]
    assert lines[0] == "--- sample 1/3 ---" and lines[1].startswith("I ")


@pytest.mark.slow
def test_completion_of_runs_checkpoints_configs_and_cells(
    trained: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    runs, _, _ = trained

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        env = {
            **cli_env(),
            "_CHARLSTM_COMPLETE": "complete_bash",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "charlstm.cli"], env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert complete(f"charlstm sample --runs-dir {runs} --run ") == ["latest", "first", "second"]
    assert complete(f"charlstm sample --runs-dir {runs} --run first --checkpoint ") == ["latest", "best", "2", "4"]
    assert complete("charlstm train --config ti") == ["tiny"]
    assert complete("charlstm compare-rnn --cells rnn,") == ["rnn,lstm", "rnn,gru"]


# --- colour ------------------------------------------------------------------------------------------------


def test_heatmap_without_colour_draws_bars() -> None:
    row = heatmap.Row("cell", [(c, v) for c, v in zip("ab日", (0.0, 0.5, 1.0))], heatmap.Scale(0.0, 0.5, 1.0))
    view = heatmap.View("t", legends=[("0 shut", "1 open", "gate")], rows=[row])
    plain = Console(file=io.StringIO(), width=40, color_system=None)
    heatmap.print_view(plain, view)
    text = plain.file.getvalue()  # type: ignore[attr-defined]
    assert "ab日\n▁▅██\n" in text  # one bar per column: the wide character gets two
    assert "0 shut ▁▂▃▄▅▆▇█ 1 open" in text and "\x1b" not in text
    coloured = Console(file=io.StringIO(), width=40, color_system="truecolor", force_terminal=True)
    heatmap.print_view(coloured, view)
    shown = coloured.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[" in shown and "▁▅" not in shown


@pytest.fixture
def restore_consoles() -> object:
    saved = [(c, c._color_system, c.no_color) for c in (ui.out, ui.err)]
    yield
    for console, system, no_color in saved:
        console._color_system, console.no_color = system, no_color


def test_color_option(restore_consoles: object) -> None:
    ui.set_color("always")  # even on a pipe (pytest captures stdout)
    assert ui.color_on(ui.out) and ui.color_on(ui.err)
    ui.set_color("never")
    assert not ui.color_on(ui.out) and not ui.color_on(ui.err)


@pytest.mark.slow
def test_inspect_honours_no_color_and_color_always(
    trained: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    runs, _, _ = trained
    args = ["inspect", "--runs-dir", runs, "--text", "I went to ", "--cell", "0"]
    terminal = {"FORCE_COLOR": "1", "TERM": "xterm-256color"}
    coloured = run_cli(args, env=terminal)
    plain = run_cli(args, env={**terminal, "NO_COLOR": "1"})
    forced = run_cli(["--color", "always", *args])  # a pipe, coloured on request
    for proc in (coloured, plain, forced):
        assert_ok(proc)
    background = re.compile(r"\x1b\[[0-9;]*\b48;")  # an SGR sequence that sets a background colour
    assert background.search(coloured.stdout) and "▁▂▃▄▅▆▇█" not in coloured.stdout  # colours, no bars
    assert not background.search(plain.stdout) and "▁▂▃▄▅▆▇█" in plain.stdout
    assert background.search(forced.stdout)


def test_download_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=80)
    with ui.DownloadProgress("downloading tinyshakespeare", console) as progress:
        for done in (0, 500_000, 1_000_000):
            progress(done, 1_000_000)
        assert progress.progress is not None
    assert "downloading tinyshakespeare" in console.file.getvalue()  # type: ignore[attr-defined]
    quiet = ui.DownloadProgress("x", Console(file=io.StringIO()))  # not a terminal: nothing
    quiet(1, 2)
    assert quiet.progress is None
    assert os.environ.get("CHARLSTM_CACHE")  # the session's own cache, never ~/.cache (see conftest.py)
