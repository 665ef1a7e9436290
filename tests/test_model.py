"""charlstm.nn.model (the stacked network) against the NumPy reference, plus dropout, counts and loss gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

from charlstm.config import ModelConfig
from charlstm.nn import cells, model
from charlstm.training import loop

CELLS = ("lstm", "gru", "rnn")
B, T, H, V = 3, 6, 5, 7
ATOL = 1e-5
# Jitted as in training (loop.make_train_step / make_eval_step); eager `lax.scan` would recompile every call.
apply = jax.jit(model.apply, static_argnames=("cfg", "train"))
apply_recording = jax.jit(model.apply_recording, static_argnames=("cfg", "record"))


def make(cell: str, layers: int = 2, hidden: int = H, vocab: int = V, dropout: float = 0.0, seed: int = 0):
    """A config and random parameters in charlstm's layout (NumPy draws: every entry distinct, biases included;
    model.init_params itself is tested separately below)."""
    cfg = ModelConfig(cell=cell, layers=layers, hidden=hidden, dropout=dropout, start_state="zeros")
    rng = np.random.default_rng(seed)
    g = {"lstm": 4, "gru": 3, "rnn": 1}[cell] * hidden
    u = lambda *shape: jnp.asarray(rng.uniform(-0.7, 0.7, shape), jnp.float32)  # noqa: E731
    layers_p = []
    for k in range(layers):
        p = {"W_ih": u(vocab if k == 0 else hidden, g), "W_hh": u(hidden, g)}
        p.update({"b_ih": u(g), "b_hh": u(g)} if cell == "gru" else {"b": u(g)})
        layers_p.append(p)
    return cfg, {"layers": layers_p, "head": {"W": u(hidden, vocab), "b": u(vocab)}}


def random_ids(seed: int = 0, batch: int = B, length: int = T, vocab: int = V) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, (batch, length)).astype(np.int32)


def random_model_carry(cfg: ModelConfig, batch: int, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    n = 2 if cfg.cell == "lstm" else 1
    return tuple(
        tuple(jnp.asarray(rng.uniform(-0.9, 0.9, (batch, cfg.hidden)), jnp.float32) for _ in range(n))
        for _ in range(cfg.layers)
    )


def reference(params, cfg, ids, carry=None):
    sd = ref.state_dict_from_params(params, cfg.cell, V)
    state = None if carry is None else [tuple(np.asarray(a, np.float64) for a in c) for c in carry]
    return ref.run_network(sd, cfg.cell, ids, state)


def assert_model_carry_close(got, want):
    assert len(got) == len(want)
    for g_layer, w_layer in zip(got, want):
        assert len(g_layer) == len(w_layer)
        for g, w in zip(g_layer, w_layer):
            np.testing.assert_allclose(np.asarray(g), w, rtol=0, atol=ATOL)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("zero_start", [True, False])
def test_apply_matches_stacked_reference(cell: str, zero_start: bool) -> None:
    cfg, params = make(cell)
    ids = random_ids(1)
    carry = model.zeros_carry(cfg, B) if zero_start else random_model_carry(cfg, B, seed=2)
    logits, final = apply(params, jnp.asarray(ids), carry, cfg)
    ref_logits, ref_final, _ = reference(params, cfg, ids, None if zero_start else carry)
    assert logits.shape == (B, T, V)
    np.testing.assert_allclose(np.asarray(logits), ref_logits, rtol=0, atol=ATOL)
    assert_model_carry_close(final, ref_final)
    assert np.ptp(ref_logits) > 0.1  # logits vary, so the comparison means something


@pytest.mark.parametrize("cell", CELLS)
def test_starting_carry_matters_and_chunks_compose(cell: str) -> None:
    """Running T steps at once equals running two halves with the carry handed over."""
    cfg, params = make(cell, seed=3)
    ids = jnp.asarray(random_ids(4))
    whole, final = apply(params, ids, model.zeros_carry(cfg, B), cfg)
    first, mid = apply(params, ids[:, :3], model.zeros_carry(cfg, B), cfg)
    second, final2 = apply(params, ids[:, 3:], mid, cfg)
    np.testing.assert_allclose(np.asarray(whole), np.concatenate([first, second], axis=1), rtol=0, atol=1e-6)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-6), final, final2)
    fresh, _ = apply(params, ids[:, 3:], model.zeros_carry(cfg, B), cfg)
    assert not np.allclose(np.asarray(fresh), np.asarray(second), atol=1e-4)


@pytest.mark.slow
def test_single_layer_and_uint8_ids_match_reference() -> None:
    cfg, params = make("lstm", layers=1, seed=5)
    ids = random_ids(6)
    logits, _ = model.apply(params, jnp.asarray(ids.astype(np.uint8)), model.zeros_carry(cfg, B), cfg)  # eager
    np.testing.assert_allclose(np.asarray(logits), reference(params, cfg, ids)[0], rtol=0, atol=ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
def test_record_returns_reference_traces_per_layer(cell: str) -> None:
    cfg, params = make(cell, seed=7)
    ids = random_ids(8)
    carry = random_model_carry(cfg, B, seed=9)
    names = cells.RECORDABLE[cell]
    logits, final, recorded = apply_recording(params, jnp.asarray(ids), carry, cfg, record=names)
    plain_logits, _ = apply(params, jnp.asarray(ids), carry, cfg)
    ref_logits, _, ref_traces = reference(params, cfg, ids, carry)
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(plain_logits))
    assert isinstance(recorded, list) and len(recorded) == cfg.layers
    for k, (got, want) in enumerate(zip(recorded, ref_traces)):
        assert set(got) == set(names)
        for name in names:
            assert got[name].shape == (B, T, H), (k, name)
            np.testing.assert_allclose(
                np.asarray(got[name]), want[name], rtol=0, atol=ATOL, err_msg=f"layer {k} {name}"
            )
    # the last step of the recorded h is the final carry's h
    np.testing.assert_allclose(np.asarray(recorded[-1]["h"][:, -1]), np.asarray(final[-1][0]), rtol=0, atol=0)


def test_record_subset_without_h() -> None:
    cfg, params = make("lstm", seed=10)
    _, _, recorded = apply_recording(params, jnp.asarray(random_ids(11)), model.zeros_carry(cfg, B), cfg, record=("f",))
    assert [set(r) for r in recorded] == [{"f"}, {"f"}]


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
def test_dropout(cell: str) -> None:
    cfg, params = make(cell, dropout=0.5, seed=12)
    cfg0 = ModelConfig(cell=cell, layers=2, hidden=H, dropout=0.0)
    ids = jnp.asarray(random_ids(13))
    carry = model.zeros_carry(cfg, B)
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    a, ca = apply(params, ids, carry, cfg, train=True, key=k1)
    a2, _ = apply(params, ids, carry, cfg, train=True, key=k1)
    b, _ = apply(params, ids, carry, cfg, train=True, key=k2)
    ev, ce = apply(params, ids, carry, cfg, train=False, key=k1)
    ev0, _ = apply(params, ids, carry, cfg0)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(a2))  # deterministic given the key
    assert not np.allclose(np.asarray(a), np.asarray(b), atol=1e-3)  # another key, another mask
    assert not np.allclose(np.asarray(a), np.asarray(ev), atol=1e-3)  # dropout acts in training
    np.testing.assert_array_equal(np.asarray(ev), np.asarray(ev0))  # and is ignored in evaluation
    np.testing.assert_allclose(np.asarray(ev), reference(params, cfg, np.asarray(ids))[0], rtol=0, atol=ATOL)
    # only between layers: the first layer's recurrence never sees a mask, the second layer's input does
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), ca[0], ce[0])
    assert not np.allclose(np.asarray(ca[1][0]), np.asarray(ce[1][0]), atol=1e-4)
    # train=True with dropout 0 is the plain forward pass and needs no key
    t0, _ = apply(params, ids, carry, cfg0, train=True)
    np.testing.assert_array_equal(np.asarray(t0), np.asarray(ev0))


@pytest.mark.slow
def test_dropout_mask_zeroes_and_rescales_the_head_input() -> None:
    """With one layer, dropout sits only before the head: logits = (mask * h / (1-p)) W + b."""
    rate = 0.5
    cfg, params = make("rnn", layers=1, dropout=rate, seed=14)
    ids = jnp.asarray(random_ids(15))
    carry = model.zeros_carry(cfg, B)
    _, _, rec = apply_recording(params, ids, carry, cfg, record=("h",))
    h = np.asarray(rec[0]["h"], np.float64)  # [B, T, H]
    logits, _ = apply(params, ids, carry, cfg, train=True, key=jax.random.PRNGKey(3))
    W, b = np.asarray(params["head"]["W"], np.float64), np.asarray(params["head"]["b"], np.float64)
    # recover the effective head input by least squares (W is [H, V] with H < V, full row rank)
    x_eff = np.linalg.lstsq(W.T, (np.asarray(logits, np.float64) - b).reshape(-1, V).T, rcond=None)[0].T
    x_eff = x_eff.reshape(h.shape)
    dropped = np.isclose(x_eff, 0.0, atol=1e-4)
    np.testing.assert_allclose(x_eff[~dropped], h[~dropped] / (1 - rate), rtol=1e-3, atol=1e-4)
    assert 0.2 < dropped.mean() < 0.8  # about half of B*T*H = 90 units dropped


def test_param_count_matches_hand_count() -> None:
    for cell, gates, n_bias in (("lstm", 4, 1), ("gru", 3, 2), ("rnn", 1, 1)):
        cfg, params = make(cell, layers=2, hidden=H, vocab=V)
        layer0 = gates * H * (V + H) + n_bias * gates * H
        layer1 = gates * H * (H + H) + n_bias * gates * H
        head = H * V + V
        assert model.param_count(params) == layer0 + layer1 + head
    # e.g. a 3-layer LSTM, vocab 65, hidden 128: 4*128*(65+128)+512 + 2*(4*128*256+512) + 128*65+65
    cfg = ModelConfig(cell="lstm", layers=3, hidden=128, start_state="zeros")
    shapes = jax.eval_shape(lambda: model.init_params(cfg, 65, jax.random.PRNGKey(0)))
    assert model.param_count(shapes) == 99_328 + 2 * 131_584 + 8_385 == 370_881
    # the learned start state adds h0 and c0 per layer (h0 alone for a GRU or RNN)
    for cell, n_state in (("lstm", 2), ("gru", 1), ("rnn", 1)):
        zeros, learned = (ModelConfig(cell=cell, layers=3, hidden=128, start_state=s) for s in ("zeros", "learned"))
        count = [
            model.param_count(jax.eval_shape(lambda c=c: model.init_params(c, 65, jax.random.PRNGKey(0))))
            for c in (zeros, learned)
        ]
        assert count[1] - count[0] == 3 * n_state * 128


def test_init_params_layout() -> None:
    cfg = ModelConfig(cell="lstm", layers=3, hidden=H, forget_bias=0.5)
    params = model.init_params(cfg, V, jax.random.PRNGKey(0))
    assert [p["W_ih"].shape for p in params["layers"]] == [(V, 4 * H), (H, 4 * H), (H, 4 * H)]
    assert params["head"]["W"].shape == (H, V) and params["head"]["b"].shape == (V,)
    for p in params["layers"]:
        np.testing.assert_array_equal(np.asarray(p["b"][H : 2 * H]), 0.5)
    # layers get distinct keys
    assert not np.array_equal(np.asarray(params["layers"][1]["W_hh"]), np.asarray(params["layers"][2]["W_hh"]))


def _ref_loss(params, cell, ids, targets, carry) -> float:
    logits, _, _ = ref.run_network(ref.state_dict_from_params(params, cell, V), cell, ids, carry)
    return ref.cross_entropy(logits, targets)


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
def test_loss_fn_value_and_gradient_match_reference_finite_differences(cell: str) -> None:
    hidden, batch, length = H, 2, 4
    cfg, params = make(cell, layers=2, hidden=hidden, vocab=V, seed=16)
    ids, targets = random_ids(17, batch, length + 1)[:, :-1], random_ids(17, batch, length + 1)[:, 1:]
    carry = random_model_carry(cfg, batch, seed=18)
    p64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    c64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), carry)

    with jax.enable_x64(True):

        def f(p):
            return loop.loss_fn(p, jnp.asarray(ids), jnp.asarray(targets), c64, cfg, train=False, key=None)[0]

        loss, grads = jax.jit(jax.value_and_grad(f))(jax.tree_util.tree_map(jnp.asarray, p64))
        grads = jax.tree_util.tree_map(np.asarray, grads)

    assert float(loss) == pytest.approx(_ref_loss(p64, cell, ids, targets, c64), abs=1e-10)
    # a few entries of each kind of parameter, in both layers and the head
    seen, g = int(ids[0, 0]), {"lstm": 4, "gru": 3, "rnn": 1}[cell] * hidden
    picks = [
        (("layers", 0, "W_ih"), (seen, 0)),
        (("layers", 0, "W_ih"), (seen, g - 1)),
        (("layers", 0, "W_hh"), (1, 2)),
        (("layers", 1, "W_ih"), (2, 0)),
        (("layers", 1, "W_hh"), (0, hidden - 1)),
        (("head", "W"), (1, 3)),
        (("head", "b"), (int(targets[0, 0]),)),
        (("head", "b"), (0,)),
    ]
    bias_names = ("b_ih", "b_hh") if cell == "gru" else ("b",)
    picks += [(("layers", k, name), (j,)) for k in (0, 1) for name in bias_names for j in (0, g // 2, g - 1)]
    eps = 1e-6
    for path, idx in picks:

        def bumped(sign):
            q = jax.tree_util.tree_map(np.copy, p64)
            node = q
            for key in path:
                node = node[key]
            node[idx] += sign * eps
            return _ref_loss(q, cell, ids, targets, c64)

        fd = (bumped(1.0) - bumped(-1.0)) / (2 * eps)
        got = grads
        for key in path:
            got = got[key]
        assert got[idx] == pytest.approx(fd, rel=1e-5, abs=1e-8), (path, idx)
    assert np.abs(grads["layers"][0]["W_hh"]).max() > 1e-4  # the recurrent path carries gradient


@pytest.mark.slow
def test_loss_fn_is_mean_cross_entropy_in_nats() -> None:
    cfg, params = make("gru", seed=19)
    ids, targets = random_ids(20), random_ids(21)
    carry = model.zeros_carry(cfg, B)
    loss, final = loop.loss_fn(params, jnp.asarray(ids), jnp.asarray(targets), carry, cfg, train=False, key=None)
    ref_logits, ref_final, _ = reference(params, cfg, ids)
    assert float(loss) == pytest.approx(ref.cross_entropy(ref_logits, targets), abs=1e-5)
    assert_model_carry_close(final, ref_final)
