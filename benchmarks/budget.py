"""Validation loss at a time budget, side by side on one machine: `charlstm train --time` against the baselines.

For each budget, one after the other, each a fresh process whose wall time is measured from its start:
  a. `charlstm train CORPUS --time T` (--config auto: the model sized for the corpus and the budget on this
     machine, its steps fitted to the budget, wsd schedule);
  b. the best shipped config for the corpus, `--config shakespeare --time T`: the model tuned by hand, only its
     steps fitted (does the sizing match hand-tuning?);
  b'. (system "bc") that config with its own schedule (cosine for `shakespeare`) for the steps (b) chose: what
     fitting the steps by hand gives;
  c. a plain PyTorch LSTM (benchmarks/torch_baseline.py's recipe: 2 x 256, Adam 2e-3, clip 5, batch 64, windows
     of 100) trained until the budget, scored by charlstm's validation code on its weights;
  d. a character GPT with nanoGPT's CPU recipe (benchmarks/char_gpt.py), its iterations fitted to the budget.
(a), (b) and (c) are scored on the last 10% of the text by charlstm's validation pass; (d) on the same text by
every position with up to 63 characters of context. A JSON line per run; a Markdown table at the end.

    python benchmarks/budget.py --corpus ../shared/corpora/tinyshakespeare.txt --budgets 2m,5m --out /tmp/b.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(cmd: list[str]) -> tuple[dict, float]:
    """A command's last JSON line on stdout, and its wall time."""
    tic = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.monotonic() - tic
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]), wall


def _charlstm(corpus: str, cfg: str, runs: Path, name: str, extra: list[str]) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "charlstm.cli", "train", corpus, "--config", cfg, "--json", "--quiet"]
    return _run([*cmd, "--runs-dir", str(runs), "--name", name, *extra])


def torch_lstm(corpus_arg: str, budget: str, scored_as: str, seed: int = 0) -> None:
    """(c): torch_baseline.py's recipe trained until the budget (counted from this process's start), scored by
    charlstm's validation pass on its weights, over the validation batches of config `scored_as` (that of (b),
    so that both read the same text in the same windows). Prints one JSON line."""
    started = time.monotonic()
    import numpy as np
    import torch

    sys.path.insert(0, str(HERE))
    from torch_baseline import Net, to_charlstm, train_step

    from charlstm import config
    from charlstm.data import batches, corpus
    from charlstm.training import loop

    seconds = config.parse_duration(budget)
    torch.manual_seed(seed)
    cfg = config.load(
        "shakespeare",
        ["model.layers=2", "model.hidden=256", "model.embed=64", "model.dropout=0.0", "model.start_state=zeros"],
    )
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"layer_norm": False})})
    vocab, ids = corpus.load_corpus(corpus.resolve(corpus_arg))
    scoring = config.load(scored_as)
    tr, va = corpus.split(ids, scoring.data.val_fraction)
    val = batches.eval_batches(va, scoring.data.batch_size, scoring.data.seq_len, scoring.train.eval_batches)
    eval_step = loop.make_eval_step(cfg.model)
    loop.validation_loss(to_charlstm(Net(len(vocab), 64, 256, 2)), cfg.model, eval_step, val[:1])  # compile
    net = Net(len(vocab), 64, 256, 2)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    step, times = 0, []
    while True:
        tic = time.monotonic()
        b = batches.random_batch(tr, step, cfg.data.batch_size, cfg.data.seq_len, seed)
        train_step(net, opt, b)
        step += 1
        times.append(time.monotonic() - tic)
        if time.monotonic() - started + float(np.median(times[-50:])) > seconds:
            break
    trained = time.monotonic() - started
    val_loss = loop.validation_loss(to_charlstm(net), cfg.model, eval_step, val)
    print(
        json.dumps(
            {"system": "torch-lstm", "steps": step, "val_loss": round(val_loss, 4), "trained_s": round(trained, 1)}
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--corpus", required=True, help="a text file or a corpus name (charlstm corpus get tinyshakespeare)"
    )
    ap.add_argument("--config", default="shakespeare", help="the shipped config of (b)")
    ap.add_argument("--budgets", default="2m,5m,10m,30m")
    ap.add_argument("--systems", default="a,b,c,d")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--torch-lstm", metavar="BUDGET", help=argparse.SUPPRESS)  # one (c) run, in its own process
    args = ap.parse_args()
    if args.torch_lstm:
        torch_lstm(args.corpus, args.torch_lstm, args.config)
        return
    from charlstm import config
    from charlstm.bench import probes

    gemm_gflops = round(probes.gemm_probe()() / 1e9)  # the machine's fp32 matmul peak, as `charlstm bench` reports
    print(f"fp32 GEMM peak {gemm_gflops} GFLOP/s, {os.cpu_count()} cores", flush=True)
    rows = []
    runs = Path(tempfile.mkdtemp(prefix="charlstm-budget-"))
    for budget in args.budgets.split(","):
        seconds = config.parse_duration(budget)
        chosen = None
        for system in args.systems.split(","):
            if system in ("a", "b"):
                cfg = "auto" if system == "a" else args.config
                out, wall = _charlstm(args.corpus, cfg, runs, f"{system}-{budget}", ["--time", budget])
                info = json.loads((runs / f"{system}-{budget}" / "run.json").read_text())
                size = info["auto_size"]["size"] if "auto_size" in info else cfg
                row = {"val_loss": out["final_val_loss"], "steps": out["steps"], "model": size}
                chosen = out["steps"] if system == "b" else chosen
            elif system == "bc":
                if chosen is None:
                    raise SystemExit("(b') takes the steps (b) chose: list b before bc")
                out, wall = _charlstm(args.corpus, args.config, runs, f"bc-{budget}", ["--steps", str(chosen)])
                row = {"val_loss": out["final_val_loss"], "steps": out["steps"], "model": args.config}
            elif system == "c":
                out, wall = _run(
                    [sys.executable, __file__, "--corpus", args.corpus, "--config", args.config, "--torch-lstm", budget]
                )
                row = {"val_loss": out["val_loss"], "steps": out["steps"]}
            elif system == "d":
                out, wall = _run([sys.executable, str(HERE / "char_gpt.py"), "--corpus", args.corpus, "--time", budget])
                row = {"val_loss": out["val_loss"], "steps": out["steps"]}
            else:
                raise SystemExit(f"unknown system {system!r}: a, b, bc, c or d")
            row = {
                "load_1min": round(os.getloadavg()[0], 2),  # other work on the machine during the run
                "budget": budget,
                "system": system,
                **row,
                "wall_s": round(wall, 1),
                "off_by": round(wall / seconds - 1, 4),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    record = {
        "date": datetime.date.today().isoformat(),
        "cores": os.cpu_count(),
        "gemm_gflops": gemm_gflops,
        "command": " ".join(sys.argv),
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(record, indent=1))
    print("| budget | system | model | steps | val loss | wall time (off by) |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['budget']} | {r['system']} | {r.get('model', '')} | {r['steps']:,} | {r['val_loss']:.4f} | "
            f"{r['wall_s']:.0f} s ({r['off_by']:+.1%}) |"
        )


if __name__ == "__main__":
    main()
