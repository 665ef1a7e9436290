"""`charlstm export --out model.html`: the page, opened from file:// in headless Chromium, scores text as
charlstm does (per character, within 1e-4 nats) and continues a prompt greedily as `sample --greedy` does, for
every kind of model charlstm trains."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import assert_clean_error, assert_ok, cut_at_stop, run_cli
from test_serve import Browser, chromium

import charlstm
from charlstm import config
from charlstm.data import corpus
from charlstm.evaluation import scoring
from charlstm.nn import model, sampling, webpage

TEXT = "Jammu is a beautiful place. I went there last year, but I couldn't enjoy it.\nGoa, 1998: fun!\n"
PROMPT = "I went to Goa"
VARIANTS = {
    "lstm": ["model.embed=8", "model.layers=2"],
    "ln-lstm-one-hot": ["model.embed=0", "model.layer_norm=true", "model.layers=2"],
    "gru-zero-start": ["model.cell=gru", "model.embed=8", "model.start_state=zeros"],
    "rnn": ["model.cell=rnn", "model.embed=8", "model.layers=2"],
}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    profile = tmp_path_factory.mktemp("chromium")
    page = Browser(chromium(), profile)
    page.send("Page.enable")
    yield page
    page.close()
    shutil.rmtree(profile, ignore_errors=True)


def _open(browser: Browser, path: Path) -> None:
    browser.send("Page.navigate", url=path.resolve().as_uri())
    deadline = time.monotonic() + 60
    while browser.eval("typeof charlstm === 'object' && document.readyState === 'complete'") is not True:
        assert time.monotonic() < deadline, "the page did not load"
        time.sleep(0.05)


def _random_model(overrides: list[str], seed: int = 0) -> tuple[model.Params, config.Config, corpus.Vocab]:
    """Random weights, with a random (not zero) learned start state: the page must agree for any weights."""
    cfg = config.load("tiny", ["model.hidden=16", *overrides])
    vocab = corpus.Vocab("utf-8", tuple(sorted({ord(c) for c in TEXT + PROMPT})))
    params = model.init_params(cfg.model, len(vocab), jax.random.PRNGKey(seed))
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    noisy = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]  # gains, biases, start
    return jax.tree_util.tree_unflatten(tree, noisy), cfg, vocab


def _log_probs(params: model.Params, cfg: config.Config, ids: np.ndarray) -> np.ndarray:
    logits, _ = model.apply(params, ids[None, :-1], model.start_carry(params, cfg.model, 1), cfg.model)
    logp = jax.nn.log_softmax(logits[0], axis=-1)
    return np.asarray(logp[np.arange(len(ids) - 1), ids[1:]])


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_page_scores_and_continues_as_charlstm_does(browser: Browser, tmp_path: Path, variant: str) -> None:
    params, cfg, vocab = _random_model(VARIANTS[variant])
    path = tmp_path / "model.html"
    webpage.export_html(params, cfg, vocab, path)
    _open(browser, path)
    ids = vocab.encode(TEXT)
    page = np.asarray(browser.eval(f"charlstm.logProbs({json.dumps(TEXT)})"))
    ours = _log_probs(params, cfg, ids)
    np.testing.assert_allclose(page, ours, atol=1e-4, rtol=0)
    assert abs(-page.mean() - scoring.score(params, cfg.model, ids)) < 1e-4  # `charlstm eval`'s number
    opts = sampling.SampleOptions(length=200, greedy=True, newline_id=sampling.newline_id(vocab))
    expected = sampling.sample_text(params, cfg.model, vocab, PROMPT, opts)[0][len(PROMPT) :]
    assert browser.eval(f"charlstm.greedy({json.dumps(PROMPT)}, 200)") == expected
    stops = [expected[40:42], "\n"]  # met at character 40 at the latest
    opts = json.dumps({"length": 200, "greedy": True, "stop": stops})
    page_cut = browser.eval(f"Array.from(charlstm.generate({json.dumps(PROMPT)}, {opts})).join('')")
    assert page_cut == cut_at_stop(expected, tuple(stops))


@pytest.mark.slow
def test_the_page_generates_with_the_form_and_stands_alone(browser: Browser, tmp_path: Path) -> None:
    params, cfg, vocab = _random_model(VARIANTS["lstm"])
    path = tmp_path / "model.html"
    webpage.export_html(params, cfg, vocab, path, about="a test model")
    html = path.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html and "<script src" not in html  # nothing to fetch
    _open(browser, path)
    set_value = "document.getElementById('{}').value = {};"
    browser.eval(set_value.format("prompt", json.dumps("Goa\u00e9")) + set_value.format("length", 120))
    browser.eval(set_value.format("stopat", json.dumps("\\n\\n")))  # typed as backslash-n: never met here
    browser.eval("document.getElementById('generate').click()")
    deadline = time.monotonic() + 60
    while browser.eval("document.getElementById('generate').disabled") is not False:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    shown = browser.eval("document.getElementById('output').textContent")
    assert shown.startswith("Goa\u00e9") and len(shown) == len("Goa\u00e9") + 120
    assert "1 character(s)" in browser.eval("document.getElementById('note').textContent")  # é is unknown
    assert "a test model" in browser.eval("document.getElementById('about').textContent")
    same = browser.eval("Array.from(charlstm.generate('Goa', {length: 50, temperature: 0.8, seed: 3})).join('')")
    again = browser.eval("Array.from(charlstm.generate('Goa', {length: 50, temperature: 0.8, seed: 3})).join('')")
    other = browser.eval("Array.from(charlstm.generate('Goa', {length: 50, temperature: 0.8, seed: 4})).join('')")
    assert same == again != other


def test_the_default_models_page_is_under_a_megabyte() -> None:
    cfg = config.load("default")
    vocab = corpus.Vocab("utf-8", tuple(range(32, 127)) + (10,))
    params = model.init_params(cfg.model, len(vocab), jax.random.PRNGKey(0))
    assert len(webpage.page(params, cfg, vocab).encode()) < 1_000_000


@pytest.mark.slow
def test_export_writes_a_page_and_keeps_an_earlier_one(tmp_path: Path) -> None:
    charlstm.train(
        None, "tiny", {"train.steps": 6, "train.sample_length": 0}, runs_dir=tmp_path / "runs", name="t", progress=False
    )
    out = tmp_path / "model.html"
    args = ["export", "--runs-dir", tmp_path / "runs", "--run", "t", "--out", out]
    proc = run_cli(args)
    assert_ok(proc)
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>") and "open it in a browser" in proc.stderr
    assert_clean_error(run_cli(args), "the export would overwrite", code=1)
    assert_ok(run_cli([*args, "--force"]))
