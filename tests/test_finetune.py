"""Fine-tuning (`charlstm train NEW --init-from RUN`): a new run starts from another run's weights and model
section with a fresh optimizer and schedule; characters the run lacks are an error naming them, or new rows
with --extend-vocab."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import ROOT, assert_clean_error, assert_ok, run_cli

import charlstm
from charlstm import api, config
from charlstm.data.corpus import Vocab
from charlstm.errors import CorpusError, UsageError
from charlstm.nn import model
from charlstm.training import finetune, loop, rundir

# The source run's hidden size differs from tiny.yaml's, to show the model section comes from the run.
SOURCE = {
    "train.steps": 30,
    "train.eval_every": 10,
    "checkpoint.every": 10,
    "train.sample_length": 0,
    "model.hidden": 24,
}
FINE = {"train.steps": 4, "train.eval_every": 1, "train.log_every": 1, "checkpoint.every": 2, "train.sample_length": 0}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[charlstm.Model, Path]:
    runs = tmp_path_factory.mktemp("finetune") / "runs"
    return charlstm.train(config="tiny", overrides=SOURCE, runs_dir=runs, name="src", progress=False), runs


def _val_losses(run: Path) -> list[float]:
    return [r["val_loss"] for r in rundir.read_metrics(run / "metrics.jsonl") if "val_loss" in r]


@pytest.mark.slow
def test_fine_tuning_on_its_own_corpus_continues_from_its_loss(source: tuple[charlstm.Model, Path]) -> None:
    src, runs = source
    first_src, last_src = _val_losses(src.run_dir)[0], _val_losses(src.run_dir)[-1]
    assert last_src < first_src - 0.1  # the source run learned something to continue from
    ft = charlstm.train(config="tiny", overrides=FINE, runs_dir=runs, name="ft", init_from="src", progress=False)
    assert ft.config.model.hidden == 24 and ft.config.train.steps == 4  # model from the run, the rest from tiny
    # Fresh schedule: warmup starts at lr 0, so step 1 leaves the weights as loaded and the first evaluation
    # scores the source's final weights on the same validation split.
    first_ft = _val_losses(ft.run_dir)[0]
    assert first_ft == pytest.approx(last_src, abs=1e-5)
    assert first_ft < first_src - 0.1  # not from scratch
    lrs = [r["lr"] for r in rundir.read_metrics(ft.run_dir / "metrics.jsonl") if "lr" in r]
    assert lrs and lrs[0] < 0.003  # the new run's own warmup, not the source's decayed schedule
    info = json.loads((ft.run_dir / "run.json").read_text())
    assert info["init_from"] == str(src.run_dir.resolve()) and info["init_step"] == 30
    assert ft.vocab == src.vocab


@pytest.mark.slow
def test_unknown_characters_are_named_or_added(source: tuple[charlstm.Model, Path], tmp_path: Path) -> None:
    src, runs = source
    text = (ROOT / "corpora" / "languages.txt").read_text(encoding="utf-8")[:20_000]
    new = tmp_path / "new.txt"
    new.write_text(text.replace("e", "\u00e9").replace("a", "\u00e4"), encoding="utf-8")
    with pytest.raises(CorpusError, match="lacks: '\u00e4\u00e9'") as err:
        charlstm.train(new, config="tiny", overrides=FINE, runs_dir=runs, name="x", init_from="src", progress=False)
    assert "--extend-vocab" in err.value.hint and not (runs / "x").exists()
    ext = charlstm.train(
        new,
        config="tiny",
        overrides=FINE,
        runs_dir=runs,
        name="ext",
        init_from="src",
        extend_vocab=True,
        progress=False,
    )
    assert set(ext.vocab.symbols) == set(src.vocab.symbols) | {0xE4, 0xE9}
    assert list(ext.vocab.symbols) == sorted(ext.vocab.symbols)


@pytest.mark.slow
@pytest.mark.parametrize("embed, tie", [(0, False), (8, False), (16, True)])
def test_extended_rows_are_the_old_ones_or_fresh(embed: int, tie: bool) -> None:
    cfg = config.load("tiny", [f"model.embed={embed}", f"model.tie_embed={str(tie).lower()}", "model.hidden=16"])
    old = Vocab("utf-8", tuple(ord(c) for c in "\n ab"))
    new = Vocab("utf-8", tuple(ord(c) for c in "\n !ab\u00e9"))  # "!" sorts between " " and "a": ids move
    trained = jax.device_get(model.init_params(cfg.model, len(old), jax.random.PRNGKey(7)))
    fresh = jax.device_get(loop.initial_params(cfg, len(new)))
    out = finetune._extend(trained, old, new, fresh, cfg)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(fresh)
    tables = [("head.b", lambda p: p["head"]["b"], 0)]  # (name, getter, vocabulary axis)
    if not tie:
        tables.append(("head.W", lambda p: p["head"]["W"], 1))
    if embed:
        tables.append(("embed", lambda p: p["embed"], 0))
    else:  # one-hot input: layer 0's input table
        tables.append(("W_ih", lambda p: p["layers"][0]["W_ih"], 0))
    for name, table, axis in tables:
        for new_id, symbol in enumerate(new.symbols):
            got = np.take(table(out), new_id, axis=axis)
            if symbol in old.symbols:
                want = np.take(table(trained), old.symbols.index(symbol), axis=axis)
            else:
                want = np.take(table(fresh), new_id, axis=axis)
            np.testing.assert_array_equal(got, want, err_msg=f"{name} row of {chr(symbol)!r}")
    np.testing.assert_array_equal(out["layers"][0]["W_hh"], trained["layers"][0]["W_hh"])  # the rest is kept


@pytest.mark.slow
def test_shape_changes_and_option_mistakes_are_usage_errors(source: tuple[charlstm.Model, Path]) -> None:
    _, runs = source
    with pytest.raises(UsageError, match="model.hidden=64"):
        api.training_config("tiny", {"model.hidden": 64}, runs_dir=runs, init_from="src")
    api_cfg, _ = api.training_config("tiny", {"model.dropout": 0.1}, runs_dir=runs, init_from="src")
    assert api_cfg.model.dropout == 0.1 and api_cfg.model.hidden == 24  # a shape-preserving model key may change
    with pytest.raises(UsageError, match="--resume and --init-from"):
        api.training_config("tiny", runs_dir=runs, resume="src", init_from="src")


@pytest.mark.slow
def test_cli_fine_tunes_from_the_best_checkpoint(source: tuple[charlstm.Model, Path], tmp_path: Path) -> None:
    _, runs = source
    proc = run_cli(
        [
            "train",
            "--config",
            "tiny",
            "--set",
            "train.steps=2",
            "--set",
            "train.sample_length=0",
            "--runs-dir",
            runs,
            "--name",
            "cli",
            "--init-from",
            "src",
            "--checkpoint",
            "best",
            "--json",
        ]
    )
    assert_ok(proc)
    summary = json.loads(proc.stdout)
    assert summary["steps"] == 2 and summary["stopped_early"] is False
    assert json.loads((runs / "cli" / "run.json").read_text())["init_step"] == 30  # the lowest val loss
    bad = run_cli(["train", "--config", "tiny", "--runs-dir", runs, "--init-from", "src", "--set", "model.cell=gru"])
    assert_clean_error(bad, "model.cell='gru'", "--init-from", code=2)
    bad = run_cli(["train", "--config", "tiny", "--runs-dir", runs, "--checkpoint", "best"])
    assert_clean_error(bad, "--init-from", code=2)
    new = tmp_path / "new.txt"
    new.write_text(
        (ROOT / "corpora" / "languages.txt").read_text(encoding="utf-8")[:20_000] + "\u00e9", encoding="utf-8"
    )
    bad = run_cli(["train", new, "--config", "tiny", "--runs-dir", runs, "--init-from", "src"])
    assert_clean_error(bad, "'\u00e9'", "--extend-vocab", code=1)
