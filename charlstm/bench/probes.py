"""What this machine can do at most, measured in the benchmarking process: the two ceilings `charlstm bench`
compares the model against.

- Compute: an N x N x N fp32 GEMM, the best a matmul-bound training step could do.
- Batch-1 matmuls: sampling one stream does a [1, K] @ [K, N] product per weight matrix per character, which
  reads every weight from cache or memory once per character with almost no arithmetic to hide it. The probe
  times a loop of exactly the model's products (same shapes, same dtype, each depending on the one before, as
  the layers and characters do) and nothing else: the time of one character if the gates, the sampling and the
  loop were free.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

GEMM_N = 2048  # a CPU's peak; a GPU needs a larger product to fill
GEMM_N_ACCELERATOR = 8192
CHAIN_STEPS = 256  # passes over the model's matrices per timed loop


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of fn()."""
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def _best_of(fn: Callable[[], object], runs: int = 3) -> float:
    """The shortest of `runs` timings of fn() in seconds (the least disturbed by other work)."""
    return min(timed(fn) for _ in range(runs))


def gemm_probe() -> Callable[[], float]:
    """A timer for fp32 GEMM FLOP/s (at JAX's default precision, as the model's matmuls), compiled and warm."""
    n = GEMM_N if jax.default_backend() == "cpu" else GEMM_N_ACCELERATOR
    a = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(2), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    return lambda: 2.0 * n**3 / _best_of(lambda: dot(a, b).block_until_ready())


def matmul_chain_probe(shapes: Sequence[tuple[int, int]], dtype: str = "float32") -> Callable[[], float]:
    """A timer for the seconds one pass of dependent [1, K] @ [K, N] products over matrices of `shapes` takes
    (inputs in `dtype`, fp32 accumulation, as the model's matmuls), compiled and warm."""
    keys = jax.random.split(jax.random.PRNGKey(3), len(shapes))
    mats = [(jax.random.normal(k, s) / s[0] ** 0.5).astype(dtype) for k, s in zip(keys, shapes)]
    width = max(k for k, _ in shapes)

    @jax.jit
    def chain(mats: list[jax.Array]) -> jax.Array:
        def step(x: jax.Array, _: None) -> tuple[jax.Array, None]:
            for w in mats:  # each product's input comes from the one before; tanh keeps the values bounded
                y = jnp.dot(x[:, : w.shape[0]].astype(w.dtype), w, preferred_element_type=jnp.float32)
                x = jnp.tanh(jnp.tile(y, (1, -(-width // y.shape[1])))[:, :width])
            return x, None

        return jax.lax.scan(step, jnp.ones((1, width)), None, length=CHAIN_STEPS)[0]

    chain(mats).block_until_ready()
    return lambda: _best_of(lambda: chain(mats).block_until_ready()) / CHAIN_STEPS
