"""`charlstm export --out DIR`: every kind of model, loaded by the exported charlstm_torch.py in PyTorch, scores a
text as `charlstm eval` does (to 1e-4 nats/char) and samples; greedy samples equal charlstm's.

PyTorch is a test dependency (the `test` extra), so these run wherever the tests run.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import ROOT, TINY_TRAIN, assert_clean_error, assert_ok, cli_env, run_cli
from safetensors.numpy import load_file

from charlstm import api
from charlstm.config import Config
from charlstm.data import corpus
from charlstm.data.corpus import Vocab
from charlstm.errors import UsageError
from charlstm.evaluation import scoring
from charlstm.nn import export, model, sampling

# A text with non-ASCII characters; every kind below is scored on it.
TEXT = (ROOT / "corpora" / "languages.txt").read_text(encoding="utf-8")[:2500] + "\nCafé naïve — déjà vu.\n"

KINDS = {  # name: the model section of the config
    "lstm": {"cell": "lstm", "layers": 2, "hidden": 12, "embed": 8},
    "gru": {"cell": "gru", "layers": 2, "hidden": 12, "embed": 8},
    "rnn": {"cell": "rnn", "layers": 2, "hidden": 12, "embed": 8},
    "layer-norm lstm": {"cell": "lstm", "layers": 2, "hidden": 12, "embed": 8, "layer_norm": True},
    "tied embedding": {"cell": "lstm", "layers": 1, "hidden": 16, "embed": 16, "tie_embed": True},
    "one-hot": {"cell": "lstm", "layers": 2, "hidden": 12},
    "one-hot layer-norm, zero start": {
        "cell": "lstm",
        "layers": 1,
        "hidden": 12,
        "layer_norm": True,
        "start_state": "zeros",
    },
    "gru on bytes": {"cell": "gru", "layers": 1, "hidden": 12, "encoding": "bytes"},
}
LOSS_DIFFERENCES: dict[str, float] = {}  # kind -> |torch - charlstm| nats/char, printed at the end


def make(kind: str, seed: int = 0) -> tuple[Config, model.Params, Vocab]:
    """A config, parameters initialised as training does and then moved off their initial values (gains off 1,
    start state off 0, every bias non-zero: an entry the export forgets cannot pass), and the text's vocabulary.

    The move is small on purpose. With noise of 0.3 a layer-normalised LSTM becomes chaotic: float32 rounding
    differences between two correct implementations grow to 1e-2 nats over 2,500 characters (measured; plain
    cells stayed at 1e-6). Exactly at initialisation LN of a near-constant cell state amplifies them too."""
    spec = dict(KINDS[kind])
    encoding = spec.pop("encoding", "utf-8")
    cfg = Config.model_validate({"model": spec, "data": {"encoding": encoding}})
    raw = TEXT.encode("utf-8")
    symbols = sorted(set(raw)) if encoding == "bytes" else sorted(set(map(ord, TEXT)))
    vocab = Vocab(encoding=encoding, symbols=tuple(symbols))
    params = model.init_params(cfg.model, len(vocab), jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map(lambda x: x + jnp.asarray(rng.normal(0, 0.1, x.shape), x.dtype), params)
    return cfg, params, vocab


def load_module(directory: Path) -> ModuleType:
    """Import the exported charlstm_torch.py from the export directory (not from the charlstm package)."""
    spec = importlib.util.spec_from_file_location(f"exported_{abs(hash(directory))}", directory / "charlstm_torch.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module", autouse=True)
def _report() -> object:
    yield
    if LOSS_DIFFERENCES:
        print(
            "\n|torch - charlstm eval| in nats/char: " + ", ".join(f"{k} {v:.1e}" for k, v in LOSS_DIFFERENCES.items())
        )


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_exported_model_scores_as_charlstm_eval_and_samples(kind: str, tmp_path: Path) -> None:
    cfg, params, vocab = make(kind)
    written = export.export_dir(params, cfg, vocab, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(export.TORCH_FILES)  # no temporary files

    ids, _ = corpus.known_ids(vocab, corpus.to_points(TEXT.encode("utf-8"), vocab.encoding))  # as `eval` reads a file
    want = scoring.score(params, cfg.model, ids)

    net = load_module(tmp_path / "out").load(tmp_path / "out")
    assert set(net.state_dict()) == set(written)  # strict: every tensor has a place, every parameter a tensor
    x = net.encode(TEXT)
    np.testing.assert_array_equal(x.numpy(), ids)  # the module's vocabulary reads the text as charlstm does
    with torch.no_grad():
        logits, _ = net(x[None, :-1])  # one pass from the start state, scored here
        got = F.cross_entropy(logits[0].double(), x[1:]).item()
    LOSS_DIFFERENCES[kind] = abs(got - want)
    assert got == pytest.approx(want, abs=1e-4)
    assert net.score(TEXT, chunk=700) == pytest.approx(got, abs=1e-5)  # in chunks, the state carried across

    text = net.generate("Kerala", length=40, temperature=0.8, top_k=5, top_p=0.9, seed=3)
    assert text.startswith("Kerala") and len(text) > len("Kerala")
    assert net.generate("Kerala", length=40, temperature=0.8, top_k=5, top_p=0.9, seed=3) == text  # seeded
    prompt = sampling.encode_prompt(vocab, "Kerala")
    opts = sampling.SampleOptions(length=30, greedy=True, newline_id=sampling.newline_id(vocab))
    theirs = np.concatenate(list(sampling.generate(params, cfg.model, prompt, opts)), axis=1)[0]
    assert net.generate("Kerala", length=30, greedy=True) == "Kerala" + vocab.decode(theirs)


def test_start_state_is_the_default_state(tmp_path: Path) -> None:
    cfg, params, vocab = make("lstm", seed=1)
    export.export_dir(params, cfg, vocab, tmp_path)
    net = load_module(tmp_path).load(tmp_path)
    h, c = net.initial_state(3)
    start = model.start_carry(params, cfg.model, 1)
    for k in range(cfg.model.layers):
        for got, want in ((h[k], start[k][0][0]), (c[k], start[k][1][0])):
            np.testing.assert_allclose(got.detach().numpy(), np.broadcast_to(np.asarray(want), (3, 12)), atol=0)
    assert net.h0.requires_grad  # learned: fine-tuning in PyTorch trains it too


def test_safetensors_file_is_standard(tmp_path: Path) -> None:
    cfg, params, vocab = make("layer-norm lstm", seed=2)
    written = export.export_dir(params, cfg, vocab, tmp_path)
    by_library = load_file(str(tmp_path / "model.safetensors"))  # the safetensors package's own reader
    by_module = load_module(tmp_path).read_safetensors(tmp_path / "model.safetensors")
    assert set(by_library) == set(by_module) == set(written)
    for name, array in written.items():
        np.testing.assert_array_equal(by_library[name], array, err_msg=name)
        np.testing.assert_array_equal(by_module[name].numpy(), array, err_msg=name)
    assert "rnn.gain_c_l1" in written and "head.weight" in written and "embedding.weight" in written
    assert Config.model_validate(json.loads((tmp_path / "config.json").read_text())) == cfg
    assert Vocab.from_json((tmp_path / "vocab.json").read_text()) == vocab


def test_tensor_names(tmp_path: Path) -> None:
    tied = export.torch_tensors(make("tied embedding")[1], make("tied embedding")[0])
    assert "head.weight" not in tied and tied["embedding.weight"].shape[1] == 16  # the head reads the table
    one_hot = export.torch_tensors(make("one-hot")[1], make("one-hot")[0])
    assert "embedding.weight" not in one_hot and {"h0", "c0"} <= set(one_hot)
    gru = export.torch_tensors(make("gru")[1], make("gru")[0])
    assert "c0" not in gru and gru["rnn.weight_hh_l1"].shape == (36, 12)  # nn.GRU's [3H, H]


def test_the_module_imports_only_torch_and_the_standard_library() -> None:
    source = (ROOT / "charlstm" / "charlstm_torch.py").read_text(encoding="utf-8")
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots - {"torch"} <= set(sys.stdlib_module_names), roots


def test_export_kind() -> None:
    assert api.export_kind("model.npz") == "npz" and api.export_kind("model") == "dir"
    with pytest.raises(UsageError, match=r"\.npz"):
        api.export_kind("model.pt")


@pytest.mark.slow
def test_a_trained_run_leaves_the_tool(tmp_path: Path) -> None:
    """The shipped configs are layer-normalised: train one, export it, and score and sample it with the exported
    script in a process where importing charlstm fails."""
    runs = tmp_path / "runs"
    assert_ok(
        run_cli(
            [
                "train",
                *TINY_TRAIN,
                "--set",
                "model.layer_norm=true",
                "--set",
                "model.embed=8",
                "--runs-dir",
                runs,
                "--name",
                "ln",
                "-q",
            ],
            timeout=300,
        )
    )
    out = tmp_path / "exported"
    proc = run_cli(["export", "--run", "ln", "--runs-dir", runs, "--out", out])
    assert_ok(proc)
    assert "charlstm_torch.py" in proc.stderr and "lstm-ln 1x32" in proc.stderr
    corpus = tmp_path / "held-out.txt"
    corpus.write_bytes((ROOT / "corpora" / "languages.txt").read_bytes()[-5000:])
    ev = run_cli(["eval", corpus, "--run", "ln", "--runs-dir", runs, "--json"])
    assert_ok(ev)
    want = json.loads(ev.stdout)["nats_per_char"]

    # The script run as `python charlstm_torch.py ...`, in a process where `import charlstm` raises ImportError.
    without_charlstm = (
        "import sys, runpy; sys.modules['charlstm'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    script = [sys.executable, "-c", without_charlstm, str(out / "charlstm_torch.py")]
    env = {k: v for k, v in cli_env().items() if k != "PYTHONPATH"}
    scored = subprocess.run(
        [*script, str(out), "--score", str(corpus)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert scored.returncode == 0, scored.stderr
    got = float(scored.stdout.split()[0])  # printed to 6 decimals
    LOSS_DIFFERENCES["trained layer-norm lstm, via the CLI"] = abs(got - want)
    assert got == pytest.approx(want, abs=1e-4)
    sampled = subprocess.run(
        [*script, "--prompt", "Goa", "--length", "30", "--seed", "1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=out,
        timeout=120,
    )  # the directory defaults to the script's
    assert sampled.returncode == 0, sampled.stderr
    assert sampled.stdout.startswith("Goa") and len(sampled.stdout) > 30

    npz = run_cli(["export", "--run", "ln", "--runs-dir", runs, "--out", tmp_path / "m.npz"])
    assert_clean_error(npz, "layer_norm", "--out DIR", code=1)  # the .npz keeps nn.LSTM's layout, which has no LN
    assert_clean_error(
        run_cli(["export", "--run", "ln", "--runs-dir", runs, "--out", tmp_path / "m.pt"]), ".npz", code=2
    )
