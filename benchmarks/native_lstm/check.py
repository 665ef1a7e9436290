import sys
import jax, jax.numpy as jnp, numpy as np
import native
from charlstm.nn import layers, cells


def run(ln, masked, T=20, B=11, H=64):
    key = jax.random.PRNGKey(0)
    p = cells.init_layer("lstm", key, 16, H, layer_norm=ln)
    ks = jax.random.split(jax.random.PRNGKey(1), 6)
    xw = jax.random.normal(ks[0], (T, B, 4 * H))
    carry = (jax.random.normal(ks[1], (B, H)) * 0.5, jax.random.normal(ks[2], (B, H)) * 0.5)
    mask = (jax.random.uniform(ks[3], (B, H)) > 0.3) / 0.7 if masked else None
    ct = jax.random.normal(ks[4], (T, B, H))
    if ln:  # non-trivial gains
        p = {
            **p,
            "gain_hh": 1 + 0.1 * jax.random.normal(ks[5], (4 * H,)),
            "gain_c": 0.9 * jnp.ones(H),
            "b_c": 0.1 * jnp.ones(H),
        }
    q = {k: v for k, v in p.items() if k in ("W_hh", "gain_hh", "gain_c", "b_c")}

    def loss(q, xw, carry):
        outs, (h, c) = layers.fused_layer("lstm", q, xw, carry, h_mask=mask)
        return (outs["h"] * ct).sum() + (h * 0.3).sum() + (c * 0.7).sum(), outs["h"]

    res = []
    for nat in (False, True):
        native.use(nat)
        (l, hs), g = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(q, xw, carry)
        res.append((hs, g))
    native.use(False)
    (h1, g1), (h2, g2) = res
    err = lambda a, b: float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-12))
    print(
        f"ln={ln} mask={masked} h {err(h1, h2):.2e}",
        " ".join(
            f"{k}:{err(a, b):.1e}"
            for k, (a, b) in zip(
                [*[f"d{k}" for k in sorted(q)], "dxw", "dh0", "dc0"],
                [
                    *[(g1[0][k], g2[0][k]) for k in sorted(q)],
                    (g1[1], g2[1]),
                    (g1[2][0], g2[2][0]),
                    (g1[2][1], g2[2][1]),
                ],
            )
        ),
    )


for ln in (False, True):
    for m in (False, True):
        run(ln, m)
