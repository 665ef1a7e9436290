"""The real CLI in a subprocess: every user mistake is one "error:" line and a non-zero exit, never a
traceback; and the awkward-but-valid inputs (mixed scripts, emoji, CRLF, raw bytes) just work."""

from __future__ import annotations

import json
import random
import re
import subprocess
from pathlib import Path

import pytest
from helpers import TINY_TRAIN, assert_clean_error, assert_ok, cut_at_stop, describe, run_cli

WORDS = ["héllo", "wörld", "✓", "日本語", "🙂🎉", "the", "cat", "Привет", "λόγος", "naïve", "abc", "mañana"]
UNKNOWN = "Zq"  # never in the generated corpus


def mixed_text(n_words: int = 1500, seed: int = 0) -> str:
    """A few KB of mixed scripts and emoji with Windows line endings."""
    rng = random.Random(seed)
    return "".join(rng.choice(WORDS) + ("\r\n" if rng.random() < 0.2 else " ") for _ in range(n_words))


def write_text(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))  # no newline translation: \r\n stays
    return path


def train_args(corpus: Path, runs: Path, name: str = "x", *extra: str) -> list[str]:
    return ["train", str(corpus), *TINY_TRAIN, "--runs-dir", str(runs), "--name", name, *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """One tiny run on the mixed-script corpus: (runs dir, run dir, corpus text)."""
    root = tmp_path_factory.mktemp("trained")
    text = mixed_text()
    corpus = write_text(root / "mixed.txt", text)
    runs = root / "runs"
    proc = run_cli(train_args(corpus, runs), cwd=root, timeout=300)
    assert_ok(proc)
    TRAINING.append(proc)
    return runs, runs / "x", text


TRAINING: list[subprocess.CompletedProcess[str]] = []  # the output of the fixture's training, for its summary


# --- training: awkward but valid input works --------------------------------------------------------------


@pytest.mark.slow
def test_train_mixed_scripts_emoji_crlf(trained: tuple[Path, Path, str]) -> None:
    runs, run, text = trained
    assert UNKNOWN[0] not in text and UNKNOWN[1] not in text
    assert "\r\n" in text and "🙂" in text and len(text.encode("utf-8")) > 4000
    vocab = json.loads((run / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["encoding"] == "utf-8"
    assert vocab["symbols"] == sorted({ord(c) for c in text})  # characters, CR included, not bytes
    assert ord("\r") in vocab["symbols"] and ord("🙂") in vocab["symbols"]
    steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert steps and max(steps) == 4
    assert (runs / "latest").resolve() == run.resolve()
    metrics = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [m["step"] for m in metrics if "val_loss" in m] == [2, 4]


@pytest.mark.slow
def test_train_bytes_on_invalid_utf8_then_sample(tmp_path: Path) -> None:
    data = (mixed_text(600, seed=1).encode("utf-8") + b"\xff\xfe\x80 broken \xc3") * 2
    corpus = tmp_path / "raw.bin.txt"
    corpus.write_bytes(data)
    runs = tmp_path / "runs"
    assert_ok(run_cli(train_args(corpus, runs, "b", "--encoding", "bytes"), cwd=tmp_path))
    vocab = json.loads((runs / "b" / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["encoding"] == "bytes"
    assert vocab["symbols"] == sorted(set(data))
    proc = run_cli(["sample", "--runs-dir", runs, "--prompt", "the", "--length", "40", "--seed", "3"], cwd=tmp_path)
    assert_ok(proc)
    assert proc.stdout.startswith("the") and proc.stdout.endswith("\n")
    assert "\x1b" not in proc.stdout


@pytest.mark.slow
def test_reported_minimum_size_is_enough_to_train(tmp_path: Path) -> None:
    tiny = write_text(tmp_path / "tiny.txt", "hello world\n")
    runs = tmp_path / "runs"
    line = assert_clean_error(
        run_cli(train_args(tiny, runs), cwd=tmp_path),
        "too small",
        "need at least",
        "data.batch_size",
        "data.seq_len",
        code=1,
    )
    assert not runs.exists()  # nothing created for a rejected corpus
    need = int(re.search(r"need at least ([\d,]+)", line).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert need > 12
    enough = write_text(tmp_path / "enough.txt", ("hello world\n" * need)[:need])
    proc = run_cli(
        train_args(enough, runs, "min", "--set", "train.steps=1", "--set", "train.sample_length=0"), cwd=tmp_path
    )
    assert_ok(proc)


def test_one_symbol_corpus_with_large_validation_fraction(tmp_path: Path) -> None:
    # the whole corpus goes to validation: still a clean "too small", not a division by zero
    (tmp_path / "one.txt").write_bytes(b"a")
    runs = tmp_path / "runs"
    proc = run_cli(
        ["train", tmp_path / "one.txt", "--config", "tiny", "--set", "data.val_fraction=0.9", "--runs-dir", runs],
        cwd=tmp_path,
    )
    line = assert_clean_error(proc, "too small", "1 symbols", "need at least", code=1)
    need = int(re.search(r"need at least ([\d,]+)", line).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert need < 10_000_000


# --- training: user errors ---------------------------------------------------------------------------------


def _train_error(tmp_path: Path, corpus: Path | str, *extra: str) -> tuple:
    runs = tmp_path / "runs"
    proc = run_cli(
        ["train", str(corpus), "--config", "tiny", "--runs-dir", str(runs), "--name", "e", *extra], cwd=tmp_path
    )
    return proc, runs


def test_missing_corpus(tmp_path: Path) -> None:
    proc, runs = _train_error(tmp_path, tmp_path / "nope.txt")
    assert_clean_error(proc, "corpus not found", "nope.txt", "check the path", code=1)
    assert not runs.exists()


def test_directory_as_corpus(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    proc, _ = _train_error(tmp_path, tmp_path / "adir")
    assert_clean_error(proc, "is a directory", "adir", "pass a text file", code=1)


def test_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    proc, runs = _train_error(tmp_path, tmp_path / "empty.txt")
    assert_clean_error(proc, "empty", "empty.txt", code=1)
    assert not runs.exists()


def test_invalid_utf8_corpus(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes("héllo wörld ".encode() + b"\xff and more")
    proc, _ = _train_error(tmp_path, tmp_path / "bad.txt")
    offset = len("héllo wörld ".encode())
    assert_clean_error(proc, "invalid UTF-8", f"byte offset {offset}", "--encoding bytes", code=1)


def test_binary_corpus(tmp_path: Path) -> None:
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 8)
    proc, _ = _train_error(tmp_path, tmp_path / "blob.bin")
    assert_clean_error(proc, "binary", "NUL", "--encoding bytes", code=1)


def test_yaml_syntax_error_in_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("model:\n  hidden: 32\n  cell: lstm\n train: {steps: 3}\n", encoding="utf-8")
    corpus = write_text(tmp_path / "c.txt", mixed_text(300))
    proc = run_cli(["train", corpus, "--config", cfg, "--runs-dir", tmp_path / "runs"], cwd=tmp_path)
    line = assert_clean_error(proc, "YAML", "broken.yaml", "line 4", "fix the YAML syntax", code=2)
    assert not (tmp_path / "runs").exists()
    assert line.count("error:") == 1


def test_missing_config_file(tmp_path: Path) -> None:
    proc = run_cli(["train", "--config", tmp_path / "nope.yaml", "--runs-dir", tmp_path / "runs"], cwd=tmp_path)
    # names the file and the bundled configs
    assert_clean_error(proc, "config file not found", "nope.yaml", "tiny", code=2)


@pytest.mark.parametrize(
    "override,words",
    [
        ("model.hiden=64", ["unknown config key 'model.hiden'", "did you mean 'model.hidden'"]),
        ("hidden=64", ["unknown config key 'hidden'", "did you mean 'model.hidden'"]),
        ("model.hidden", ["'model.hidden'", "no '='", "section.key=value"]),
        ("model.hidden=0", ["'model.hidden'", "greater than or equal to 1"]),
        ("model.cell=lstmm", ["'lstmm'", "'model.cell'", "'lstm'", "'gru'", "'rnn'"]),
    ],
)
def test_bad_set_overrides(tmp_path: Path, override: str, words: list[str]) -> None:
    proc, runs = _train_error(tmp_path, "languages", "--set", override)
    assert_clean_error(proc, *words, code=2)
    assert not runs.exists()


def test_resume_with_a_config_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli(["train", "--resume", "--config", "tiny", "--runs-dir", tmp_path / "runs"], cwd=tmp_path)
    assert_clean_error(proc, "--resume and --config both given", "drop --config", code=2)


def test_bad_encoding_option(tmp_path: Path) -> None:
    proc, _ = _train_error(tmp_path, "languages", "--encoding", "latin-1")
    assert_clean_error(proc, "'latin-1'", "--encoding", "'bytes'", "charlstm train --help", code=2)


# --- reading commands without a usable run -------------------------------------------------------------------


def test_sample_without_any_run(tmp_path: Path) -> None:
    empty = tmp_path / "runs"
    empty.mkdir()
    assert_clean_error(
        run_cli(["sample", "--runs-dir", empty], cwd=tmp_path),
        "no trained run found",
        "charlstm train",
        "--run",
        code=1,
    )


def test_sample_missing_run_dir(tmp_path: Path) -> None:
    proc = run_cli(["sample", "--run", tmp_path / "gone", "--runs-dir", tmp_path], cwd=tmp_path)
    assert_clean_error(proc, "run not found", "gone", code=1)


def test_sample_dangling_latest(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "latest").symlink_to("deleted-run", target_is_directory=True)
    proc = run_cli(["sample", "--runs-dir", runs], cwd=tmp_path)
    assert_clean_error(proc, "latest", "no longer exists", "--run", code=1)


def test_sample_dir_that_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "notarun").mkdir()
    proc = run_cli(["sample", "--run", tmp_path / "notarun", "--runs-dir", tmp_path], cwd=tmp_path)
    assert_clean_error(proc, "not a charlstm run", "config.yaml", code=1)


# --- on a trained run -----------------------------------------------------------------------------------------


def _sample(trained: tuple[Path, Path, str], *args: str | int | float) -> tuple:
    runs, run, _ = trained
    return run_cli(["sample", "--runs-dir", runs, *map(str, args)], cwd=runs.parent)


@pytest.mark.slow
def test_eval_missing_file(trained: tuple[Path, Path, str], tmp_path: Path) -> None:
    runs, _, _ = trained
    proc = run_cli(["eval", tmp_path / "missing.txt", "--runs-dir", runs], cwd=tmp_path)
    assert_clean_error(proc, "not found", "missing.txt", code=1)


@pytest.mark.slow
def test_prompt_with_unknown_character(trained: tuple[Path, Path, str]) -> None:
    proc = _sample(trained, "--prompt", f"hé{UNKNOWN}", "--length", "10")
    assert_clean_error(proc, repr(UNKNOWN), "vocabulary", "--skip-unknown", code=2)


@pytest.mark.slow
def test_prompt_skip_unknown(trained: tuple[Path, Path, str]) -> None:
    proc = _sample(trained, "--prompt", f"{UNKNOWN[0]}hé{UNKNOWN[1]}🙂", "--skip-unknown", "--length", "30")
    assert_ok(proc)
    assert proc.stdout.startswith("hé🙂")  # unknown characters dropped, the rest kept in order
    assert len(proc.stdout) == len("hé🙂") + 30 + 1


@pytest.mark.slow
def test_temperature_zero_needs_greedy(trained: tuple[Path, Path, str]) -> None:
    assert_clean_error(_sample(trained, "--temperature", "0"), "--temperature", "> 0", "--greedy", code=2)
    proc = _sample(trained, "--temperature", "0", "--greedy", "--prompt", "the", "--length", "25")
    assert_ok(proc)
    assert proc.stdout.startswith("the") and len(proc.stdout) == 3 + 25 + 1


@pytest.mark.slow
def test_stop_ends_each_sample_at_its_first_stop(trained: tuple[Path, Path, str]) -> None:
    args = ("--prompt", "the", "--length", "300", "--seed", "5", "--num-samples", "3", "--json")
    free, cut = _sample(trained, *args), _sample(trained, *args, "--stop", r"\n", "--stop", "e ")
    assert_ok(cut)
    texts = [json.loads(line)["text"] for line in free.stdout.splitlines()]
    assert [json.loads(line)["text"] for line in cut.stdout.splitlines()] == [
        min(t.split("\n")[0], t.split("e ")[0], key=len) for t in texts
    ]
    one = ("--prompt", "the", "--length", "300", "--seed", "5")  # one sample: streamed as it is made
    whole = _sample(trained, *one)
    stop = whole.stdout[3 + 150 : 3 + 152]  # two characters the sample produces
    streamed = _sample(trained, *one, "--stop", stop.replace("\\", "\\\\"))
    assert_ok(streamed)
    assert streamed.stdout == "the" + cut_at_stop(whole.stdout[3:-1], (stop,)) + "\n" != whole.stdout
    assert_clean_error(_sample(trained, "--stop", ""), "--stop is empty", code=2)
    assert_clean_error(_sample(trained, "--stop", r"\q"), "--stop", "escape", code=2)
    assert_clean_error(_sample(trained, "--stop", "\u2603"), "never be generated", "vocabulary", code=2)


@pytest.mark.slow
def test_length_zero(trained: tuple[Path, Path, str]) -> None:
    assert_clean_error(_sample(trained, "--length", "0"), "--length", "at least 1", code=2)


@pytest.mark.slow
def test_top_k_larger_than_vocab(trained: tuple[Path, Path, str]) -> None:
    _, run, _ = trained
    size = len(json.loads((run / "vocab.json").read_text(encoding="utf-8"))["symbols"])
    assert_clean_error(_sample(trained, "--top-k", size + 1), "--top-k", f"0..{size}", str(size + 1), code=2)


@pytest.mark.slow
@pytest.mark.parametrize("top_p", ["0", "1.5", "-0.2"])
def test_top_p_out_of_range(trained: tuple[Path, Path, str], top_p: str) -> None:
    assert_clean_error(_sample(trained, "--top-p", top_p), "--top-p", "(0, 1]", code=2)


@pytest.mark.slow
def test_empty_prompt(trained: tuple[Path, Path, str]) -> None:
    assert_clean_error(_sample(trained, "--prompt", ""), "prompt is empty", "--prompt", code=2)


@pytest.mark.slow
def test_same_seed_same_text_piped_output_is_plain(trained: tuple[Path, Path, str]) -> None:
    args = ("--prompt", "wörld ", "--length", "150", "--top-k", "10", "--top-p", "0.95")
    a, b, other = (_sample(trained, *args, "--seed", seed) for seed in (11, 11, 12))
    assert_ok(a)
    assert_ok(b)
    assert a.stdout == b.stdout
    # stdout is a pipe here (like `charlstm sample | cat`): only the text, no colours or decorations
    assert "\x1b" not in a.stdout and "\x1b" not in a.stderr
    assert a.stdout.startswith("wörld ") and a.stdout.endswith("\n")
    assert len(a.stdout) == len("wörld ") + 150 + 1
    _, _, text = trained
    assert set(a.stdout[:-1]) <= set(text)  # every generated character comes from the training vocabulary
    assert_ok(other)
    assert other.stdout != a.stdout


@pytest.mark.slow
@pytest.mark.parametrize("content", ["a" * 3000, "word " * 2000], ids=["one-repeated-character", "one-long-line"])
def test_degenerate_but_valid_corpora_train(tmp_path: Path, content: str) -> None:
    """A single repeated character (vocabulary of one) and a file with no newline at all must just work."""
    corpus = tmp_path / "c.txt"
    corpus.write_text(content, encoding="utf-8")
    proc = run_cli(
        [
            "train",
            str(corpus),
            "--config",
            "tiny",
            "--set",
            "train.steps=3",
            "--set",
            "train.eval_every=3",
            "--set",
            "checkpoint.every=3",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--name",
            "d",
            "--quiet",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, describe(proc)
    sample = run_cli(
        ["sample", "--run", str(tmp_path / "runs" / "d"), "--prompt", content[0], "--length", "20"], cwd=tmp_path
    )
    assert sample.returncode == 0, describe(sample)
    assert set(sample.stdout.strip()) <= set(content)


# --- sample --novelty ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sample_novelty_brackets_colours_and_json(trained: tuple[Path, Path, str]) -> None:
    _, _, text = trained
    args = ("--prompt", "the", "--length", "200", "--seed", "3", "--novelty", "--min-copy", "2")
    plain = _sample(trained, *args)
    assert_ok(plain)
    body, line = plain.stdout.rstrip("\n").rsplit("\n", 1)
    assert "[[" in body and "\x1b" not in plain.stdout  # piped: brackets, no colour
    assert line.startswith("copied from the training text: ") and "spans of 2+ characters" in line
    coloured = _sample(trained, *args, "--json")
    row = json.loads(coloured.stdout)
    assert body == "the" + "".join(
        f"[[{p}]]" if any(s["start"] <= k < s["end"] for s in row["novelty"]["spans"]) else p
        for k, p in enumerate(row["text"])
    ).replace("]][[", "")
    for s in row["novelty"]["spans"]:
        assert row["text"][s["start"] : s["end"]] in text and s["length"] == s["end"] - s["start"] >= 2
    assert f"{row['novelty']['copied_share']:.1%}" in line
    forced = run_cli(["--color", "always", "sample", "--runs-dir", trained[0], *args], cwd=trained[0].parent)
    assert_ok(forced)
    assert "\x1b[4" in forced.stdout and "[[" not in forced.stdout  # underlined instead
    no_color = run_cli(
        ["sample", "--runs-dir", trained[0], *args], cwd=trained[0].parent, env={"NO_COLOR": "1", "TERM": "xterm"}
    )
    assert_ok(no_color)
    assert no_color.stdout == plain.stdout


@pytest.mark.slow
def test_train_summary_reports_the_copied_share_of_the_last_sample(trained: tuple[Path, Path, str]) -> None:
    shown = TRAINING[0].stdout + TRAINING[0].stderr
    assert re.search(r"copied in the last sample .*\d+\.\d% of 60 chars in spans of 32\+", shown), shown


@pytest.mark.slow
def test_sample_novelty_on_a_moved_or_changed_corpus(trained: tuple[Path, Path, str], tmp_path: Path) -> None:
    import shutil

    runs, run, text = trained
    copy = tmp_path / "runs" / "x"
    shutil.copytree(run, copy)
    info = json.loads((copy / "run.json").read_text(encoding="utf-8"))
    info["corpus"] = str(tmp_path / "moved-away.txt")
    (copy / "run.json").write_text(json.dumps(info), encoding="utf-8")
    fresh = {"CHARLSTM_CACHE": str(tmp_path / "cache")}  # no index of it yet

    def sample(*extra: str | Path) -> tuple:
        return run_cli(["sample", "--run", copy, "--novelty", "--length", "20", *extra], cwd=tmp_path, env=fresh)

    assert_clean_error(sample(), "training text is missing", "moved-away.txt", "--corpus FILE", code=1)
    changed = write_text(tmp_path / "changed.txt", text + "more")
    assert_clean_error(sample("--corpus", changed), "has changed since the run trained", "--corpus FILE", code=1)
    assert_ok(sample("--corpus", write_text(tmp_path / "same.txt", text)))
    prompt = write_text(tmp_path / "prompt.txt", text[:5])  # a prompt file leaves --corpus as given
    assert_ok(sample("--corpus", tmp_path / "same.txt", "--prompt-file", prompt))
    assert_clean_error(sample("--min-copy", "0"), "--min-copy", "at least 1", code=2)
    assert_clean_error(_sample(trained, "--corpus", changed), "--corpus", "--novelty", code=2)
