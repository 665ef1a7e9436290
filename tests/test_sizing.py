"""Sizing the model for a time budget: the rule on hand-made candidates, the choice against the rule worked out
by hand from the step times a fake probe gives, the cache of measured step times, which config a budget gets,
and real runs (`config show --time`, `train --time` on a text of one's own)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from helpers import assert_clean_error, assert_ok, run_cli

import charlstm
from charlstm import config
from charlstm.errors import UsageError
from charlstm.nn import model
from charlstm.training import configure, rundir, sizing

CHARS_PER_STEP = 64 * 100  # configs/auto.yaml's batch x seq_len


def _option(size: sizing.Size, params: int, per_step: float | None, steps: int) -> sizing.Option:
    return sizing.Option(size, params, per_step, True, steps, steps * CHARS_PER_STEP)


def _ladder_options(params: list[int], chars: list[int]) -> list[sizing.Option]:
    return [
        sizing.Option(size, p, 0.1, True, c // CHARS_PER_STEP, c)
        for size, p, c in zip(sizing.LADDER, params, chars, strict=True)
    ]


# --- the rule ----------------------------------------------------------------------------------------------------


def test_the_largest_size_the_corpus_feeds_and_the_budget_trains_is_picked() -> None:
    params = [200_000, 800_000, 1_800_000, 3_200_000]
    k = sizing.MIN_CHARS_PER_PARAM
    # Chars per parameter: 20k, k+, k- , far below.
    chars = [int(p * r) for p, r in zip(params, [50, k + 0.5, k - 0.5, 0.5], strict=True)]
    best, why = sizing.pick(_ladder_options(params, chars), train_chars=10_000_000)
    assert best.size.name == "2x256"
    assert f"{k + 0.5:.1f} chars per parameter" in why and "2x384 would see" in why


def test_a_size_the_corpus_cannot_feed_is_not_picked_however_fast() -> None:
    params = [200_000, 800_000, 1_800_000, 3_200_000]
    chars = [p * 1000 for p in params]  # the budget could train every size
    train_chars = int(700_000 / sizing.MAX_PARAMS_PER_CHAR)  # ... but 2x256 and up are too big for this corpus
    best, why = sizing.pick(_ladder_options(params, chars), train_chars)
    assert best.size.name == "2x128"
    assert "2x256 would have" in why and "params per corpus char" in why


def test_when_nothing_fits_the_smallest_is_picked_and_says_so() -> None:
    params = [200_000, 800_000, 1_800_000, 3_200_000]
    chars = [p for p in params]  # 1 char per parameter: below the rule's minimum for every size
    best, why = sizing.pick(_ladder_options(params, chars), train_chars=10_000_000)
    assert best.size.name == "2x128" and "even it sees only 1.0 chars per parameter" in why
    tiny = [_option(s, p, None, 0) for s, p in zip(sizing.LADDER, params, strict=True)]
    best, why = sizing.pick(tiny, train_chars=1000)
    assert best.size.name == "2x128" and "the corpus is small for every size" in why


# --- the choice, with a probe that says how long a step takes -------------------------------------------------------

BASE = config.load("auto", ["train.time=10m"])
VOCAB = 65


def _fake_probe(seconds_per_gflop: float, calls: list[str]) -> sizing.StepTimes:
    def measure(cfg: config.Config, vocab_size: int) -> float:
        calls.append(f"{cfg.model.layers}x{cfg.model.hidden}")
        return seconds_per_gflop * model.train_flops_per_char(cfg.model, vocab_size) * CHARS_PER_STEP / 1e9

    return sizing.StepTimes(None, measure)


def _by_hand(train_chars: int, seconds: float, seconds_per_gflop: float) -> str:
    """The rule worked out from the docstring, without `sizing.pick`."""
    chosen = sizing.LADDER[0].name
    for size in sizing.LADDER:
        cfg = sizing.sized(BASE, size)
        params = model.param_count_of(cfg.model, VOCAB)
        per_step = seconds_per_gflop * model.train_flops_per_char(cfg.model, VOCAB) * CHARS_PER_STEP / 1e9
        steps = math.floor(0.9 * seconds / per_step)
        if params <= sizing.MAX_PARAMS_PER_CHAR * train_chars and steps * CHARS_PER_STEP / params >= (
            sizing.MIN_CHARS_PER_PARAM
        ):
            chosen = size.name
    return chosen


@pytest.mark.parametrize(
    ("train_chars", "seconds", "speed"),
    [
        (1_000_000, 600, 0.02),
        (1_000_000, 120, 0.02),
        (1_000_000, 1800, 0.02),
        (10_000_000, 600, 0.005),
        (90_000, 600, 0.02),
        (500_000, 300, 0.05),
    ],
)
def test_the_choice_follows_the_rule_on_the_probed_step_times(train_chars: int, seconds: float, speed: float) -> None:
    calls: list[str] = []
    probe = _fake_probe(speed, calls)
    choice = sizing.choose(BASE, train_chars, VOCAB, seconds, time.monotonic(), probe=probe.seconds_per_step)
    assert choice.size.name == _by_hand(train_chars, seconds, speed)
    m = choice.config.model
    assert f"{m.layers}x{m.hidden}" == choice.size.name and not m.auto_size
    assert choice.config.optim.weight_decay == choice.size.weight_decay
    assert m.compute_dtype == choice.size.compute_dtype
    # Probed smallest first, up to the first size too slow for the budget, and never one too big for the corpus.
    expected = []
    for o in choice.options:
        if o.params <= sizing.MAX_PARAMS_PER_CHAR * train_chars:
            expected.append(o.size.name)
            if o.chars_per_param < sizing.MIN_CHARS_PER_PARAM:
                break
    assert calls == expected


def test_dropout_is_left_out_when_the_budget_reads_the_text_less_than_once() -> None:
    probe = _fake_probe(0.005, [])
    once = sizing.choose(BASE, 20_000_000, VOCAB, 300, time.monotonic(), probe=probe.seconds_per_step)
    chosen = next(o for o in once.options if o.size == once.size)
    assert chosen.chars < 20_000_000 and not once.dropout
    assert once.config.model.dropout == 0 and once.config.model.weight_drop == 0 and "no dropout" in once.reason
    again = sizing.choose(BASE, 1_000_000, VOCAB, 600, time.monotonic(), probe=probe.seconds_per_step)
    assert again.dropout and again.config.model.dropout == again.size.dropout > 0


def test_sizes_past_the_probe_time_are_estimated_from_the_last_measured() -> None:
    calls: list[str] = []
    probe = _fake_probe(1e-6, calls)  # fast: every size fits the budget

    def slow(cfg: config.Config, vocab_size: int) -> float:
        time.sleep(0.6)  # the probe's share of a 5 s budget is 0.5 s: only the first size is measured
        return probe.seconds_per_step(cfg, vocab_size)

    choice = sizing.choose(BASE, 10_000_000, VOCAB, 5.0, time.monotonic(), probe=slow)
    assert calls == ["2x128"]
    first, rest = choice.options[0], choice.options[1:]
    assert first.measured and not any(o.measured for o in rest)
    for o in rest:  # in proportion to the matmul work
        ratio = model.train_flops_per_char(sizing.sized(BASE, o.size).model, VOCAB) / model.train_flops_per_char(
            sizing.sized(BASE, first.size).model, VOCAB
        )
        assert o.seconds_per_step == pytest.approx(first.seconds_per_step * ratio)
    assert all("(est.)" in row[2] for row in choice.rows()[1:])


# --- the cache of step times ---------------------------------------------------------------------------------------


def test_step_times_are_measured_once_per_shape_and_kept(tmp_path: Path) -> None:
    measured: list[int] = []

    def measure(cfg: config.Config, vocab_size: int) -> float:
        measured.append(cfg.model.hidden)
        return cfg.model.hidden / 1000

    path = tmp_path / "step-times.json"
    a = sizing.StepTimes(path, measure)
    c128, c256 = (sizing.sized(BASE, s) for s in sizing.LADDER[:2])
    assert a.seconds_per_step(c128, VOCAB) == 0.128 and a.seconds_per_step(c128, VOCAB) == 0.128
    b = sizing.StepTimes(path, measure)  # a later process
    assert b.seconds_per_step(c128, VOCAB) == 0.128 and b.seconds_per_step(c256, VOCAB) == 0.256
    assert measured == [128, 256]
    assert sizing.StepTimes.key(c128, VOCAB) != sizing.StepTimes.key(c128, VOCAB + 1)
    path.write_text("{not json")
    assert sizing.StepTimes(path, measure).seconds_per_step(c128, VOCAB) == 0.128 and measured[-1] == 128
    unkept = sizing.StepTimes(None, measure)
    unkept.seconds_per_step(c256, VOCAB)
    assert measured[-1] == 256 and json.loads(path.read_text()) == {sizing.StepTimes.key(c128, VOCAB): 0.128}


def test_a_real_step_is_timed() -> None:
    cfg = config.load("tiny", ["data.batch_size=4", "data.seq_len=8"])
    assert 0 < sizing.measure_step(cfg, 20) < 10


# --- which config a budget gets -----------------------------------------------------------------------------------


def test_a_budget_on_your_own_text_is_sized_and_the_bundled_corpora_keep_their_config(tmp_path: Path) -> None:
    text = tmp_path / "mine.txt"
    text.write_text("hello there\n" * 100)
    own, _ = configure.training_config(None, ["train.time=5m"], corpus=text)
    assert own.model.auto_size and own.optim.schedule == "wsd"
    for bundled in (None, "languages", "essay"):
        cfg, _ = configure.training_config(None, ["train.time=5m"], corpus=bundled)
        assert not cfg.model.auto_size
        # each keeps its own: the default config is the essay corpus's, configs/languages.yaml the plain one's
        assert cfg.data.curriculum == (() if bundled == "languages" else ((0, 0.1), (1000, 1.0))), bundled
    fixed, _ = configure.training_config("shakespeare", ["train.time=5m"], corpus=text)
    assert not fixed.model.auto_size and (fixed.model.layers, fixed.model.hidden) == (2, 256)
    untimed, _ = configure.training_config(None, [], corpus=text)
    assert not untimed.model.auto_size
    with pytest.raises(UsageError, match="needs a time budget"):
        configure.training_config("auto", [], corpus=text)


def test_config_show_time_errors_are_usage_errors(tmp_path: Path) -> None:
    assert_clean_error(run_cli(["config", "show", "--time", "10q", "x.txt"], cwd=tmp_path), "duration", code=2)
    assert_clean_error(run_cli(["config", "show", "default", "x.txt"], cwd=tmp_path), "goes with --time", code=2)
    assert_clean_error(run_cli(["train", "--config", "auto", "--steps", "3"], cwd=tmp_path), "time budget", code=2)


def _text(path: Path, chars: int) -> Path:
    words = ["the", "memory", "of", "a", "cell", "carries", "across", "text,", "and", "gates", "decide."]
    line, out, i = [], [], 0
    while sum(map(len, out)) < chars:
        line.append(words[(i * 7 + i // 11) % len(words)])
        i += 1
        if len(line) == 9:
            out.append(" ".join(line) + "\n")
            line = []
    path.write_text("".join(out))
    return path


@pytest.mark.slow
def test_config_show_time_prints_the_choice_and_times_each_shape_once(tmp_path: Path) -> None:
    corpus = _text(tmp_path / "mine.txt", 80_000)  # 72k training characters: only 2 x 128 is small enough
    first = run_cli(["config", "show", "--time", "2m", str(corpus)], cwd=tmp_path)
    assert_ok(first)
    assert "timing a training step of 2x128" in first.stderr and "auto size 2x128:" in first.stderr
    assert "too big for the text" in first.stderr  # 2 x 256 has ~0.9M parameters
    shown = config.from_dict(__import__("yaml").safe_load(first.stdout))
    assert (shown.model.layers, shown.model.hidden, shown.model.auto_size) == (2, 128, False)
    assert shown.train.time == "2m"
    again = run_cli(["config", "show", "--time", "2m", str(corpus)], cwd=tmp_path)
    assert_ok(again)
    assert "timing a training step" not in again.stderr  # kept from the first
    # The same config; only the reason's figures move (the first spent part of the budget timing).
    assert again.stdout.split("\n", 1)[1] == first.stdout.split("\n", 1)[1]


@pytest.mark.slow
def test_train_with_a_time_budget_sizes_the_model_and_records_why(tmp_path: Path) -> None:
    corpus = _text(tmp_path / "mine.txt", 80_000)
    trained = charlstm.train(corpus, time="25s", runs_dir=tmp_path, name="auto", progress=False)
    run = rundir.RunDir(tmp_path / "auto")
    chosen = run.read_info()["auto_size"]
    saved = run.read_config()
    assert chosen["size"] == f"{saved.model.layers}x{saved.model.hidden}" == "2x128"
    assert not saved.model.auto_size and saved.train.time is None
    assert chosen["options"][0]["measured"] and chosen["options"][1]["seconds_per_step"] is None
    assert "auto size:" in trained.summary.budget and chosen["reason"] in trained.summary.budget
