"""Compile time and the first sampled character, measured where a user meets them: at the start of a process.

Two fresh Python processes share an empty temporary compilation cache: the first compiles (cold) and fills it,
the second loads what it can from it (cached, as a second `charlstm sample` or `train` of the same model does).
Each reports the seconds from its start to the first sampled character (JAX import, random weights, compiling and
running the first 512-character chunk) and the time to compile the training step.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import jax
import numpy as np

from charlstm import config as config_lib
from charlstm.bench.charlstm_side import SAMPLE_B1_CHARS, step_inputs
from charlstm.config import Config
from charlstm.nn import model, sampling
from charlstm.training import loop

# What a fresh process runs: the clock starts before anything is imported.
PROBE_CODE = "import time; t0 = time.perf_counter(); from charlstm.bench import startup; startup.startup_probe(t0)"


@dataclass(frozen=True)
class Startup:
    """What one fresh process measured (see `startup_probe`)."""

    first_char_s: float
    compile_s: float
    compile_cpu_s: float


def startup_probe(t0: float) -> None:
    """The body of a fresh process (`measure_startup` starts it): read {"config", "vocab_size"} as JSON on
    stdin, sample the first chunk from random weights, then compile the training step; print a `Startup` as
    JSON. `t0` is the clock when the process began, before it imported JAX."""
    job = json.load(sys.stdin)
    cfg, vocab_size = config_lib.from_dict(job["config"]), int(job["vocab_size"])
    params = model.init_params(cfg.model, vocab_size, jax.random.PRNGKey(0))
    opts = sampling.SampleOptions(length=SAMPLE_B1_CHARS)
    np.asarray(next(sampling.generate(params, cfg.model, np.zeros(1, np.int32), opts)))
    first_char_s = time.perf_counter() - t0
    _, x, y, reset = step_inputs(cfg, vocab_size)
    state = loop.init_state(cfg, vocab_size)
    tic, cpu = time.perf_counter(), time.process_time()
    loop.make_train_step(cfg).lower(state, x, y, reset, cfg.train.steps).compile()
    print(json.dumps(dataclasses.asdict(Startup(first_char_s, time.perf_counter() - tic, time.process_time() - cpu))))


def measure_startup(cfg: Config, vocab_size: int) -> tuple[Startup, Startup]:
    """(cold, cached): two fresh processes in turn on one empty temporary compilation cache."""
    job = json.dumps({"config": cfg.model_dump(), "vocab_size": vocab_size})
    results: list[Startup] = []
    with tempfile.TemporaryDirectory(prefix="charlstm-bench-cache-") as cache:
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
        for _ in range(2):
            proc = subprocess.run(
                [sys.executable, "-c", PROBE_CODE], input=job, env=env, capture_output=True, text=True
            )
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"the start-up probe failed (exit {proc.returncode}): {last}")
            results.append(Startup(**json.loads(proc.stdout.strip().splitlines()[-1])))
    return results[0], results[1]
