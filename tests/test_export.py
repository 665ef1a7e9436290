"""charlstm.nn.export: the PyTorch-layout state dict against an independent conversion, and the .npz file."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

from charlstm.config import Config
from charlstm.data.corpus import Vocab
from charlstm.errors import UserError
from charlstm.nn import export, model

CELLS = ("lstm", "gru", "rnn")
B, T, H, V, L = 3, 6, 5, 7, 2
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
apply = jax.jit(model.apply, static_argnames=("cfg", "train"))


def make(cell: str, seed: int = 0) -> tuple[Config, dict]:
    """A full Config (export takes one) and random parameters: every entry distinct, so a swapped or
    untransposed matrix cannot pass; the learned start state too."""
    cfg = Config.model_validate({"model": {"cell": cell, "layers": L, "hidden": H}})
    rng = np.random.default_rng(seed)
    u = lambda *shape: jnp.asarray(rng.uniform(-0.7, 0.7, shape), jnp.float32)  # noqa: E731
    g = GATES[cell] * H
    layers = []
    for k in range(L):
        p = {"W_ih": u(V if k == 0 else H, g), "W_hh": u(H, g)}
        p.update({"b_ih": u(g), "b_hh": u(g)} if cell == "gru" else {"b": u(g)})
        layers.append(p)
    start = [{name: u(H) for name in model.state_names(cell)} for _ in range(L)]
    return cfg, {"layers": layers, "head": {"W": u(H, V), "b": u(V)}, "start": start}


def vocab() -> Vocab:
    return Vocab(encoding="utf-8", symbols=tuple(ord(c) for c in " aeioué"))  # V = 7 symbols


def expected_keys(n_layers: int, cell: str) -> set[str]:
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    start = {"h0", "c0"} if cell == "lstm" else {"h0"}
    return (
        {"embedding.weight", "head.weight", "head.bias"}
        | start
        | {f"rnn.{n}_l{k}" for n in names for k in range(n_layers)}
    )


@pytest.mark.parametrize("cell", CELLS)
def test_torch_state_dict_equals_independent_conversion(cell: str) -> None:
    cfg, params = make(cell)
    sd = export.torch_state_dict(params, cfg, V)
    want = ref.state_dict_from_params(params, cell, V)
    assert set(sd) == set(want) == expected_keys(L, cell)
    g = GATES[cell] * H
    shapes = {
        "embedding.weight": (V, V),
        "head.weight": (V, H),
        "head.bias": (V,),
        "rnn.weight_ih_l0": (g, V),
        "rnn.weight_ih_l1": (g, H),
    }
    shapes.update({f"rnn.weight_hh_l{k}": (g, H) for k in range(L)})
    shapes.update({f"rnn.bias_{s}_l{k}": (g,) for k in range(L) for s in ("ih", "hh")})
    shapes.update({f"{name}0": (L, H) for name in model.state_names(cell)})
    for key in sd:
        assert isinstance(sd[key], np.ndarray) and sd[key].dtype == np.float32, key
        assert sd[key].shape == shapes[key], key
        np.testing.assert_array_equal(sd[key], want[key].astype(np.float32), err_msg=key)  # a pure relayout: exact


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("embed", [0, 6])
def test_reference_on_exported_state_dict_reproduces_apply(cell: str, embed: int) -> None:
    cfg, params = make(cell, seed=1)
    if embed:  # a learned embedding table in front of layer 0
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"embed": embed})})
        params = model.init_params(cfg.model, V, jax.random.PRNGKey(1))
    ids = np.random.default_rng(2).integers(0, V, (B, T))
    sd = export.torch_state_dict(params, cfg, V)
    logits, final = apply(params, jnp.asarray(ids, jnp.int32), model.start_carry(params, cfg.model, B), cfg.model)
    ref_logits, ref_final, _ = ref.run_network(sd, cell, ids)
    np.testing.assert_allclose(np.asarray(logits), ref_logits, rtol=0, atol=1e-5)
    for got, want in zip(jax.tree_util.tree_leaves(final), jax.tree_util.tree_leaves(ref_final)):
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_export_npz_round_trips(tmp_path: Path, cell: str) -> None:
    cfg, params = make(cell, seed=4)
    path = tmp_path / "out" / "model.npz"  # the folder does not exist yet
    returned = export.export_npz(params, cfg, vocab(), path)
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["model.npz"]  # no temporary file left behind
    want = export.torch_state_dict(params, cfg, V)
    with np.load(path) as npz:  # no pickles needed
        assert set(npz.files) == expected_keys(L, cell) | {"vocab_json", "config_json"}
        for key in want:
            np.testing.assert_array_equal(npz[key], want[key], err_msg=key)
            np.testing.assert_array_equal(returned[key], want[key], err_msg=key)
            assert npz[key].dtype == np.float32
        assert npz["vocab_json"].shape == () and npz["config_json"].shape == ()
        assert Vocab.from_json(str(npz["vocab_json"])) == vocab()
        config = json.loads(str(npz["config_json"]))
    assert Config.model_validate(config) == cfg
    assert config["model"]["cell"] == cell and config["model"]["hidden"] == H


def test_export_npz_overwrites_and_accepts_other_suffix(tmp_path: Path) -> None:
    cfg, params = make("rnn", seed=5)
    path = tmp_path / "weights.bin"
    path.write_bytes(b"old")
    export.export_npz(params, cfg, vocab(), path)
    with np.load(path) as npz:
        np.testing.assert_array_equal(npz["head.bias"], np.asarray(params["head"]["b"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.bin"]


def test_export_npz_unwritable_path_is_a_user_error(tmp_path: Path) -> None:
    cfg, params = make("rnn", seed=6)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot write"):
        export.export_npz(params, cfg, vocab(), blocker / "model.npz")


def _torch_module(torch, cell: str):
    rnn_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]

    class Net(torch.nn.Module):  # the module the export docstring and docs/commands.md describe
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(V, V)
            self.rnn = rnn_cls(V, H, num_layers=L)
            self.head = torch.nn.Linear(H, V)

        def forward(self, ids, state):  # ids [T, B]
            out, state = self.rnn(self.embedding(ids), state)
            return self.head(out), state

    return Net()


@pytest.mark.parametrize("cell", CELLS)
def test_pytorch_loads_export_and_reproduces_logits(tmp_path: Path, cell: str) -> None:
    torch = pytest.importorskip("torch")
    cfg, params = make(cell, seed=7)
    path = tmp_path / "model.npz"
    export.export_npz(params, cfg, vocab(), path)
    with np.load(path) as npz:
        sd = {k: torch.from_numpy(npz[k]) for k in npz.files if not k.endswith("_json")}
    start = tuple(sd.pop(f"{name}0")[:, None].expand(L, B, H).contiguous() for name in model.state_names(cell))
    net = _torch_module(torch, cell)
    net.load_state_dict(sd, strict=True)
    ids = np.random.default_rng(8).integers(0, V, (B, T))
    with torch.no_grad():
        t_logits, t_state = net(torch.from_numpy(ids.T.copy()), start if cell == "lstm" else start[0])
    logits, final = apply(params, jnp.asarray(ids, jnp.int32), model.start_carry(params, cfg.model, B), cfg.model)
    np.testing.assert_allclose(t_logits.numpy().transpose(1, 0, 2), np.asarray(logits), rtol=0, atol=1e-5)
    t_h = (t_state[0] if cell == "lstm" else t_state).numpy()  # [L, B, H]
    for k in range(L):
        np.testing.assert_allclose(t_h[k], np.asarray(final[k][0]), rtol=0, atol=1e-5)
        if cell == "lstm":
            np.testing.assert_allclose(t_state[1].numpy()[k], np.asarray(final[k][1]), rtol=0, atol=1e-5)
