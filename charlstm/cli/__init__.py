"""The command line: parse options, call the Python API (`charlstm.api`) or one module per command, print through
`ui`.

- `_app.py`: the typer `app`, global options, the error boundary (`user_errors`, `run`, `main`), shared options,
  and `Command`, which makes every command's --help read the same way
- `training.py`: train, compare-rnn
- `models.py`: sample, eval, export
- `analysis.py`: inspect, runs, plot
- `tools.py`: bench, serve, and the `corpus` and `config` groups

Start-up imports no JAX: every command imports what it needs in its body, after its options and config are
checked, so --help, --version, shell completion and usage or config errors answer at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from charlstm.cli import analysis, models, tools, training
from charlstm.cli._app import CONFIG_EPILOG, Command, app, examples, main, prepare_args, run

__all__ = ["EXAMPLES", "app", "main", "prepare_args", "run"]

# Every command's examples, shown at the end of its --help and in docs/commands.md (scripts/commands_doc.py).
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "train": [
        ("charlstm train", "the bundled essay corpus, configs/default.yaml"),
        ("charlstm train my.txt --time 10m", "your own text: the model sized and the steps fitted to 10 minutes"),
        ("charlstm train my.txt --config shakespeare --time 10m", "a config's model, the steps fitted"),
        ("charlstm train my.txt --config tiny --steps 200", "a small model, 200 steps"),
        ("charlstm train --resume", "continue runs/latest where it stopped"),
    ],
    "sample": [
        ('charlstm sample --prompt "Jammu" --length 200', "from runs/latest"),
        ("charlstm sample --run my-run --checkpoint best --num-samples 5", "five samples at once"),
        ("charlstm sample --prompt \"Jammu\" --stop '\\n' --num-samples 5", "five lines, each ending at its newline"),
        ("charlstm sample --novelty --length 1000", "mark what the sample copies from the training text"),
    ],
    "eval": [("charlstm eval held-out.txt --run my-run", "nats/char and bits/char on a file")],
    "export": [
        ("charlstm export --out model-torch", "any model: a directory PyTorch alone runs"),
        ("charlstm export --out model.html", "any model: one web page that generates text in a browser"),
        ("charlstm export --out model.npz", "a plain LSTM/GRU/RNN for nn.LSTM & co."),
    ],
    "compare-rnn": [
        ("charlstm compare-rnn", "a tanh RNN against an LSTM on the bundled languages corpus"),
        ("charlstm compare-rnn --cells rnn,gru,lstm --out compare/", "add a GRU; CSV, JSON and PNG files"),
        ("charlstm compare-rnn --time 2m", "every cell two minutes of training instead of the same steps"),
    ],
    "bench": [
        ("charlstm bench --config default", "speed, compile time and memory of the default model"),
        ("charlstm bench --set model.hidden=256 --timed-steps 3 --vs-torch", "against PyTorch"),
    ],
    "inspect": [('charlstm inspect --text "I went to Jammu. It was fun. I don\'t speak Kashmiri."', "")],
    "runs": [("charlstm runs", "every run in ./runs, newest first")],
    "serve": [("charlstm serve --open", "the page on http://127.0.0.1:8000/, in the browser")],
    "plot": [
        ("charlstm plot --follow", "the newest run, redrawn while it trains"),
        ("charlstm plot run-a run-b --out loss.png", "two runs, and a PNG of them"),
    ],
    "corpus list": [("charlstm corpus list", "")],
    "corpus get": [("charlstm corpus get tinyshakespeare", "downloaded once, sha256-checked")],
    "config show": [
        ("charlstm config show tiny --set model.hidden=64 > my.yaml", "a starting point"),
        ("charlstm config show --time 10m my.txt", "the model --time would size for my.txt here, and why"),
    ],
}


def _epilog(name: str, *more: str) -> str:
    return "\n\n".join([examples(*EXAMPLES[name]), *more])


def _register(group: typer.Typer, name: str, fn: Callable[..., Any], *more: str) -> None:
    group.command(name.split()[-1], cls=Command, epilog=_epilog(name, *more))(fn)


# All registration is here, in one list, because --help shows the commands in the order they are registered.
_register(app, "train", training.train, CONFIG_EPILOG)
_register(app, "sample", models.sample)
_register(app, "eval", models.eval_)
_register(app, "export", models.export)
_register(app, "compare-rnn", training.compare_rnn, CONFIG_EPILOG)
_register(app, "bench", tools.bench, CONFIG_EPILOG)
_register(app, "inspect", analysis.inspect_)
_register(app, "runs", analysis.runs_)
_register(app, "serve", tools.serve)
_register(app, "plot", analysis.plot)
_register(tools.corpus_app, "corpus list", tools.corpus_list)
_register(tools.corpus_app, "corpus get", tools.corpus_get)
_register(tools.config_app, "config show", tools.config_show)
app.add_typer(tools.corpus_app, name="corpus")
app.add_typer(tools.config_app, name="config")
