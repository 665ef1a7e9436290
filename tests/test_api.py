"""The Python API: `charlstm.train` and `charlstm.load` give a Model whose sample, stream, score and export agree
with the command line, keep their compiled sampler between calls, and raise UserError subclasses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import assert_ok, cut_at_stop, run_cli

import charlstm
from charlstm import api
from charlstm.errors import ConfigError, CorpusError, RunError, UsageError, UserError
from charlstm.training import configure

TINY = {
    "train.steps": 6,
    "train.eval_every": 3,
    "checkpoint.every": 3,
    "train.sample_length": 0,
    "train.prompt_check": False,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[charlstm.Model, Path]:
    """A tiny model trained through the API on the bundled corpus: (the model, its runs directory)."""
    runs = tmp_path_factory.mktemp("api") / "runs"
    model = charlstm.train(config="tiny", overrides=TINY, runs_dir=runs, name="tiny", progress=False)
    return model, runs


@pytest.mark.slow
def test_train_returns_the_model_at_its_final_checkpoint(trained: tuple[charlstm.Model, Path]) -> None:
    model, runs = trained
    assert isinstance(model, charlstm.Model)
    assert model.step == 6 and model.run_dir == runs / "tiny"
    assert model.config.model.hidden == 32 and model.config.train.steps == 6  # tiny.yaml with the overrides
    assert model.summary is not None and model.summary.steps == 6
    assert model.summary.final_val_loss == pytest.approx(model.val_loss)
    assert len(model.vocab) > 20 and model.vocab.encoding == "utf-8"
    loaded = charlstm.load(runs_dir=runs)  # runs/latest: the run just trained
    assert loaded.run_dir == (runs / "tiny").resolve() and loaded.step == 6
    assert charlstm.load("tiny", 3, runs_dir=runs).step == 3


@pytest.mark.slow
def test_same_seed_same_sample_as_the_cli(trained: tuple[charlstm.Model, Path]) -> None:
    model, runs = trained
    options = {"length": 120, "temperature": 0.9, "top_k": 10, "seed": 5}
    text = model.sample("I went to ", **options)[0]
    assert text.startswith("I went to ") and len(text) == len("I went to ") + 120
    cli = run_cli(
        [
            "sample",
            "--runs-dir",
            runs,
            "--prompt",
            "I went to ",
            "--length",
            "120",
            "--temperature",
            "0.9",
            "--top-k",
            "10",
            "--seed",
            "5",
        ]
    )
    assert_ok(cli)
    assert cli.stdout == text + "\n"
    several = model.sample("I went", length=40, seed=2, num_samples=3)
    cli = run_cli(
        [
            "sample",
            "--runs-dir",
            runs,
            "--prompt",
            "I went",
            "--length",
            "40",
            "--seed",
            "2",
            "--num-samples",
            "3",
            "--json",
        ]
    )
    assert_ok(cli)
    lines = [json.loads(line) for line in cli.stdout.splitlines()]
    assert [r["prompt"] + r["text"] for r in lines] == several
    assert [r["sample"] for r in lines] == [1, 2, 3] and {r["step"] for r in lines} == {6}
    assert len(set(several)) == 3  # independent samples, not one repeated


@pytest.mark.slow
def test_stream_yields_the_prompt_then_the_sample(trained: tuple[charlstm.Model, Path]) -> None:
    model, _ = trained
    pieces = list(model.stream("We", length=1300, seed=4))
    assert pieces[0] == "We" and len(pieces) == 1 + 3  # 512-character chunks
    assert "".join(pieces) == model.sample("We", length=1300, seed=4)[0]


@pytest.mark.slow
def test_stop_cuts_each_sample_at_its_first_stop(trained: tuple[charlstm.Model, Path]) -> None:
    model, _ = trained
    free = model.sample("We", length=400, seed=2, num_samples=3)
    cut = model.sample("We", length=400, seed=2, num_samples=3, stop=["e", "\n"])
    assert cut == ["We" + cut_at_stop(t[2:], ("e", "\n")) for t in free]
    assert all(len(c) < len(t) for c, t in zip(cut, free))  # every one met a stop ("e" is the commonest letter)
    streamed = list(model.stream("We", length=1300, seed=4, stop=("\n\n",)))
    assert "".join(streamed) == model.sample("We", length=1300, seed=4, stop=("\n\n",))[0]
    with pytest.raises(UsageError, match="never be generated"):
        model.sample("We", stop=["\u2603"])


@pytest.fixture
def compilations() -> Iterator[list[str]]:
    """The XLA compilations that happen while the test runs."""
    seen: list[str] = []

    def listener(event: str, duration: float, **kwargs: object) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            seen.append(str(kwargs.get("fun_name", "?")))

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield seen
    jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.slow
def test_a_second_sample_does_not_compile(trained: tuple[charlstm.Model, Path], compilations: list[str]) -> None:
    model, _ = trained
    model.sample("The", length=64, seed=1, top_p=0.9)
    assert compilations, "the first call compiles the sampler"
    compilations.clear()
    again = model.sample("Who", length=64, seed=2, top_p=0.9)  # another seed and prompt of the same length
    assert compilations == []
    assert again[0].startswith("Who") and len(again[0]) == 3 + 64


@pytest.mark.slow
def test_score_a_text_and_a_file(trained: tuple[charlstm.Model, Path], tmp_path: Path) -> None:
    model, _ = trained
    text = "I went to Goa. It was fun. I don't speak Konkani.\n" * 3
    path = tmp_path / "held-out.txt"
    path.write_text(text, encoding="utf-8")
    from_text, from_file = model.score(text), model.score(path)
    assert from_text.nats_per_char == pytest.approx(from_file.nats_per_char, rel=1e-6)
    assert from_text.chars_scored == len(text) - 1
    assert from_text.bits_per_char == pytest.approx(from_text.nats_per_char / np.log(2))
    assert 0 < from_text.nats_per_char < np.log(len(model.vocab)) + 1  # trained a little: near or below uniform
    with pytest.raises(CorpusError, match="not in the run's vocabulary"):
        model.score(text + "\x07")
    assert model.score(text + "\x07", skip_unknown=True).unknown_skipped == 1


@pytest.mark.slow
def test_export_writes_the_torch_layout(trained: tuple[charlstm.Model, Path], tmp_path: Path) -> None:
    model, _ = trained
    arrays = model.export(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as npz:
        assert set(arrays) <= set(npz.files) and "rnn.weight_hh_l0" in npz.files
        assert json.loads(str(npz["vocab_json"]))["symbols"] == list(model.vocab.symbols)
    with pytest.raises(UsageError, match=r"\.npz"):
        model.export(tmp_path / "m.pt")


@pytest.mark.slow
@pytest.mark.parametrize(
    "call,error,words",
    [
        (lambda m: m.sample(length=0), UsageError, "--length"),
        (lambda m: m.sample(temperature=0), UsageError, "--greedy"),
        (lambda m: m.sample("\x07"), UsageError, "vocabulary"),
        (lambda m: m.stream(top_p=2.0), UsageError, "--top-p"),  # checked at the call, not at the first piece
        (lambda m: m.score(42), UsageError, "str"),
        (lambda m: m.score(str(m.run_dir / "config.yaml")), UsageError, "pathlib.Path"),
        (lambda m: charlstm.load(m.run_dir, "newest"), UsageError, "latest, best"),
        (lambda m: charlstm.load(m.run_dir, 4), RunError, "no checkpoint at step 4"),
        (lambda m: charlstm.load("no-such-run", runs_dir=m.run_dir.parent), RunError, "run not found"),
        (
            lambda m: charlstm.train(config="tiny", overrides={"model.hiden": 4}),
            ConfigError,
            "did you mean 'model.hidden'",
        ),
        (lambda m: charlstm.train(config="tiny", overrides="model.hidden=4"), UsageError, "mapping"),
    ],
)
def test_errors_are_user_errors(trained: tuple[charlstm.Model, Path], call: object, error: type, words: str) -> None:
    model, _ = trained
    with pytest.raises(error, match=words) as info:
        call(model)  # type: ignore[operator]
    assert isinstance(info.value, UserError)


def test_overrides_keep_their_types() -> None:
    items = configure.override_items(
        {"model.hidden": 64, "optim.lr": 0.001, "model.layer_norm": True, "model.cell": "gru"}
    )
    assert items == ["model.hidden=64", "optim.lr=0.001", "model.layer_norm=true", 'model.cell="gru"']
    cfg, run = api.training_config("tiny", {"model.cell": "gru", "optim.lr": 0.001})
    assert (cfg.model.cell, cfg.optim.lr, run) == ("gru", 0.001, None)


@pytest.mark.slow
def test_novelty_marks_copies_of_the_training_text(trained: tuple[charlstm.Model, Path]) -> None:
    """sample(novelty=True) returns the same texts, checked; spans are verbatim training text, on the line named.
    (Without samples during training, train.sample_length=0, the summary has nothing to check.)"""
    model, _ = trained
    assert model.summary is not None and model.summary.copied is None and model.summary.to_json()["copied"] is None
    texts = model.sample("I went", length=200, seed=4, num_samples=2)
    checked = model.sample("I went", length=200, seed=4, num_samples=2, novelty=True, min_copy=2)
    assert [c.sample for c in checked] == texts and all(c.prompt == "I went" for c in checked)
    index = model.novelty_index()
    train = bytes(index.text).decode("utf-8")
    spans = [(c, s) for c in checked for s in c.spans]
    assert spans  # a tiny model on the templated corpus copies its short phrases
    for c, s in spans:
        assert s.length >= 2 and c.text[s.start : s.end] in train
        assert bytes(index.text[: s.corpus_offset]).count(b"\n") + 1 == s.corpus_line
    assert model.novelty(texts[0], prompt="I went", min_copy=2) == checked[0]
