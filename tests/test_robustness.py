"""Bad input and faults on the command line: run names, damaged run files, full disks, invalid Unicode, seeds,
unbounded reads, resuming with a changed model, export over earlier files, and unknown characters. Each ends
in one line and the documented exit code, never a traceback, and nothing saved is lost."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import assert_clean_error, assert_ok, cli_env, run_cli, run_cli_process

import charlstm
from charlstm import config
from charlstm.analysis import runs as runs_lib
from charlstm.data import corpus
from charlstm.errors import RunError, UsageError
from charlstm.training import checkpoint, rundir

TINY = {"train.steps": 6, "train.eval_every": 3, "checkpoint.every": 3, "train.sample_length": 0}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs directory with one tiny run, "a", trained on the bundled corpus."""
    runs = tmp_path_factory.mktemp("robust") / "runs"
    charlstm.train(None, "tiny", TINY, runs_dir=runs, name="a", progress=False)
    return runs


def copy_run(runs: Path, tmp_path: Path, name: str = "a") -> Path:
    """A copy of run "a" in a runs directory of its own, named `name`."""
    shutil.copytree(runs / "a", tmp_path / "runs" / name)
    return tmp_path / "runs"


# --- run names -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../escaped", "/abs/path", ".", "..", "latest", ".hidden", "a\x01b", "x" * 300])
def test_a_run_name_that_is_not_a_plain_name_is_refused(tmp_path: Path, name: str) -> None:
    runs = tmp_path / "inside" / "runs"
    cfg = config.load("tiny")
    with pytest.raises(UsageError, match="run name"):
        rundir.create(runs, name, cfg, corpus.Vocab("utf-8", (65, 66)), corpus.DEFAULT_CORPUS)
    assert sorted(p.name for p in tmp_path.rglob("*")) == []  # nothing written, inside or out


def test_train_with_a_path_as_name_writes_nothing_and_exits_2(tmp_path: Path) -> None:
    proc = run_cli(["train", "--config", "tiny", "--runs-dir", tmp_path / "runs", "--name", "../escaped"])
    assert_clean_error(proc, "run name '../escaped' is a path", "--name my-run", code=2)
    assert list(tmp_path.iterdir()) == []


def test_a_corpus_named_with_a_leading_dot_gets_a_plain_default_name() -> None:
    assert rundir.check_name(rundir.default_name(Path(".notes.txt"), "lstm")).startswith("notes-lstm-")


# --- damaged run files -------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("line", ["[1, 2]", '{"step": "x"}', '{"loss": 1.0}', "7", "not json"])
def test_one_bad_metrics_line_makes_that_run_damaged_and_the_others_listed(
    runs: Path, tmp_path: Path, line: str
) -> None:
    where = copy_run(runs, tmp_path, "bad")
    shutil.copytree(runs / "a", where / "good")
    metrics = where / "bad" / "metrics.jsonl"
    rows = metrics.read_text().splitlines()
    metrics.write_text("\n".join([rows[0], line, *rows[1:]]) + "\n")
    by_name = {r.name: r for r in runs_lib.list_runs(where)}
    assert by_name["good"].status == "finished"
    assert by_name["bad"].status == "damaged" and "line 2 is not a metrics record" in by_name["bad"].reason
    listed = run_cli(["runs", "--runs-dir", where, "--json"])
    assert_ok(listed)
    assert {r["name"]: r["status"] for r in json.loads(listed.stdout)} == {"good": "finished", "bad": "damaged"}
    assert_clean_error(run_cli(["plot", "bad", "--runs-dir", where]), "line 2 is not a metrics record", code=1)
    assert_ok(run_cli(["plot", "good", "--runs-dir", where]))


@pytest.mark.slow
def test_a_torn_last_metrics_line_is_what_a_killed_trainer_leaves(runs: Path, tmp_path: Path) -> None:
    where = copy_run(runs, tmp_path)
    metrics = where / "a" / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 7, "lo')
    assert runs_lib.list_runs(where)[0].status == "finished"


@pytest.mark.slow
def test_a_damaged_config_is_a_run_error_not_a_usage_error(runs: Path, tmp_path: Path) -> None:
    where = copy_run(runs, tmp_path)
    (where / "a" / "config.yaml").write_text("model: [unclosed\n")
    proc = run_cli(["sample", "--runs-dir", where, "--run", "a", "-n", "5"])
    assert_clean_error(proc, "damaged config.yaml", code=1)


# --- full disks ------------------------------------------------------------------------------------------------


def test_a_failed_atomic_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path.write_text

    def half_then_full(self: Path, text: str, *args: object, **kwargs: object) -> int:
        real(self, text[:3], encoding="utf-8")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_full)
    with pytest.raises(RunError, match="No space left on device"):
        rundir.create(tmp_path, "r", config.load("tiny"), corpus.Vocab("utf-8", (65,)), corpus.DEFAULT_CORPUS)
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_metrics_write_on_a_full_disk_says_how_to_resume() -> None:
    log = rundir.MetricsLog(Path("/dev/full"))  # every write there fails with ENOSPC
    with pytest.raises(RunError, match="No space left on device") as info:
        log.write({"step": 1, "loss": 1.0})
    assert "charlstm train --resume" in info.value.hint
    log.close()  # the lost line is not reported twice


@pytest.mark.slow
def test_a_checkpoint_write_failure_is_one_line_and_keeps_earlier_ones(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What Orbax raises on a full disk (a ValueError, not an OSError), injected at the writer."""
    where = copy_run(runs, tmp_path)
    run = rundir.RunDir(where / "a")
    before = checkpoint.steps(run)

    def full(self: object, *args: object, **kwargs: object) -> None:
        raise ValueError("RESOURCE_EXHAUSTED: Failed writing: No space left on device [os_error_code='28']")

    monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", full)
    with pytest.raises(RunError, match="could not save checkpoint at step 9: No space left on device") as info:
        charlstm.train(None, overrides={"train.steps": 12}, runs_dir=where, resume=where / "a", progress=False)
    assert f"continues from step {before[-1]}" in info.value.hint
    monkeypatch.undo()
    assert checkpoint.steps(run) == before and checkpoint.restore(run).step == before[-1]


def test_late_write_callbacks_of_a_failed_save_are_silent_and_nothing_else_is(tmp_path: Path) -> None:
    """After a failed save the checkpoint store's other writes end later, on an event loop Orbax has closed:
    those reports are dropped, any other unraisable error or asyncio error still shows."""
    seen: list[str] = []
    hook = checkpoint._late_callback_hook(lambda u: seen.append(str(u.exc_value)))
    unraisable = type("Unraisable", (), {})
    for exc, obj in [(RuntimeError("Event loop is closed"), None), (RuntimeError("other"), None)]:
        u = unraisable()
        u.exc_value, u.object = exc, obj
        hook(u)
    u = unraisable()
    u.exc_value, u.object = RuntimeError("Event loop is closed"), "a callback"
    hook(u)
    assert seen == ["other", "Event loop is closed"]

    from orbax.checkpoint._src.path import async_path

    with pytest.raises(OSError) as info:  # a write inside the checkpoint library that fails
        asyncio.run(async_path.write_text(async_path.epath.Path(tmp_path / "missing" / "file"), "x"))
    from_orbax = info.value
    assert checkpoint._from_orbax(from_orbax)
    full = ValueError(  # how the store's own write reports a full disk: no Python traceback
        'RESOURCE_EXHAUSTED: Error opening "zarr" driver: Error writing "key/.zarray" in OCDBT database at local '
        "file \"runs/a/checkpoints/15\" [os_error_code='28']"
    )
    cases = [(from_orbax, False), (full, False), (OSError(errno.ENOSPC, "elsewhere"), True), (RuntimeError("x"), True)]
    cases.append((ValueError("RESOURCE_EXHAUSTED: out of memory"), True))
    for exc, kept in cases:
        record = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "Future exception", None, None)
        record.exc_info = (type(exc), exc, exc.__traceback__)
        assert checkpoint._AbandonedWrites().filter(record) is kept


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("free_kb", "extra"),
    [
        (450, ["--set", "checkpoint.every=5"]),
        (16, ["--set", "train.log_every=1"]),
    ],
)
def test_a_full_disk_during_training_is_one_line_and_resume_continues(
    tmp_path: Path, free_kb: int, extra: list[str]
) -> None:
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "2m"):
        pytest.skip("cannot mount a tmpfs here (needs root on Linux); the writer-level tests cover the paths")
    try:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (shutil.disk_usage(disk).free - free_kb * 1024))
        args = [
            "train",
            "languages",  # its small vocabulary keeps the checkpoints small enough for the 2 MB disk
            "--quiet",
            "--config",
            "tiny",
            "--steps",
            "40",
            "--set",
            "checkpoint.keep=100",
            "--set",
            "train.sample_length=0",
            "--set",
            "train.prompt_check=false",
            *extra,
        ]
        # A process of its own: the checkpoint writer's threads may still print after the error line.
        proc = run_cli_process([*args, "--runs-dir", disk / "runs", "--name", "a"], cwd=tmp_path)
        line = assert_clean_error(proc, "No space left on device", code=1)
        run = rundir.RunDir(disk / "runs" / "a")
        if checkpoint.steps(run):
            assert "--resume" in line
            checkpoint.restore(run)  # the complete ones load
        assert not list(disk.rglob("*.tmp"))
        filler.unlink()
        if checkpoint.steps(run):
            resumed = run_cli_process(
                ["train", "--resume", run.path, "--set", "train.prompt_check=false"], cwd=tmp_path
            )
            assert_ok(resumed)
            assert checkpoint.restore(run).step == 40
    finally:
        subprocess.run(["umount", str(disk)])


# --- text, seeds and files -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_prompt_byte_that_is_not_utf8_is_one_line(runs: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "charlstm.cli", "sample", "--runs-dir", str(runs), "--prompt", b"J\xff"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_clean_error(proc, "the prompt is not valid Unicode: character 2", code=2)


@pytest.mark.slow
@pytest.mark.parametrize("seed", ["99999999999999999999", "4294967296", "-1"])
def test_a_seed_outside_0_to_2_32_is_refused(runs: Path, seed: str) -> None:
    proc = run_cli(["sample", "--runs-dir", runs, "-n", "5", "--seed", seed])
    assert_clean_error(proc, "--seed must be in 0..4294967295", code=2)


def test_train_seed_has_the_same_range() -> None:
    with pytest.raises(UsageError, match="train.seed"):
        config.load("tiny", [f"train.seed={1 << 40}"])


@pytest.mark.slow
def test_a_prompt_with_an_unknown_character_names_skip_unknown(runs: Path) -> None:
    proc = run_cli(["sample", "--runs-dir", runs, "--prompt", "Jé", "-n", "5"])
    assert_clean_error(proc, "1 character not in the run's vocabulary: 'é'", "drop it, or pass --skip-unknown", code=2)


@pytest.mark.slow
def test_devices_are_not_read_as_corpora_or_files(runs: Path, tmp_path: Path) -> None:
    proc = run_cli(["train", "/dev/zero", "--encoding", "bytes", "--runs-dir", tmp_path / "runs"], timeout=60)
    assert_clean_error(proc, "/dev/zero is not a regular file", code=1)
    assert_clean_error(run_cli(["eval", "/dev/zero", "--runs-dir", runs]), "/dev/zero is not a regular file", code=1)
    proc = run_cli(["sample", "--runs-dir", runs, "--prompt-file", "/dev/zero"])
    assert_clean_error(proc, "prompt file /dev/zero is not a regular file", code=1)


@pytest.mark.slow
def test_eval_of_invalid_utf8_names_no_option_eval_lacks(runs: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"Jammu \xff")
    line = assert_clean_error(run_cli(["eval", bad, "--runs-dir", runs]), "invalid UTF-8 at byte offset 6", code=1)
    assert "--encoding" not in line and "re-save the file as UTF-8" in line


def test_an_empty_config_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    assert_clean_error(run_cli(["config", "show", empty]), f"config {empty} is empty", code=2)


# --- resuming with another model -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "words"),
    [("model.layer_norm=true", "params/layers/0/gain_hh is not in the checkpoint"), ("model.embed=16", "params/embed")],
)
def test_resume_with_a_shape_changing_set_names_the_arrays_not_damage(
    runs: Path, tmp_path: Path, override: str, words: str
) -> None:
    where = copy_run(runs, tmp_path)
    proc = run_cli(["train", "--resume", where / "a", "--steps", "9", "--set", override])
    line = assert_clean_error(proc, words, f"after {override.replace('true', 'True')}", code=1)
    assert "damaged" not in line and "the checkpoints are fine" in line
    assert checkpoint.restore(rundir.RunDir(where / "a")).step == 6


def test_shape_keys_are_exactly_the_model_keys_that_change_the_parameters() -> None:
    """config.SHAPE_KEYS (what fine-tuning may not change) against the parameter tree itself."""
    import jax

    from charlstm.nn import model

    base = config.ModelConfig(layers=1, hidden=8)
    changed = {
        "cell": "gru", "layers": 2, "hidden": 4, "embed": 8, "tie_embed": True, "layer_norm": True,
        "start_state": "zeros", "dropout": 0.5, "forget_bias": 0.0, "compute_dtype": "bfloat16",
        "init_hh": "orthogonal", "recurrent_dropout": 0.5, "weight_drop": 0.5, "input_dropout": 0.5,
        "dropout_ramp": 5, "auto_size": True,
    }  # fmt: skip
    assert set(changed) == set(config.ModelConfig.model_fields)

    def shapes(cfg: config.ModelConfig) -> object:
        tree = jax.eval_shape(lambda: model.init_params(cfg, 11, jax.random.PRNGKey(0)))
        return jax.tree_util.tree_map(lambda x: x.shape, tree)

    shaping = {k for k, v in changed.items() if shapes(base.model_copy(update={k: v})) != shapes(base)}
    assert shaping == set(config.SHAPE_KEYS)


@pytest.mark.slow
def test_resume_reads_the_runs_saved_config_for_keys_it_predates(runs: Path, tmp_path: Path) -> None:
    where = copy_run(runs, tmp_path)
    cfg_file = where / "a" / "config.yaml"
    data = yaml.safe_load(cfg_file.read_text())
    del data["model"]["start_state"]  # as a run saved before the key existed
    cfg_file.write_text(yaml.safe_dump(data))
    cfg, _ = charlstm.api.training_config(resume=where / "a", overrides={"train.steps": 9})
    assert cfg.model.start_state == "zeros" and cfg.train.steps == 9


# --- export and inspect ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_export_does_not_overwrite_without_force(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.npz"
    assert_ok(run_cli(["export", "--runs-dir", runs, "--out", out]))
    before = out.read_bytes()
    assert_clean_error(run_cli(["export", "--runs-dir", runs, "--out", out]), "would overwrite", "--force", code=1)
    assert out.read_bytes() == before
    assert_ok(run_cli(["export", "--runs-dir", runs, "--out", out, "--force"]))
    folder = tmp_path / "dir"
    assert_ok(run_cli(["export", "--runs-dir", runs, "--out", folder]))
    assert_clean_error(run_cli(["export", "--runs-dir", runs, "--out", folder]), "model.safetensors", code=1)


@pytest.mark.slow
def test_inspect_skips_unknown_characters_and_marks_them(runs: Path) -> None:
    proc = run_cli(["--color", "never", "inspect", "--runs-dir", runs, "--text", "Jammu é is €", "--cell", "0"])
    assert_ok(proc)
    assert "skipped 2 characters not in the run's vocabulary ('é€'), drawn as \ufffd" in proc.stdout + proc.stderr
    assert "Jammu \ufffd is \ufffd" in proc.stdout
