"""`charlstm bench` on a tiny model: every figure is there and sane, and --json parses. No timing assertions."""

from __future__ import annotations

import json
import math
import os

import pytest
from helpers import assert_clean_error, assert_ok, run_cli

from charlstm import config, perf
from charlstm.bench import bench, probes, startup
from charlstm.nn import model

TINY = ["model.layers=1", "model.hidden=8", "data.batch_size=2", "data.seq_len=4"]


def check_sane(res: dict) -> None:
    for key in (
        "compile_s",
        "compile_cpu_s",
        "compile_cached_s",
        "first_char_s",
        "first_char_cached_s",
        "train_chars_per_s",
        "sample_b1_chars_per_s",
        "sample_b64_chars_per_s",
        "train_flops_per_char",
        "achieved_gflops",
        "matmul_peak_gflops",
        "fraction_of_peak",
        "peak_rss_mb",
        "sample_weight_mb",
        "sample_b1_matmul_gb_per_s",
        "sample_b1_ceiling_chars_per_s",
        "sample_b1_fraction_of_ceiling",
    ):
        assert isinstance(res[key], float) and math.isfinite(res[key]) and res[key] > 0, key
    assert res["train_step_temp_mb"] >= 0
    assert res["fraction_of_peak"] < 10  # a ratio, not a percentage or a raw FLOP count
    assert res["sample_b1_fraction_of_ceiling"] < 10
    # The ceiling is one character per pass of the model's matmuls over its weight bytes: the three agree.
    per_s = res["sample_b1_matmul_gb_per_s"] * 1e9 / (res["sample_weight_mb"] * 2**20)
    assert per_s == pytest.approx(res["sample_b1_ceiling_chars_per_s"], rel=1e-9)
    assert res["params"] > 0 and res["cores"] >= 1 and res["gpu"] and res["cpu"]


@pytest.mark.slow
def test_cli_json_has_every_figure_and_they_are_sane() -> None:
    """`charlstm bench --json` end to end (start-up probes included): every figure there and sane."""
    args = ["bench", "--timed-steps", "2", "--rounds", "2", "--json"] + [a for kv in TINY for a in ("--set", kv)]
    proc = run_cli(args)
    assert_ok(proc)
    d = json.loads(proc.stdout)
    check_sane(d)
    assert (d["layers"], d["hidden"], d["batch_size"], d["seq_len"]) == (1, 8, 2, 4)
    assert d["torch"] is None and d["rounds"] == 2 and d["steps_per_round"] == 2
    # 6 FLOPs per weight per character: W_hh (8 x 32) and the head (8 x V); layer 0's W_ih is a gather.
    assert d["train_flops_per_char"] == 6 * (8 * 32 + 8 * bench.VOCAB)


def test_flops_count_upper_layers_input_projection() -> None:
    cfg = config.load(None, ["model.layers=2", "model.hidden=4", "model.cell=gru"])
    assert model.train_flops_per_char(cfg.model, 10) == 6 * ((4 * 12) + (4 * 12 + 4 * 12) + 4 * 10)


def test_matmul_shapes_and_the_weight_bytes_batch_1_sampling_reads() -> None:
    cfg = config.load(None, ["model.layers=2", "model.hidden=4", "model.cell=gru"])
    shapes = model.matmul_shapes(cfg.model, 10)
    assert shapes == [(4, 12), (4, 12), (4, 12), (4, 10)]  # layer 0 W_hh; layer 1 W_ih, W_hh; the head
    assert bench.sample_weight_bytes(cfg, 10) == 4 * sum(k * n for k, n in shapes)
    bf16 = config.load(None, ["model.layers=2", "model.hidden=4", "model.cell=gru", "model.compute_dtype=bfloat16"])
    assert bench.sample_weight_bytes(bf16, 10) == bench.sample_weight_bytes(cfg, 10) / 2


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_matmul_chain_probe_times_one_pass(dtype: str) -> None:
    seconds = probes.matmul_chain_probe([(64, 256), (64, 256), (64, 10)], dtype)()
    assert math.isfinite(seconds) and 0 < seconds < 1.0


def test_vs_torch_without_torch_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "torch_available", lambda: False)
    with pytest.raises(bench.UserError, match="PyTorch") as err:
        bench.run(config.load(None, TINY), vs_torch=True)
    assert "pip install" in err.value.hint


def test_bad_steps_is_a_clean_error() -> None:
    assert_clean_error(run_cli(["bench", "--timed-steps", "0"]), "--timed-steps", code=2)


def test_malloc_tuning_applies_once_and_reports() -> None:
    first = perf.tune_malloc()
    assert perf.tune_malloc() is first and perf.malloc_tuned() is first


@pytest.mark.slow
@pytest.mark.parametrize("embed", [0, 5])  # one-hot input (a frozen identity embedding in torch), learned table
def test_vs_torch_same_model_and_ratios(embed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    # The start-up probes (two fresh processes) are the CLI test's; here they answer at once.
    probe = startup.Startup(compile_s=1.0, compile_cpu_s=1.0, first_char_s=1.0)
    monkeypatch.setattr(startup, "measure_startup", lambda cfg, vocab_size: (probe, probe))
    res = bench.run(config.load(None, TINY + [f"model.embed={embed}"]), steps=2, rounds=1, vs_torch=True)
    t = res.torch
    assert t is not None
    for value in (
        t.train_chars_per_s,
        t.sample_b1_chars_per_s,
        t.sample_b64_chars_per_s,
        t.train_ratio,
        t.sample_b1_ratio,
        t.sample_b64_ratio,
        t.sample_b1_ratio_ceiling,
    ):
        assert math.isfinite(value) and value > 0
    assert t.initial_loss_diff < 1e-4  # the PyTorch model computes the same function from the same weights
    assert set(t.threads) == {"train", "b1", "b64"}
    assert json.loads(json.dumps(res.to_dict()))["torch"]["version"] == t.version
    table = dict(bench.rows(res))
    assert table["model"].startswith("1x8 lstm") and any(k.startswith("torch ") for k in table)


def test_deterministic_gpu_flag_is_added_once_and_a_users_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    perf.deterministic_gpu()
    perf.deterministic_gpu()
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2 --xla_gpu_deterministic_ops=true"
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=false")
    perf.deterministic_gpu()
    assert os.environ["XLA_FLAGS"] == "--xla_gpu_deterministic_ops=false"
    monkeypatch.delenv("XLA_FLAGS")
    perf.deterministic_gpu()
    assert os.environ["XLA_FLAGS"] == "--xla_gpu_deterministic_ops=true"
