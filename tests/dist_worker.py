"""Trains the runs tests/test_distributed.py compares, inside one process that sees 4 CPU devices.

Run as `python tests/dist_worker.py RUNS_DIR` with XLA_FLAGS=--xla_force_host_platform_device_count=4 (the
flag must be set before JAX starts, hence a subprocess). One process trains all of them so that JAX starts
and compiles once per mesh size:

    ref        1 device, 8 steps                   the reference
    four_half  4 devices, 4 steps                  same global batch: the losses of ref's first 4 steps;
                                                   resumed to 8 steps by the test, in a 1-device process
    one_half   1 device, 4 steps, then resumed on 4 devices to 8 steps
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax

from charlstm import config
from charlstm.events import Silent
from charlstm.training import rundir, runner

CORPUS = Path(__file__).resolve().parent.parent / "corpora" / "languages.txt"
# Constant lr without warmup: a run of 4 steps resumed to 8 follows the same schedule as a run of 8.
OPTIONS = [
    "train.eval_every=4",
    "checkpoint.every=4",
    "train.sample_length=0",
    "train.log_every=1",
    "optim.schedule=constant",
    "optim.warmup_steps=0",
    "train.eval_batches=2",
]


def cfg(devices: int, steps: int) -> config.Config:
    return config.load("tiny", OPTIONS + [f"dist.devices={devices}", f"train.steps={steps}"])


def main(runs: Path) -> None:
    assert jax.device_count() == 4, jax.devices()
    for name, devices, steps in (("ref", 1, 8), ("four_half", 4, 4), ("one_half", 1, 4)):
        runner.train_run(cfg(devices, steps), CORPUS, Silent(), name=name, runs_dir=runs)
    runner.train_run(cfg(4, 8), CORPUS, Silent(), runs_dir=runs, resume=rundir.RunDir(runs / "one_half"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
