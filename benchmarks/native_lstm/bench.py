"""Native vs scan: whole training step and one layer's forward+backward, alternated in one process."""

import statistics, sys, time
import jax, jax.numpy as jnp, numpy as np
from charlstm import perf

perf.tune_malloc()
import native
from charlstm import config
from charlstm.bench.charlstm_side import step_inputs
from charlstm.nn import cells, layers
from charlstm.training import loop

ROUNDS, STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 5, 5
SHAPES = [(2, 256, 64, 100)] if "--one" in sys.argv else [(2, 128, 50, 50), (2, 256, 64, 100), (2, 512, 64, 100)]


def cfg_for(layers_, hidden, b, t, ln):
    sets = [
        f"model.layers={layers_}",
        f"model.hidden={hidden}",
        f"data.batch_size={b}",
        f"data.seq_len={t}",
        f"model.layer_norm={'true' if ln else 'false'}",
        "model.dropout=0.0",
        "train.steps=1000",
    ]
    return config.load("default", sets)


def compiled_step(cfg, nat):
    native.use(nat)
    _, x, y, reset = step_inputs(cfg, 65)
    state = loop.init_state(cfg, 65)
    step = loop.make_train_step(cfg).lower(state, x, y, reset, cfg.train.steps).compile()
    native.use(False)

    def run(n, state=[state]):
        tic = time.perf_counter()
        for _ in range(n):
            state[0], m = step(state[0], x, y, reset, cfg.train.steps)
            float(m["loss"])
        return (time.perf_counter() - tic) / n

    run(2)
    return run


def compiled_layer(hidden, b, t, ln, nat):
    native.use(nat)
    p = cells.init_layer("lstm", jax.random.PRNGKey(0), hidden, hidden, layer_norm=ln)
    q = {k: v for k, v in p.items() if k in ("W_hh", "gain_hh", "gain_c", "b_c")}
    xw = jax.random.normal(jax.random.PRNGKey(1), (t, b, 4 * hidden))
    carry = cells.zeros_carry("lstm", b, hidden)
    f = jax.jit(jax.grad(lambda q, xw: layers.fused_layer("lstm", q, xw, carry)[0]["h"].sum(), argnums=(0, 1)))
    f = f.lower(q, xw).compile()
    native.use(False)

    def run(n):
        tic = time.perf_counter()
        for _ in range(n):
            jax.block_until_ready(f(q, xw))
        return (time.perf_counter() - tic) / n

    run(2)
    return run


def alternate(a, b, n):
    ta, tb = [], []
    for r in range(ROUNDS):
        for which in ((a, ta), (b, tb)) if r % 2 == 0 else ((b, tb), (a, ta)):
            time.sleep(0.1)
            which[1].append(which[0](n))
    ma, mb = statistics.median(ta), statistics.median(tb)
    return ma * 1e3, mb * 1e3, statistics.median([x / y for x, y in zip(ta, tb)])


what = sys.argv[2] if len(sys.argv) > 2 else "all"
for ln in (False, True):
    for nl, h, b, t in SHAPES:
        name = f"{'LN ' if ln else ''}{nl}x{h} B{b} T{t}"
        if what in ("all", "layer"):
            s, n, r = alternate(compiled_layer(h, b, t, ln, False), compiled_layer(h, b, t, ln, True), 10)
            print(f"layer fwd+bwd {name}: scan {s:.2f} ms  native {n:.2f} ms  speed-up {r:.2f}x", flush=True)
        if what in ("all", "step"):
            cfg = cfg_for(nl, h, b, t, ln)
            s, n, r = alternate(compiled_step(cfg, False), compiled_step(cfg, True), STEPS)
            print(f"train step    {name}: scan {s:.1f} ms  native {n:.1f} ms  speed-up {r:.2f}x", flush=True)
if what in ("all", "shakespeare"):
    cfg = config.load("shakespeare", [])
    s, n, r = alternate(compiled_step(cfg, False), compiled_step(cfg, True), STEPS)
    print(f"train step shakespeare config: scan {s:.1f} ms  native {n:.1f} ms  speed-up {r:.2f}x", flush=True)
