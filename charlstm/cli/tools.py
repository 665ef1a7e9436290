"""The other commands: `bench` (speed and memory), `serve` (the local web page), and the `corpus` and `config`
groups (the corpora there are, and what a configuration holds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from charlstm import ui
from charlstm.cli._app import (
    ConfigOpt,
    Group,
    JsonOpt,
    RunsDirOpt,
    SetOpt,
    complete_configs,
    complete_runs,
    user_errors,
)
from charlstm.errors import UsageError


@user_errors
def bench(
    config: str | None = ConfigOpt,
    set_: list[str] = SetOpt,
    timed_steps: int = typer.Option(
        5, "--timed-steps", metavar="N", help="Training steps timed per round, after compilation."
    ),
    rounds: int = typer.Option(
        5, "--rounds", metavar="N", help="Measurement rounds; speeds and ratios are medians over rounds."
    ),
    json_out: bool = JsonOpt,
    vs_torch: bool = typer.Option(
        False,
        "--vs-torch",
        help="Also run the same model in PyTorch, alternating, and print the ratios (needs the bench extra: pip "
        'install "charlstm[bench]").',
    ),
) -> None:
    """Training and sampling speed, compile time (cold and cached), time to the first sampled character, memory
    and the fraction of the machine's matmul peak."""
    import dataclasses

    from charlstm import config as config_lib

    cfg = config_lib.load(config, set_)
    from charlstm.bench import bench as bench_lib

    res = bench_lib.run(cfg, steps=timed_steps, rounds=rounds, vs_torch=vs_torch, log=ui.info)
    if json_out:
        print(json.dumps(dataclasses.asdict(res)))
        return
    ui.table("charlstm bench", ["metric", "value"], bench_lib.rows(res))


@user_errors
def serve(
    run: str | None = typer.Option(
        None,
        "--run",
        "-r",
        metavar="RUN",
        show_default="runs/latest, the newest run",
        autocompletion=complete_runs,
        help="The run the page opens with; the page lists every run in --runs-dir.",
    ),
    runs_dir: Path = RunsDirOpt,
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        metavar="HOST",
        help="Address to listen on. The page has no authentication: anything but loopback lets the network use it.",
    ),
    port: int = typer.Option(8000, "--port", metavar="N", help="Port to listen on (0: any free port)."),
    open_: bool = typer.Option(False, "--open", help="Open the page in the web browser."),
) -> None:
    """A local web page: type, and watch each character colour the gates and memory cells and move the
    next-character guesses; sample with sliders; the runs' loss curves and configs.

    Needs the serve extra: pip install "charlstm[serve]"."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be in 0..65535 (got {port})", "e.g. --port 8000")
    from charlstm import serve as serve_lib

    serve_lib.require()
    from charlstm.serve import app as serve_app

    if not serve_app.is_loopback(host):
        ui.warn(f"listening on {host}: the page has no authentication, anyone who can reach it can use it")
    signum = serve_app.serve(runs_dir, run, host, port, open_, log=ui.info)
    if signum:  # stopped as documented: 130 for Ctrl-C, 143 for SIGTERM
        ui.info("stopped")
        raise typer.Exit(128 + signum)


corpus_app = typer.Typer(help="List and download corpora.", no_args_is_help=True, rich_markup_mode=None, cls=Group)


@user_errors
def corpus_list() -> None:
    """Show the bundled and the downloadable corpora (and where the downloaded ones are)."""
    from charlstm.data import corpus as corpus_lib

    ui.table("corpora", ["", "where", "what"], corpus_lib.list_corpora(), left=["where", "what"])


@user_errors
def corpus_get(
    name: str = typer.Argument(..., help="Corpus name, e.g. tinyshakespeare (charlstm corpus list shows them)."),
    url: str | None = typer.Option(
        None, "--url", metavar="URL", help="Download from this URL (a mirror) instead; the checksum is still verified."
    ),
) -> None:
    """Download a corpus into the cache, verify its checksum and print its path."""
    from charlstm.data import download

    with ui.DownloadProgress(f"downloading {name}") as progress:
        path = download.get(name, url, progress=progress)
    ui.info(f"{name}: verified sha256, cached")
    print(path)


config_app = typer.Typer(
    help="Show configurations: every key, its value and what it does.",
    no_args_is_help=True,
    rich_markup_mode=None,
    cls=Group,
)


@user_errors
def config_show(
    name: str | None = typer.Argument(
        None,
        metavar="CONFIG",
        autocompletion=complete_configs,
        help="A bundled config name or a YAML file (default: default, or auto for a time budget on your own CORPUS).",
    ),
    corpus: str | None = typer.Argument(
        None, metavar="[CORPUS]", help="With --time: the text to size the model for (alone, it may come first)."
    ),
    set_: list[str] = SetOpt,
    time_budget: str | None = typer.Option(
        None,
        "--time",
        metavar="DURATION",
        help="Show what `charlstm train CORPUS --time DURATION` would train: the model sized for the budget on this "
        "machine (a short timing of each size, kept in the charlstm cache), and why.",
    ),
) -> None:
    """Print the resolved config as YAML, each key with what it does: a starting point for your own file."""
    from charlstm import config as config_lib

    if time_budget is None:
        if corpus is not None:
            raise UsageError("a CORPUS goes with --time", "e.g. charlstm config show --time 10m my.txt")
        cfg = config_lib.load(name, set_)
        print(_commented_yaml(cfg, name or "default", set_), end="")
        return
    is_config = name is not None and (Path(name).suffix in {".yaml", ".yml"} or name in config_lib.list_configs())
    if corpus is None and name is not None and not is_config:
        name, corpus = None, name  # `config show --time 10m my.txt`
    from charlstm import api

    cfg, choice = api.auto_size(corpus, time_budget, name, set_, log=ui.info)
    if choice is None:
        ui.info(f"the model is {name or 'default'}'s: with --time only the steps and the schedule fit the budget")
        print(_commented_yaml(cfg, name or "default", [*set_, f"train.time={time_budget}"]), end="")
        return
    ui.table(
        f"auto size: {choice.train_chars:,} training chars, {time_budget} on this machine",
        ["size", "params", "s/step", "steps", "chars/param", ""],
        choice.rows(),
        console=ui.err,
    )
    from charlstm.training import sizing

    ui.info(sizing.rule())
    ui.info(choice.line())
    print(f"# {choice.line()}")
    print(_commented_yaml(cfg, "auto", [*set_, f"train.time={time_budget}"]), end="")


def _commented_yaml(cfg: Any, source: str, overrides: list[str]) -> str:
    """The config as YAML that loads back to the same values, every key followed by its description."""
    import yaml

    from charlstm import config as config_lib

    notes = {key: description for key, _, description in config_lib.describe()}
    lines = [f"# charlstm config {source}" + "".join(f" --set {o}" for o in overrides)]
    for section, values in cfg.model_dump().items():
        lines.append(f"{section}:")
        pairs = [
            (
                f"  {yaml.safe_dump({k: v}, default_flow_style=False, width=1 << 20).strip()}",
                notes.get(f"{section}.{k}", ""),
            )
            for k, v in values.items()
        ]
        pad = max(len(p) for p, _ in pairs)
        lines += [f"{p:<{pad}}  # {note}" if note else p for p, note in pairs]
    return "\n".join(lines) + "\n"
