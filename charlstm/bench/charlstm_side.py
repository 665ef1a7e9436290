"""charlstm's side of `charlstm bench`: the jitted training step and sampler on fixed random batches, compiled and
ready to time."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from charlstm.bench import probes
from charlstm.config import Config
from charlstm.nn import sampling
from charlstm.training import loop

SAMPLE_B1_CHARS = 512  # characters generated per round at batch 1 (one compiled chunk of 512)
SAMPLE_B64_CHARS = 256  # characters per stream per round at batch 64


def step_inputs(cfg: Config, vocab_size: int) -> tuple[np.ndarray, jax.Array, jax.Array, jax.Array]:
    """Fixed random ids [B, T + 1], and the x, y and reset arguments of a training step made from them."""
    d = cfg.data
    ids = np.random.default_rng(0).integers(0, vocab_size, (d.batch_size, d.seq_len + 1)).astype(np.int32)
    return ids, jnp.asarray(ids[:, :-1]), jnp.asarray(ids[:, 1:]), jnp.zeros(d.batch_size, bool)


class CharlstmSide:
    """The jitted training step and sampler on fixed random batches, ready to time."""

    def __init__(self, cfg: Config, vocab_size: int) -> None:
        self.cfg = cfg
        ids, self.x, self.y, self.reset = step_inputs(cfg, vocab_size)
        self.state = loop.init_state(cfg, vocab_size)
        self.params0 = jax.tree_util.tree_map(jnp.copy, self.state.params)  # the train step donates the state
        self.step = loop.make_train_step(cfg).lower(self.state, self.x, self.y, self.reset, cfg.train.steps).compile()
        mem = self.step.memory_analysis()
        self.temp_mb = float(getattr(mem, "temp_size_in_bytes", 0) or 0) / 2**20
        self.first_loss = self.train(1)[1]
        self.prompt = ids[0, :1]
        self.sample(1, SAMPLE_B1_CHARS), self.sample(64, SAMPLE_B64_CHARS)  # compile both batch sizes

    def train(self, steps: int) -> tuple[float, float]:
        """(seconds, last loss) for `steps` updates, synced every step as the training loop is."""
        tic, loss = time.perf_counter(), 0.0
        for _ in range(steps):
            self.state, m = self.step(self.state, self.x, self.y, self.reset, self.cfg.train.steps)
            loss = float(m["loss"])
        return time.perf_counter() - tic, loss

    def sample(self, batch: int, length: int) -> float:
        """Seconds for `sampling.generate` (chunks of up to 512 characters, each one jitted scan) of `length` per
        stream."""
        opts = sampling.SampleOptions(length=length, num_samples=batch, temperature=1.0)
        return probes.timed(
            lambda: [np.asarray(c) for c in sampling.generate(self.state.params, self.cfg.model, self.prompt, opts)]
        )
