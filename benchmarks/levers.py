"""Measure training levers on tiny-shakespeare: one `charlstm train` per recipe, results as a table.

Each recipe is the shipped `configs/shakespeare.yaml` plus `--set` overrides, trained for the same number of
steps on the same machine, one after another. Results (final and best validation loss, wall minutes, median
chars/s, the val-loss curve against wall-clock time) are appended to a JSON-lines file so an interrupted
sweep keeps what it measured, and printed as a Markdown table.

    charlstm corpus get tinyshakespeare      # or pass --corpus PATH
    python benchmarks/levers.py --steps 1200 --out levers.jsonl base dropout0 random-windows
    python benchmarks/levers.py --list
    python benchmarks/levers.py --table levers.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The 2 x 512 recipes' common part (configs/shakespeare-large.yaml without its DropConnect rate and step count).
_LARGE = [
    "model.hidden=512",
    "model.dropout=0.4",
    "optim.weight_decay=0.1",
    "model.compute_dtype=bfloat16",
    "train.eval_every=250",
]
_SHIPPED_LARGE = [*_LARGE, "model.weight_drop=0.15"]  # configs/shakespeare-large.yaml but for its step count

# name -> --set overrides on top of configs/shakespeare.yaml
RECIPES: dict[str, list[str]] = {
    "base": [],
    # the plain PyTorch baseline's recipe (benchmarks/torch_baseline.py) on charlstm: same shapes, optimizer, batches
    "torch-recipe": [
        "data.batching=random",
        "optim.lr=0.002",
        "optim.schedule=constant",
        "optim.warmup_steps=0",
        "optim.weight_decay=0.0",
        "model.dropout=0.0",
    ],
    "torch-recipe-fb0": [
        "data.batching=random",
        "optim.lr=0.002",
        "optim.schedule=constant",
        "optim.warmup_steps=0",
        "optim.weight_decay=0.0",
        "model.dropout=0.0",
        "model.forget_bias=0.0",
    ],
    "forget-bias1": ["model.forget_bias=1.0"],
    "dropout0": ["model.dropout=0.0"],
    "dropout0.3": ["model.dropout=0.3"],
    "random-windows": ["data.batching=random"],
    "constant-lr": ["optim.schedule=constant", "optim.warmup_steps=0"],
    "no-weight-decay": ["optim.weight_decay=0.0"],
    "weight-decay-0.1": ["optim.weight_decay=0.1"],
    "embed0": ["model.embed=0"],
    "embed128": ["model.embed=128"],
    "orthogonal": ["model.init_hh=orthogonal"],
    "layer-norm": ["model.layer_norm=true"],
    "tied": ["model.embed=256", "model.tie_embed=true"],
    "recurrent-dropout": ["model.recurrent_dropout=0.1"],
    "batch128-lr": ["data.batch_size=128", "optim.lr=0.00424"],
    "batch32-lr": ["data.batch_size=32", "optim.lr=0.00212"],
    "bf16": ["model.compute_dtype=bfloat16"],
    "lr2e-3": ["optim.lr=0.002"],
    "lr5e-3": ["optim.lr=0.005"],
    "h512-d0.3": ["model.hidden=512", "model.dropout=0.3"],
    "h512-d0.4": ["model.hidden=512", "model.dropout=0.4"],
    "weight-drop-0.25": ["model.weight_drop=0.25"],
    "large-30min": [*_LARGE, "model.weight_drop=0.25"],
    "ema-0.997": ["optim.ema=0.997"],
    "large-wdrop-0.15": _SHIPPED_LARGE,
    "dropout-ramp-1000": ["model.dropout_ramp=1000", "model.compute_dtype=bfloat16"],
    "input-dropout-0.1": ["model.input_dropout=0.1"],
    "input-dropout-0.2": ["model.input_dropout=0.2"],
    "large-ema-0.999": [*_SHIPPED_LARGE, "optim.ema=0.999"],
}


def run_recipe(name: str, overrides: list[str], steps: int, runs_dir: Path, config: str, corpus: Path) -> dict:
    """Train one recipe through the CLI and summarise its metrics file."""
    run_name = f"{name}-{steps}"
    cmd = [
        sys.executable,
        "-m",
        "charlstm",
        "train",
        str(corpus),
        "--config",
        config,
        "--steps",
        str(steps),
        "--runs-dir",
        str(runs_dir),
        "--name",
        run_name,
        "--quiet",
    ]
    for o in overrides:
        cmd += ["--set", o]
    tic = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    wall = time.time() - tic
    if proc.returncode != 0:
        return {"recipe": name, "sets": overrides, "steps": steps, "error": proc.stderr.strip().splitlines()[-1:]}
    records = [json.loads(line) for line in (runs_dir / run_name / "metrics.jsonl").read_text().splitlines() if line]
    evals = [r for r in records if "val_loss" in r]
    speeds = sorted(r["chars_per_s"] for r in records if "chars_per_s" in r)
    t0 = records[0]["time"]
    return {
        "recipe": name,
        "sets": overrides,
        "steps": steps,
        "wall_min": round(wall / 60, 2),
        "final_val": round(evals[-1]["val_loss"], 4),
        "best_val": round(min(r["val_loss"] for r in evals), 4),
        "chars_per_s": speeds[len(speeds) // 2] if speeds else None,
        "curve": [(r["step"], round((r["time"] - t0) / 60, 2), round(r["val_loss"], 4)) for r in evals],
        "load": os.getloadavg()[0],
    }


def table(results: list[dict]) -> str:
    lines = [
        "| recipe | overrides | steps | wall min | chars/s | final val | best val |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['recipe']} | {' '.join(r['sets'])} | {r['steps']} | error: {r['error']} | | | |")
            continue
        lines.append(
            f"| {r['recipe']} | {' '.join(r['sets']) or '(shipped config)'} | {r['steps']} | {r['wall_min']} | "
            f"{r['chars_per_s']} | {r['final_val']} | {r['best_val']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="*", help="recipe names (see --list)")
    ap.add_argument(
        "--corpus",
        default="tinyshakespeare",
        help="a text file, or a corpus name `charlstm corpus get` downloaded (default: tinyshakespeare)",
    )
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--config", default="shakespeare")
    ap.add_argument("--out", type=Path, default=Path("levers.jsonl"))
    ap.add_argument("--runs-dir", type=Path, default=Path("levers-runs"))
    ap.add_argument("--list", action="store_true", help="print the recipes and exit")
    ap.add_argument("--table", type=Path, help="print the table of a results file and exit")
    args = ap.parse_args()
    if args.list:
        for name, sets in RECIPES.items():
            print(f"{name:20s} {' '.join(sets)}")
        return
    if args.table:
        print(table([json.loads(line) for line in args.table.read_text().splitlines() if line]))
        return
    from charlstm.data import corpus

    path = corpus.resolve(args.corpus)
    if not path.is_file():
        sys.exit(f"error: corpus {args.corpus} not found; run `charlstm corpus get tinyshakespeare` or pass --corpus")
    unknown = [r for r in args.recipes if r not in RECIPES]
    if unknown:
        sys.exit(f"error: unknown recipe(s) {unknown}; see --list")
    results = []
    for name in args.recipes:
        r = run_recipe(name, RECIPES[name], args.steps, args.runs_dir, args.config, path.resolve())
        results.append(r)
        with args.out.open("a") as f:
            f.write(json.dumps(r) + "\n")
        print(table(results[-1:]).splitlines()[-1], flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
