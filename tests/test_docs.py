"""The documentation stays true: every `charlstm ...` command line in README.md and docs/*.md parses with the real
command line, every relative link and image resolves, the config reference is the schema's, every command is
documented, and the README's install commands are the ones CI runs."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer import _click as click
from typer import exceptions as typer_exceptions
from typer.main import get_command

from charlstm import cli, config

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^\s*(```|~~~)")
SHELL = {"", "bash", "sh", "shell", "console"}


def rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


# --- reading markdown -------------------------------------------------------------------------------------


def split_fences(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(lines inside fenced shell blocks, lines outside any fenced block), each as (line number, text).
    Shell blocks are those marked bash, sh, shell or console, or not marked at all; Python, YAML and other
    blocks are neither."""
    shell, outside, lang = [], [], None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m:
            lang = line.strip()[3:].strip().lower() if lang is None else None
            continue
        if lang is None:
            outside.append((n, line))
        elif lang in SHELL:
            shell.append((n, line))
    return shell, outside


def shell_commands(lines: list[tuple[int, str]]) -> list[tuple[int, str, list[str]]]:
    """Every `charlstm ...` invocation in shell lines: (line number, the line, argv after `charlstm`).

    Joins backslash continuations, drops a `$ ` prompt and comments, splits at `&&`, `||`, `;` and `|`, and
    skips environment assignments and launchers before `charlstm` (`XLA_FLAGS=... charlstm`, `srun charlstm`).
    Words holding shell expansions (`"${ARGS[@]}"`) are left out: they are not charlstm's to parse."""
    found, joined, start = [], "", 0
    for n, line in lines:
        if not joined:
            start = n
        if line.rstrip().endswith("\\"):
            joined += line.rstrip()[:-1] + " "
            continue
        text, joined = (joined + line).strip(), ""
        text = text[2:] if text.startswith("$ ") else text
        if "charlstm" not in text:
            continue
        try:
            lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|<>")
            lexer.whitespace_split, lexer.commenters = True, "#"
            words = list(lexer)
        except ValueError:
            continue  # not shell: nothing to parse
        segment: list[str] = []
        redirect = False
        for word in [*words, ";"]:
            if redirect:  # the file of `> file`: not an argument
                redirect = False
            elif word and set(word) <= set("<>&") and ">" in word or word == "<":
                redirect = True
                if segment and segment[-1].isdigit():  # the 2 of `2> file`
                    segment.pop()
            elif word and set(word) <= set(";&|"):
                if "charlstm" in segment:
                    argv = segment[segment.index("charlstm") + 1 :]
                    found.append((start, text, [w for w in argv if "$" not in w]))
                segment = []
            else:
                segment.append(word)
    return found


def inline_commands(lines: list[tuple[int, str]]) -> list[tuple[int, str, list[str]]]:
    """`charlstm ...` written as inline code in prose."""
    spans = [(n, span) for n, line in lines for span in re.findall(r"`(charlstm(?: [^`]*)?)`", line)]
    return [(n, span, argv) for n, span in spans for _, _, argv in shell_commands([(n, span)])]


# --- the command line's parser, without running anything ---------------------------------------------------

COMMAND = get_command(cli.app)


def parse(argv: list[str]) -> None:
    """Parse argv exactly as `charlstm` would (subcommands included) and stop before running anything.
    Raises click's UsageError (NoSuchOption, BadParameter, MissingParameter, ...) for a command line it
    would refuse; --help and --version end parsing as success."""
    args = cli.prepare_args(argv)
    try:
        cmd, ctx = COMMAND, COMMAND.make_context("charlstm", args)
        while isinstance(cmd, click.core.Command) and hasattr(cmd, "resolve_command"):
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
            if not rest:
                break
            name, sub, rest = cmd.resolve_command(ctx, rest)
            assert sub is not None and name is not None
            cmd, ctx = sub, sub.make_context(name, rest, parent=ctx)
    except typer_exceptions.Exit:  # --help, --version and other eager options that print and stop
        pass


def commands_in(page: Path) -> tuple[list[tuple[int, str, list[str]]], list[tuple[int, str, list[str]]]]:
    inside, outside = split_fences(page.read_text(encoding="utf-8"))
    return shell_commands(inside), inline_commands(outside)


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_command_line_shown_parses(page: Path) -> None:
    blocks, inline = commands_in(page)
    bad = []
    for n, text, argv in blocks:
        try:
            parse(argv)
        except click.exceptions.UsageError as err:
            bad.append(f"{rel(page)}:{n}: {text}\n    -> {err.format_message()}")
    for n, text, argv in inline:  # prose may name a command (or group) without its required values
        try:
            parse(argv)
        except (click.exceptions.MissingParameter, click.exceptions.NoArgsIsHelpError):
            pass
        except click.exceptions.UsageError as err:
            bad.append(f"{rel(page)}:{n}: `{text}`\n    -> {err.format_message()}")
    assert not bad, "command lines the CLI does not accept:\n" + "\n".join(bad)


def test_the_pages_show_command_lines() -> None:
    """Guards the extraction above: if it found nothing, the test before would pass vacuously."""
    found = {rel(p): len(commands_in(p)[0]) for p in PAGES}
    assert found["README.md"] >= 5 and sum(found.values()) >= 40, found


def test_the_parser_refuses_what_does_not_exist() -> None:
    parse(["train", "my.txt", "--config", "tiny", "--set", "model.hidden=64", "--resume"])
    parse(["corpus", "get", "tinyshakespeare", "--url", "https://example.org/x.txt"])
    parse(["sample", "--help"])
    for argv in (
        ["trian"],
        ["train", "--stepz", "3"],
        ["corpus", "fetch", "x"],
        ["sample", "--length", "many"],
        ["eval"],
    ):
        with pytest.raises(click.exceptions.UsageError):
            parse(argv)


def test_command_extraction() -> None:
    lines = list(
        enumerate(
            [
                '$ charlstm sample --prompt "Jammu" --length 120   # a comment',
                "pip install . && charlstm train",
                "XLA_FLAGS=--xla_force_host_platform_device_count=4 charlstm train --config tiny \\",
                "    --steps 10",
                'srun charlstm train "${ARGS[@]}" --distributed',
                "python -m charlstm.data.langcorpus",
                "charlstm config show tiny > my.yaml 2>/dev/null | head",
            ],
            1,
        )
    )
    assert [argv for _, _, argv in shell_commands(lines)] == [
        ["sample", "--prompt", "Jammu", "--length", "120"],
        ["train"],
        ["train", "--config", "tiny", "--steps", "10"],
        ["train", "--distributed"],
        ["config", "show", "tiny"],
    ]


# --- links and images ---------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|<img\s[^>]*src=\"([^\"]+)\"")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in split_fences(page.read_text(encoding="utf-8"))[1]:
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_relative_link_and_image_resolves(page: Path) -> None:
    bad = []
    for n, line in split_fences(page.read_text(encoding="utf-8"))[1]:
        for m in LINK.finditer(re.sub(r"`[^`]*`", "", line)):
            target = m.group(1) or m.group(2)
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                bad.append(f"{rel(page)}:{n}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{rel(page)}:{n}: {target} (no heading #{anchor} in {dest.name})")
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_pictures_are_small() -> None:
    images = sorted((ROOT / "docs" / "images").glob("*"))
    assert images
    for image in images:
        assert image.stat().st_size < 300_000, f"{image.name}: {image.stat().st_size:,} bytes"


# --- reference, commands, install -----------------------------------------------------------------------------


def test_config_reference_is_the_schema() -> None:
    spec = importlib.util.spec_from_file_location("config_table", ROOT / "scripts" / "config_table.py")
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    found = script.MARKERS.search(page)
    assert found and found.group(0) == script.table(), "docs/configuration.md: run python scripts/config_table.py"
    assert len(config.describe()) == found.group(0).count("\n| `")


def _script(name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_command_reference_is_the_command_line() -> None:
    script: Any = _script("commands_doc")
    page = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    assert sorted(script.MARKERS.findall(page)) == sorted(script.commands()), "a command without its block"
    assert page == script.rewrite(page), "docs/commands.md: run python scripts/commands_doc.py"
    # every option of every command is in it, by construction; spot-check a few
    for option in ("--init-from RUN", "--prompt-file FILE", "--display-chars N", "--timed-steps N", "--host HOST"):
        assert f"`{option}" in page or f", {option}" in page, option


def test_every_command_is_in_the_readme() -> None:
    names = [c.name or c.callback.__name__ for c in cli.app.registered_commands]  # type: ignore[union-attr]
    names += [g.name for g in cli.app.registered_groups]
    assert len(names) >= 5
    for name in names:
        assert f"charlstm {name}" in README, name


def test_readme_is_short() -> None:
    size = len(README.encode("utf-8"))
    assert size <= 12 * 1024, f"README.md is {size:,} bytes: move detail to docs/"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r'pip install (-q )?(-e )?"\.\[test\]"', ci) and "python -m pytest -q" in ci
    assert 'pip install ".[test]" && python -m pytest -q' in README
    assert "pip install . && charlstm train" in README


def test_nothing_tells_the_story_of_its_making() -> None:
    """Text in the repository describes the tool, not how it was developed."""
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    pattern = re.compile(r"\bsession\s+\d|\bclosing[ ]notes?\b|\b(ticket|issue)\s+#?\d|\bround\s+\d+\s+of\s+work", re.I)
    hits = []
    for name in files:
        path = ROOT / name
        if (
            path.suffix in {".md", ".py", ".yaml", ".toml", ".txt", ".cfg"}
            and path.is_file()
            and "corpora" not in path.parts
        ):
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{name}:{n}: {line.strip()[:120]}")
    assert not hits, "\n".join(hits)


# --- measured figures: quoted from docs/measurements.toml -------------------------------------------------------

MEASUREMENTS: dict[str, dict[str, object]] = tomllib.loads(
    (ROOT / "docs" / "measurements.toml").read_text(encoding="utf-8")
)
SPAN = re.compile(r"<!--\s*measured:\s*([^>]*?)\s*-->(.*?)<!--\s*/measured\s*-->", re.S)
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# What reads as a measured time, speed or loss: a number with its unit, or a loss written to three or more decimals.
FIGURE = re.compile(r"\d[\d.,]*\s?(?:s|ms|min|minutes|chars/s|nats/char|bits/char|GFLOP/s)(?![\w/])|\b\d\.\d{3,}\b")


def record_numbers(ids: list[str]) -> set[str]:
    """Every number the records `ids` hold, in any field."""

    def strings(value: object) -> list[str]:
        if isinstance(value, dict):
            return [t for v in value.values() for t in strings(v)]
        return [str(value)]

    return {n for i in ids for text in strings(MEASUREMENTS[i]) for n in NUMBER.findall(text)}


def spans(page: Path) -> list[tuple[int, list[str], str]]:
    """(line number, cited record ids, quoted text) of every measured span on the page."""
    text = page.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 1, [i.strip() for i in m.group(1).split(",")], m.group(2))
        for m in SPAN.finditer(text)
    ]


def test_every_measurement_says_when_where_how_and_what() -> None:
    assert len(MEASUREMENTS) >= 5
    for name, record in MEASUREMENTS.items():
        assert {"what", "date", "machine", "command", "values"} <= set(record), name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(record["date"])), name
        assert isinstance(record["values"], dict) and record["values"], name


def test_quoted_figures_are_the_measured_ones() -> None:
    bad = []
    for page in PAGES:
        for line, ids, quoted in spans(page):
            unknown = [i for i in ids if i not in MEASUREMENTS]
            if unknown:
                bad.append(f"{rel(page)}:{line}: no measurement {unknown} in docs/measurements.toml")
                continue
            stray = sorted(set(NUMBER.findall(quoted)) - record_numbers(ids))
            if stray:
                bad.append(f"{rel(page)}:{line}: {stray} are not in the measurements {ids}")
    assert not bad, "figures the measurements do not hold:\n" + "\n".join(bad)


def test_the_check_of_quoted_figures_can_fail() -> None:
    assert "2 min 21 s" in str(MEASUREMENTS["languages-run"]["values"])
    assert {"2", "21"} <= record_numbers(["languages-run"]) and "22" not in record_numbers(["languages-run"])
    assert FIGURE.search("took 2 min 22 s") and FIGURE.search("val 1.4404") and FIGURE.search("302,403 chars/s")
    assert not FIGURE.search("a 1 x 128 LSTM, 600 KB, every 500 steps, seed 1")


def test_every_measurement_is_quoted() -> None:
    cited = {i for page in PAGES for _, ids, _ in spans(page) for i in ids}
    assert set(MEASUREMENTS) <= cited, f"not quoted anywhere: {sorted(set(MEASUREMENTS) - cited)}"


def test_the_readme_quotes_figures_only_from_the_measurements() -> None:
    _, outside = split_fences(SPAN.sub("", README))
    found = [
        f"README.md:{n}: {m.group(0)!r} in {line.strip()[:80]!r}" for n, line in outside for m in FIGURE.finditer(line)
    ]
    assert not found, "measured-looking figures outside a <!-- measured: ... --> span:\n" + "\n".join(found)


def test_the_docs_show_no_development_history_and_no_machine_paths() -> None:
    """Measurements keep their date, machine and command; how they were reached, and where the machine kept its
    files, is not the reader's business."""
    story = re.compile(
        r"goals? and where|\b(missed|met)\s*\|\s*$|\b(midday|afternoon|morning|night of)\b|prototyped outside|"
        r"tests? (suite )?ran beside|the shared machine|(?<![\w.])/(tmp|work|home|root)/",
        re.I,
    )
    pages = [*PAGES, *sorted((ROOT / "configs").glob("*.yaml")), *sorted((ROOT / "docs" / "images").glob("*.svg"))]
    hits = [
        f"{rel(page)}:{n}: {line.strip()[:100]}"
        for page in pages
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if story.search(line)
    ]
    assert not hits, "\n".join(hits)
    assert story.search("2026-11-27, afternoon: both sides") and story.search("--runs-dir /tmp/servetest")
