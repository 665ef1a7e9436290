"""The command line: parse options, call the Python API (`charlstm.api`) or one module per command, print through
`ui`.

- `_app.py`: the typer `app`, global options, the error boundary (`user_errors`, `main`), shared options
- `training.py`: train, compare-rnn
- `models.py`: sample, eval, export
- `analysis.py`: inspect, runs, plot
- `tools.py`: bench, serve, and the `corpus` and `config` groups

Start-up imports no JAX: every command imports what it needs in its body, after its options and config are
checked, so --help, --version, shell completion and usage or config errors answer at once.
"""

from __future__ import annotations

from charlstm.cli import analysis, models, tools, training
from charlstm.cli._app import CONFIG_EPILOG, app, main

__all__ = ["app", "main"]

# All registration is here, in one list, because --help shows the commands in the order they are registered.
app.command(epilog=CONFIG_EPILOG)(training.train)
app.command()(models.sample)
app.command(name="eval")(models.eval_)
app.command()(models.export)
app.command(name="compare-rnn", epilog=CONFIG_EPILOG)(training.compare_rnn)
app.command(epilog=CONFIG_EPILOG)(tools.bench)
app.command(name="inspect")(analysis.inspect_)
app.command(name="runs")(analysis.runs_)
app.command()(tools.serve)
app.command()(analysis.plot)
app.add_typer(tools.corpus_app, name="corpus")
app.add_typer(tools.config_app, name="config")
