"""The measurements behind `--config auto`'s rule: each candidate size of `charlstm.training.sizing.LADDER`
trained to a time budget on a corpus, one fresh process after the other, and the chart of validation loss
against budget per size with the size the rule picks marked.

    python benchmarks/sizing.py run --corpus ../shared/corpora/tinyshakespeare.txt --budgets 2m,10m \\
        --sizes 2x128,2x256,2x384 --out sizing.jsonl
    python benchmarks/sizing.py chart sizing.jsonl --out docs/images/sizing.svg

Each run is `charlstm train CORPUS --config auto --set model.auto_size=false --set ...` with the size's keys
(`sizing.sized`), so it trains what `--time` would train had the rule picked that size. A JSON line per run:
corpus, training characters, budget, size, parameters, steps, the best validation loss and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _overrides(name: str) -> list[str]:
    from charlstm import config
    from charlstm.training import sizing

    size = next((s for s in sizing.LADDER if s.name == name), None)
    if size is None:
        raise SystemExit(f"unknown size {name!r}: one of {', '.join(s.name for s in sizing.LADDER)}")
    cfg = sizing.sized(config.load("auto", ["train.time=1m"]), size)
    m = cfg.model
    keys = {
        "model.auto_size": "false",
        "model.layers": m.layers,
        "model.hidden": m.hidden,
        "model.dropout": m.dropout,
        "model.weight_drop": m.weight_drop,
        "model.compute_dtype": m.compute_dtype,
        "optim.weight_decay": cfg.optim.weight_decay,
    }
    return [a for k, v in keys.items() for a in ("--set", f"{k}={v}")]


def run(args: argparse.Namespace) -> None:
    runs = Path(tempfile.mkdtemp(prefix="charlstm-sizing-"))
    for budget in args.budgets.split(","):
        for size in args.sizes.split(","):
            name = f"{Path(args.corpus).stem}-{budget}-{size}"
            cmd = [sys.executable, "-m", "charlstm.cli", "train", args.corpus, "--config", "auto", "--time", budget]
            cmd += [*_overrides(size), "--json", "--quiet", "--runs-dir", str(runs), "--name", name]
            tic = time.monotonic()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.monotonic() - tic
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
            out = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
            row = {
                "corpus": Path(args.corpus).name,
                "train_chars": _train_chars(args.corpus),
                "budget": budget,
                "size": size,
                "params": out["params"],
                "steps": out["steps"],
                "best_val_loss": round(out["best_val_loss"], 4),
                "wall_s": round(wall, 1),
                "load_1min": round(os.getloadavg()[0], 2),
            }
            print(json.dumps(row), flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")


def _train_chars(corpus_arg: str) -> int:
    """The characters `charlstm train` trains on: the first 90% (data.val_fraction 0.1) of the text."""
    from charlstm.data import corpus

    return corpus.train_length(len(corpus.resolve(corpus_arg).read_text(encoding="utf-8")), 0.1)


def chosen(rows: list[dict], chars_per_step: int = 64 * 100) -> set[tuple[str, str, str]]:
    """(corpus, budget, size) of the size the rule (`sizing.pick`) picks among the measured ones, from each run's
    own steps."""
    from charlstm.training import sizing

    ladder = {s.name: s for s in sizing.LADDER}
    picks = set()
    for key in {(r["corpus"], r["budget"]) for r in rows}:
        here = sorted((r for r in rows if (r["corpus"], r["budget"]) == key), key=lambda r: r["params"])
        options = [
            sizing.Option(ladder[r["size"]], r["params"], 1.0, True, r["steps"], r["steps"] * chars_per_step)
            for r in here
        ]
        best, _ = sizing.pick(options, here[0]["train_chars"])
        picks.add((*key, best.size.name))
    return picks


def chart(args: argparse.Namespace) -> None:
    from charlstm import config
    from charlstm.analysis.png_charts import MPL_RUN_COLORS, matplotlib_figure

    rows = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    corpora = sorted({r["corpus"] for r in rows}, key=lambda c: min(r["train_chars"] for r in rows if r["corpus"] == c))
    picks = chosen(rows)
    fig = matplotlib_figure("read the JSON lines instead")(figsize=(4 * len(corpora), 3.6))
    sizes = sorted({r["size"] for r in rows}, key=lambda s: tuple(int(x) for x in s.split("x")))
    for k, name in enumerate(corpora):
        ax = fig.add_subplot(1, len(corpora), k + 1)
        here = [r for r in rows if r["corpus"] == name]
        for j, size in enumerate(sizes):
            pts = sorted(
                (config.parse_duration(r["budget"]) / 60, r["best_val_loss"], r["budget"])
                for r in here
                if r["size"] == size
            )
            if not pts:
                continue
            color = MPL_RUN_COLORS[j % len(MPL_RUN_COLORS)]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, marker="o", ms=4, label=size)
            for x, y, budget in pts:
                if (name, budget, size) in picks:
                    ax.plot([x], [y], marker="o", ms=12, mfc="none", mec="black", mew=1.5)
        ticks = sorted({config.parse_duration(r["budget"]) / 60 for r in here})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlim(min(ticks) - 1, max(ticks) + 1)
        ax.set_title(f"{name} ({here[0]['train_chars'] / 1e6:.2g}M training chars)", fontsize=9)
        ax.set_xlabel("budget (minutes)")
        if k == 0:
            ax.set_ylabel("best validation loss (nats/char)")
        ax.legend(fontsize=7, title="circled: the rule's pick", title_fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, metadata={"Date": None} if args.out.suffix == ".svg" else None)
    print(f"wrote {args.out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run", help="train each size to each budget")
    r.add_argument("--corpus", required=True)
    r.add_argument("--budgets", default="2m,5m,10m")
    r.add_argument("--sizes", default="2x128,2x256,2x384,2x512")
    r.add_argument("--out", type=Path, help="append the JSON lines here")
    c = sub.add_parser("chart", help="the chart of the JSON lines")
    c.add_argument("results", type=Path)
    c.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    run(args) if args.what == "run" else chart(args)


if __name__ == "__main__":
    main()
