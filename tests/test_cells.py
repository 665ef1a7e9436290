"""charlstm.nn.cells against the independent NumPy reference (tests/reference.py) and finite differences."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

from charlstm.nn import cells, layers

CELLS = ("lstm", "gru", "rnn")
T, B, H, N_IN, V = 5, 3, 4, 3, 6
ATOL = 1e-5  # float32 against float64, on values of order one over a few steps


def random_layer(cell: str, rng: np.random.Generator, n_in: int, hidden: int, scale: float = 0.7) -> dict:
    """charlstm-layout layer parameters with every entry random (biases included, so gate order matters)."""
    g = ref.N_GATES[cell] * hidden
    p = {"W_ih": rng.uniform(-scale, scale, (n_in, g)), "W_hh": rng.uniform(-scale, scale, (hidden, g))}
    if cell == "gru":
        p["b_ih"], p["b_hh"] = rng.uniform(-scale, scale, g), rng.uniform(-scale, scale, g)
    else:
        p["b"] = rng.uniform(-scale, scale, g)
    return p


def random_carry(cell: str, rng: np.random.Generator, batch: int, hidden: int) -> tuple[np.ndarray, ...]:
    h = rng.uniform(-0.9, 0.9, (batch, hidden))
    return (h, rng.normal(0.0, 1.0, (batch, hidden))) if cell == "lstm" else (h,)


def as_jax(tree, dtype=jnp.float32):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=dtype), tree)


@partial(jax.jit, static_argnames=("cell", "record"))  # jitted once per signature: eager scans recompile each call
def run_jax(cell, p, x, carry, record=("h",)):
    xw = cells.project_input(cell, p, x)
    return layers.scan_layer(cell, p, xw, carry, record=record)


def run_ref(cell, p, x, carry):
    return ref.run_layer(cell, x, carry, *ref.layer_to_torch(cell, p))


def assert_carry_close(got, want, atol=ATOL):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), w, rtol=0, atol=atol)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("zero_start", [True, False])
def test_scan_layer_float_inputs_match_reference(cell: str, zero_start: bool) -> None:
    rng = np.random.default_rng(1)
    p = random_layer(cell, rng, N_IN, H)
    x = rng.normal(0.0, 1.0, (T, B, N_IN))
    carry = ref.zero_state(cell, B, H) if zero_start else random_carry(cell, rng, B, H)
    outs, final = run_jax(cell, as_jax(p), jnp.asarray(x, jnp.float32), as_jax(carry))
    traces, ref_final = run_ref(cell, p, x, carry)
    assert outs["h"].shape == (T, B, H)
    np.testing.assert_allclose(np.asarray(outs["h"]), traces["h"], rtol=0, atol=ATOL)
    assert_carry_close(final, ref_final)
    assert np.abs(traces["h"]).max() > 0.1  # the comparison is not between near-zero values


@pytest.mark.parametrize("cell", CELLS)
def test_scan_layer_integer_ids_match_one_hot_reference(cell: str) -> None:
    rng = np.random.default_rng(2)
    p = random_layer(cell, rng, V, H)
    ids = rng.integers(0, V, (T, B))
    carry = random_carry(cell, rng, B, H)
    for dtype in (np.int32, np.uint8):  # the corpus stores ids as small unsigned ints
        outs, final = run_jax(cell, as_jax(p), jnp.asarray(ids.astype(dtype)), as_jax(carry))
        traces, ref_final = run_ref(cell, p, ids, carry)  # the reference one-hot encodes and multiplies
        np.testing.assert_allclose(np.asarray(outs["h"]), traces["h"], rtol=0, atol=ATOL)
        assert_carry_close(final, ref_final)


@pytest.mark.parametrize("cell", CELLS)
def test_recorded_gates_match_reference_traces(cell: str) -> None:
    rng = np.random.default_rng(3)
    p = random_layer(cell, rng, N_IN, H)
    x = rng.normal(0.0, 1.0, (T, B, N_IN))
    carry = random_carry(cell, rng, B, H)
    names = cells.RECORDABLE[cell]
    outs, _ = run_jax(cell, as_jax(p), jnp.asarray(x, jnp.float32), as_jax(carry), record=names)
    traces, _ = run_ref(cell, p, x, carry)
    assert set(outs) == set(names) == set(traces)
    for name in names:
        assert outs[name].shape == (T, B, H)
        np.testing.assert_allclose(np.asarray(outs[name]), traces[name], rtol=0, atol=ATOL, err_msg=name)
    if cell != "rnn":  # gates are distinct quantities, so a swapped gate order cannot pass the loop above
        first, second = names[0], names[1]
        assert not np.allclose(traces[first], traces[second], atol=1e-3)


def test_record_returns_only_what_was_asked() -> None:
    rng = np.random.default_rng(4)
    p = random_layer("lstm", rng, N_IN, H)
    x = jnp.asarray(rng.normal(0.0, 1.0, (T, B, N_IN)), jnp.float32)
    outs, _ = run_jax("lstm", as_jax(p), x, as_jax(ref.zero_state("lstm", B, H)), record=("c", "f"))
    assert set(outs) == {"c", "f"}


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("n_in,hidden", [(1, 1), (7, 5), (32, 16)])
def test_layer_param_count_equals_init_layer_and_hand_count(cell: str, n_in: int, hidden: int) -> None:
    p = jax.eval_shape(lambda: cells.init_layer(cell, jax.random.PRNGKey(0), n_in, hidden))  # shapes only
    actual = sum(int(a.size) for a in p.values())
    g = {"lstm": 4, "gru": 3, "rnn": 1}[cell] * hidden
    n_bias = 2 if cell == "gru" else 1  # one fused bias for lstm/rnn; the GRU keeps b_hh apart
    assert cells.layer_param_count(cell, n_in, hidden) == actual == g * (n_in + hidden) + n_bias * g


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
def test_init_layer_shapes_and_pytorch_uniform_bound(cell: str) -> None:
    hidden, n_in = 6, 5
    p = cells.init_layer(cell, jax.random.PRNGKey(1), n_in, hidden, forget_bias=0.0)
    g = ref.N_GATES[cell] * hidden
    assert p["W_ih"].shape == (n_in, g) and p["W_hh"].shape == (hidden, g)
    bound = 1.0 / np.sqrt(hidden)
    for name, a in p.items():
        a = np.asarray(a)
        assert a.dtype == np.float32
        assert np.all(np.abs(a) <= bound + 1e-7), name
        assert np.abs(a).max() > 0.5 * bound, name  # spread over the range, not collapsed
        if not (cell == "lstm" and name == "b"):  # (the LSTM forget slice is the constant forget_bias)
            assert np.unique(a).size == a.size, name  # no repeated draws (distinct keys per tensor)
    if cell == "gru":
        assert p["b_ih"].shape == p["b_hh"].shape == (g,)
        assert not np.array_equal(np.asarray(p["b_ih"]), np.asarray(p["b_hh"]))
    else:
        assert set(p) == {"W_ih", "W_hh", "b"} and p["b"].shape == (g,)


@pytest.mark.parametrize("forget_bias", [1.0, 0.25, -2.0])
def test_lstm_forget_gate_bias_initialised(forget_bias: float) -> None:
    hidden = 6
    b = np.asarray(cells.init_layer("lstm", jax.random.PRNGKey(2), 5, hidden, forget_bias=forget_bias)["b"])
    np.testing.assert_array_equal(b[hidden : 2 * hidden], np.float32(forget_bias))  # f is the 2nd gate (i,f,g,o)
    others = np.concatenate([b[:hidden], b[2 * hidden :]])
    assert np.all(np.abs(others) <= 1.0 / np.sqrt(hidden) + 1e-7)
    assert not np.any(others == np.float32(forget_bias))


def test_lstm_forget_bias_default_is_one_and_applies_only_to_lstm() -> None:
    hidden = 6
    b = np.asarray(cells.init_layer("lstm", jax.random.PRNGKey(3), 5, hidden)["b"])
    np.testing.assert_array_equal(b[hidden : 2 * hidden], 1.0)
    for cell in ("gru", "rnn"):
        p = cells.init_layer(cell, jax.random.PRNGKey(3), 5, hidden, forget_bias=5.0)
        assert all(np.abs(np.asarray(a)).max() <= 1.0 / np.sqrt(hidden) + 1e-7 for a in p.values())


def test_zeros_carry_structure() -> None:
    h, c = cells.zeros_carry("lstm", 3, 4)
    assert h.shape == c.shape == (3, 4) and not np.any(np.asarray(h)) and not np.any(np.asarray(c))
    for cell in ("gru", "rnn"):
        (h,) = cells.zeros_carry(cell, 2, 5)
        assert h.shape == (2, 5) and not np.any(np.asarray(h))


# --- gradients: JAX autodiff in float64 against central finite differences of the NumPy reference ---------


def _ref_loss(cell, p, x, carry, w_out, w_final):
    traces, final = run_ref(cell, p, x, carry)
    return float(np.sum(traces["h"] * w_out) + sum(np.sum(f * w) for f, w in zip(final, w_final)))


def _finite_difference(f, tree, eps=1e-6):
    """Central differences of scalar f(tree) w.r.t. every entry of a dict/tuple of float64 arrays."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    grads = []
    for i, leaf in enumerate(leaves):
        g = np.zeros_like(leaf)
        for idx in np.ndindex(leaf.shape):
            vals = []
            for sign in (1.0, -1.0):
                bumped = [a.copy() for a in leaves]
                bumped[i][idx] += sign * eps
                vals.append(f(jax.tree_util.tree_unflatten(treedef, bumped)))
            g[idx] = (vals[0] - vals[1]) / (2 * eps)
        grads.append(g)
    return jax.tree_util.tree_unflatten(treedef, grads)


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("int_input", [False, True])
def test_scan_layer_gradients_match_finite_differences(cell: str, int_input: bool) -> None:
    rng = np.random.default_rng(5)
    n_in = V if int_input else N_IN
    p = random_layer(cell, rng, n_in, H)
    x = rng.integers(0, V, (T, B)) if int_input else rng.normal(0.0, 1.0, (T, B, N_IN))
    carry = random_carry(cell, rng, B, H)
    w_out = rng.normal(0.0, 1.0, (T, B, H))  # a scalar loss that weighs every output and the final state
    w_final = tuple(rng.normal(0.0, 1.0, (B, H)) for _ in carry)

    with jax.enable_x64(True):

        def loss(p, carry):
            outs, final = run_jax(cell, p, jnp.asarray(x), carry)
            return jnp.sum(outs["h"] * w_out) + sum(jnp.sum(f * w) for f, w in zip(final, w_final))

        p64, c64 = as_jax(p, jnp.float64), as_jax(carry, jnp.float64)
        assert cells.project_input(cell, p64, jnp.asarray(x)).dtype == jnp.float64
        g_p, g_c = jax.jit(jax.grad(loss, argnums=(0, 1)))(p64, c64)
        g_p, g_c = jax.tree_util.tree_map(np.asarray, (g_p, g_c))

    fd_p = _finite_difference(lambda q: _ref_loss(cell, q, x, carry, w_out, w_final), p)
    fd_c = _finite_difference(lambda c: _ref_loss(cell, p, x, c, w_out, w_final), carry)
    for name in p:
        np.testing.assert_allclose(g_p[name], fd_p[name], rtol=1e-6, atol=1e-7, err_msg=name)
        assert np.abs(fd_p[name]).max() > 1e-3, name  # the check is not vacuous
    for k, (g, fd) in enumerate(zip(g_c, fd_c)):
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7, err_msg=f"carry[{k}]")
    if int_input:  # rows of W_ih for ids never seen get no gradient
        unseen = sorted(set(range(V)) - set(np.unique(x).tolist()))
        assert all(not np.any(g_p["W_ih"][u]) for u in unseen)
