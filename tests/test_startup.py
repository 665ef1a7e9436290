"""Start-up stays light: help, the version, usage errors, config errors and `import charlstm` never import JAX
(nor optax or orbax), so they answer at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, cli_env

HEAVY = ("jax", "jaxlib", "optax", "orbax")

# Every invocation runs in one fresh interpreter, one after another: if none of them imports JAX, none is there
# at the end. Each gives (exit code, stderr's first line).
INVOCATIONS: list[tuple[list[str], int]] = [
    ([], 0),  # `charlstm` alone: the help
    (["--help"], 0),
    (["--version"], 0),
    *[
        ([*cmd, "--help"], 0)
        for cmd in (
            ["train"],
            ["sample"],
            ["eval"],
            ["export"],
            ["compare-rnn"],
            ["bench"],
            ["inspect"],
            ["runs"],
            ["serve"],
            ["plot"],
            ["corpus"],
            ["corpus", "list"],
            ["corpus", "get"],
            ["config"],
            ["config", "show"],
        )
    ],
    (["config", "show", "tiny", "--set", "model.hidden=64"], 0),
    # usage errors: the parser's own
    (["train", "--bogus"], 2),
    (["train", "--encoding", "latin-1"], 2),
    (["sample", "--length", "many"], 2),
    (["sample", "--checkpoint", "newest"], 2),
    (["compare-rnn", "--cells", "rnn,transformer"], 2),
    (["inspect", "--show", "everything"], 2),
    (["--color", "sometimes", "train"], 2),
    (["nosuchcommand"], 2),
    # config errors
    (["train", "--set", "model.hiden=64"], 2),
    (["train", "--set", "model.hidden=0"], 2),
    (["train", "--config", "no-such-config"], 2),
    (["bench", "--set", "model.cell=transformer"], 2),
    (["compare-rnn", "--set", "train.steps=-1"], 2),
    (["config", "show", "--set", "model.layers=zero"], 2),
    # options checked before anything is loaded
    (["sample", "--prompt", "a", "--prompt-file", "p.txt"], 2),
    (["export", "--out", "model.pt"], 2),
    (["train", "--resume", "--config", "tiny"], 2),
    (["corpus"], 0),
]

SCRIPT = f"""
import contextlib, io, json, sys
from charlstm import cli
results = []
for args, _ in json.loads(sys.argv[1]):
    sys.argv = ["charlstm", *args]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            cli.main()
            code = 0
        except SystemExit as exit:
            code = exit.code
    results.append([code, (err.getvalue().strip().splitlines() or [""])[0]])
import charlstm
results.append(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r}))
print(json.dumps(results))
"""


def test_help_version_usage_and_config_errors_import_no_jax(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(INVOCATIONS)],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    *results, heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    for (args, want), (code, first_line) in zip(INVOCATIONS, results):
        assert code == want, f"charlstm {' '.join(args)}: exit {code}, wanted {want}: {first_line}"
        if want == 2:
            assert first_line.startswith("error:") or "Usage" in first_line, (args, first_line)
    assert heavy == [], f"imported at start-up: {heavy}"


def test_import_charlstm_is_light_until_a_function_needs_jax() -> None:
    code = (
        "import sys, charlstm; assert callable(charlstm.load) and callable(charlstm.train); "
        "assert issubclass(charlstm.RunError, charlstm.UserError); "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
