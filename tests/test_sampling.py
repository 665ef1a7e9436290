"""Sampling: the filters, and compiled chunked generation against a one-character-at-a-time loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import cut_at_stop

from charlstm import config
from charlstm.data.corpus import Vocab
from charlstm.errors import UserError
from charlstm.nn import model, sampling

VOCAB = Vocab("utf-8", tuple(sorted(ord(c) for c in "\nabcdefgh ")))


def _setup(cell: str = "lstm") -> tuple[model.Params, config.ModelConfig]:
    cfg = config.ModelConfig(cell=cell, layers=2, hidden=16)
    return model.init_params(cfg, len(VOCAB), jax.random.PRNGKey(3)), cfg


def test_top_k_keeps_exactly_the_k_largest() -> None:
    logits = jnp.array([[0.1, 3.0, -1.0, 2.0, 0.5]])
    out = np.asarray(sampling.filter_logits(logits, 1.0, 2, 1.0))
    assert np.isfinite(out).tolist() == [[False, True, False, True, False]]


@pytest.mark.slow
def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = jnp.log(jnp.asarray(probs))[None]
    keep = lambda p: np.isfinite(np.asarray(sampling.filter_logits(logits, 1.0, 0, p)))[0].tolist()  # noqa: E731
    assert keep(0.5) == [True, False, False, False]
    assert keep(0.6) == [True, True, False, False]
    assert keep(0.8) == [True, True, False, False]
    assert keep(0.81) == [True, True, True, False]
    assert keep(1.0) == [True, True, True, True]
    assert keep(0.01) == [True, False, False, False]  # the most likely token always survives


def test_temperature_scales_logits() -> None:
    logits = jnp.array([[1.0, 2.0]])
    np.testing.assert_allclose(sampling.filter_logits(logits, 0.5, 0, 1.0), [[2.0, 4.0]])


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_greedy_chunks_equal_a_per_character_loop(cell: str) -> None:
    params, cfg = _setup(cell)
    prompt = sampling.encode_prompt(VOCAB, "abc")
    opts = sampling.SampleOptions(length=21, greedy=True, chunk=8)
    got = np.concatenate(list(sampling.generate(params, cfg, prompt, opts)), axis=1)[0]
    assert got.shape == (21,)
    # Reference: feed the prompt, then one model call per character, argmax each time.
    logits, carry = model.apply(params, jnp.asarray(prompt)[None], model.zeros_carry(cfg, 1), cfg)
    want = []
    for _ in range(21):
        tok = int(jnp.argmax(logits[0, -1]))
        want.append(tok)
        logits, carry = model.apply(params, jnp.array([[tok]]), carry, cfg)
    assert got.tolist() == want
    # 21 = 8 + 8 + 5: the last chunk is generated at the full 8 and cut, so the chunk compiled once.
    assert sampling.compiled(cfg, opts)[1]._cache_size() == 1


@pytest.mark.slow
def test_seeded_sampling_is_repeatable_and_batched() -> None:
    params, cfg = _setup()
    prompt = sampling.encode_prompt(VOCAB, "ab")
    opts = sampling.SampleOptions(length=40, temperature=1.5, seed=7, num_samples=3, chunk=16)
    a = sampling.sample_text(params, cfg, VOCAB, "ab", opts)
    b = sampling.sample_text(params, cfg, VOCAB, "ab", opts)
    c = sampling.sample_text(
        params, cfg, VOCAB, "ab", sampling.SampleOptions(length=40, temperature=1.5, seed=8, num_samples=3)
    )
    assert a == b and a != c
    assert len(a) == 3 and len(set(a)) > 1  # independent streams
    assert all(t.startswith("ab") and len(t) == 42 for t in a)
    del prompt


def test_newline_priming_changes_only_the_context() -> None:
    params, cfg = _setup()
    prompt = sampling.encode_prompt(VOCAB, "ab")
    nl = sampling.newline_id(VOCAB)
    primed = sampling.SampleOptions(length=10, greedy=True, newline_id=nl)
    plain = sampling.SampleOptions(length=10, greedy=True)
    with_nl = np.concatenate(list(sampling.generate(params, cfg, np.concatenate([[nl], prompt]), plain)), axis=1)
    assert np.array_equal(np.concatenate(list(sampling.generate(params, cfg, prompt, primed)), axis=1), with_nl)


def test_prompt_checks() -> None:
    with pytest.raises(UserError, match="not in the run's vocabulary: 'z'"):
        sampling.encode_prompt(VOCAB, "abz")
    assert VOCAB.decode(sampling.encode_prompt(VOCAB, "azb", skip_unknown=True)) == "ab"
    with pytest.raises(UserError, match="empty"):
        sampling.encode_prompt(VOCAB, "")
    with pytest.raises(UserError, match="top-k"):
        sampling.SampleOptions(top_k=len(VOCAB) + 1).check(len(VOCAB))
    with pytest.raises(UserError, match="temperature"):
        sampling.SampleOptions(temperature=0).check(len(VOCAB))
    sampling.SampleOptions(temperature=0, greedy=True).check(len(VOCAB))


@pytest.mark.slow
@pytest.mark.parametrize(("temperature", "top_k"), [(1.0, 0), (0.5, 0), (1.0, 3)])
def test_sampled_frequencies_follow_the_filtered_softmax(temperature: float, top_k: int) -> None:
    """4000 independent first characters against the model's own distribution after the prompt."""
    cfg = config.ModelConfig(cell="lstm", layers=1, hidden=16, embed=8)
    params = model.init_params(cfg, len(VOCAB), jax.random.PRNGKey(5))
    params["head"]["W"] = params["head"]["W"] * 8.0  # a peaked, uneven distribution
    prompt = sampling.encode_prompt(VOCAB, "abc")
    n = 4000
    opts = sampling.SampleOptions(length=1, temperature=temperature, top_k=top_k, seed=11, num_samples=n)
    toks = np.concatenate(list(sampling.generate(params, cfg, prompt, opts)), axis=1)[:, 0]
    logits, _ = model.apply(params, jnp.asarray(prompt)[None], model.zeros_carry(cfg, 1), cfg)
    want = np.asarray(jax.nn.softmax(sampling.filter_logits(logits[0, -1], temperature, top_k, 1.0)), np.float64)
    got = np.bincount(toks, minlength=len(VOCAB)) / n
    assert want.max() < 0.9 and (want > 0.02).sum() >= 3  # the check is not trivial
    np.testing.assert_array_equal(got[want == 0], 0.0)  # filtered-out symbols are never drawn
    sd = np.sqrt(want * (1 - want) / n)
    assert np.all(np.abs(got - want) <= 5 * sd + 1e-12), (got, want)


def _first_stop_reference(text: str, stops: tuple[str, ...]) -> str:
    """Character by character: the text up to the first position where it ends with a stop, that stop left out."""
    for end in range(1, len(text) + 1):
        done = [s for s in stops if text[:end].endswith(s)]
        if done:
            return text[: end - max(map(len, done))]
    return text


def test_stop_scan_cuts_where_a_character_by_character_reader_would() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        text = "".join(rng.choice(list("ab\n"), size=int(rng.integers(0, 30))))
        words = [rng.choice(list("ab\n"), size=int(rng.integers(1, 4))) for _ in range(rng.integers(1, 4))]
        stops = tuple("".join(w) for w in words)
        cuts = sorted(rng.integers(0, len(text) + 1, size=int(rng.integers(0, 5))).tolist())
        scan = sampling.StopScan(stops)
        shown = [scan.feed(text[a:b]) for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        shown.append(scan.flush())
        want = _first_stop_reference(text, stops)
        assert "".join(shown) == want == cut_at_stop(text, stops), (text, stops, cuts)
        assert scan.done == (want != text or any(text.endswith(s) for s in stops))


def test_stop_scan_holds_back_only_a_possible_start_of_a_stop() -> None:
    scan = sampling.StopScan(("END",))
    assert [scan.feed(p) for p in ["aE", "N", "x", "EN"]] == ["a", "", "ENx", ""]
    assert scan.feed("D and more") == "" and scan.done
    assert sampling.StopScan(()).feed("any text") == "any text"


def test_stop_escapes() -> None:
    assert sampling.unescape(r"\n\n") == "\n\n"
    assert sampling.unescape(r"é\tx\\") == "é\tx\\"
    assert sampling.unescape(r"日本\u00e9\x41") == "日本éA"
    for bad in (r"\q", r"\x4"):
        with pytest.raises(UserError, match="escape"):
            sampling.unescape(bad)
    with pytest.raises(UserError, match="--stop is empty"):
        sampling.SampleOptions(stop=("",)).check(10)
