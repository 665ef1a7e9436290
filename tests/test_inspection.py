"""`charlstm inspect`: recorded gates against the NumPy reference, the text signals, the cell pickers, the
place-memory finder, the colour scale, wrapping with wide characters, the HTML page and the CLI."""

from __future__ import annotations

import random
import re
from html.parser import HTMLParser
from pathlib import Path

import jax
import numpy as np
import pytest
import reference as ref
from helpers import TINY_TRAIN, assert_clean_error, assert_ok, run_cli
from rich.cells import cell_len
from rich.console import Console

from charlstm.analysis import gates as gates_lib
from charlstm.analysis import heatmap, inspection, placememory, text_properties
from charlstm.config import ModelConfig
from charlstm.data import langcorpus
from charlstm.data.corpus import COMPARE_CORPUS, Vocab, build_vocab, to_points
from charlstm.errors import UserError
from charlstm.nn import model

TEXT = 'Kerala is "nice" (very).\nI went to Goa — 日本 🙂 last year.\n'
ATOL = 1e-5


def vocab_of(text: str) -> Vocab:
    return build_vocab(to_points(text.encode("utf-8"), "utf-8"), "utf-8")


# --- recorded traces == the NumPy reference ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_recorded_traces_match_reference(cell: str) -> None:
    vocab = vocab_of(TEXT)
    cfg = ModelConfig(cell=cell, layers=2, hidden=8)
    params = model.init_params(cfg, len(vocab), jax.random.PRNGKey(3))
    ids = vocab.encode(TEXT[1:])  # does not start with a newline: the priming newline is read first
    prime = vocab.symbols.index(ord("\n"))
    names = ref_names(cell)
    got = inspection.record_traces(params, cfg, ids, names, prime)
    sd = ref.state_dict_from_params(params, cell, len(vocab))
    _, _, want = ref.run_network(sd, cell, np.concatenate([[prime], ids])[None])
    assert len(got) == cfg.layers
    for k in range(cfg.layers):
        for name in names:
            assert got[k][name].shape == (len(ids), cfg.hidden)
            np.testing.assert_allclose(
                got[k][name], want[k][name][0, 1:], rtol=0, atol=ATOL, err_msg=f"layer {k} {name}"
            )


def ref_names(cell: str) -> tuple[str, ...]:
    return {"lstm": ("i", "f", "g", "o", "c", "h"), "gru": ("r", "z", "n", "h"), "rnn": ("h",)}[cell]


@pytest.mark.slow
@pytest.mark.parametrize("cell,show,name", [("lstm", "forget", "f"), ("gru", "update", "z"), ("rnn", None, "h")])
def test_analyse_shows_reference_values_and_saturation(cell: str, show: str | None, name: str) -> None:
    vocab = vocab_of(TEXT)
    cfg = ModelConfig(cell=cell, layers=2, hidden=6)
    params = model.init_params(cfg, len(vocab), jax.random.PRNGKey(1))
    report = inspection.analyse(params, cfg, vocab, TEXT, layer=1, cells=[4, 0], show=show)
    sd = ref.state_dict_from_params(params, cell, len(vocab))
    _, _, want = ref.run_network(sd, cell, vocab.encode(TEXT)[None])  # TEXT starts with "K": primed below
    _, _, primed = ref.run_network(sd, cell, vocab.encode("\n" + TEXT)[None])
    assert [(s.layer, s.cell) for s in report.selected] == [(0, 4), (0, 0)]
    for s in report.selected:
        np.testing.assert_allclose(s.values, primed[0][name][0, 1:, s.cell], rtol=0, atol=ATOL)
    assert not np.allclose(want[0][name][0], primed[0][name][0, 1:])  # the priming newline matters
    assert len(report.units) == len(TEXT)
    gates = gates_lib.SIGMOID_GATES[cell]
    assert [[g.gate for g in layer] for layer in report.saturation] == ([list(gates)] * 2 if gates else [])
    for k, layer in enumerate(report.saturation):
        for g in layer:
            trace = primed[k][g.gate][0, 1:]
            assert g.left == pytest.approx((trace < 0.1).mean(), abs=1e-9)
            assert g.right == pytest.approx((trace > 0.9).mean(), abs=1e-9)


def test_bytes_run_shows_each_character_after_its_last_byte() -> None:
    text = "a日b"
    vocab = build_vocab(to_points(text.encode("utf-8"), "bytes"), "bytes")
    enc = inspection.encode(vocab, text)
    assert len(enc.ids) == 5 and enc.units == [("a", 0), ("日", 3), ("b", 4)]


# --- show names and input errors ---------------------------------------------------------------------------


def test_show_mapping_and_errors() -> None:
    assert gates_lib.resolve_show("lstm", None) == "c" and gates_lib.resolve_show("gru", None) == "h"
    assert [gates_lib.resolve_show("lstm", s) for s in ("forget", "input", "output", "cell", "hidden")] == list("fioch")
    assert gates_lib.resolve_show("gru", "update") == "z" and gates_lib.resolve_show("gru", "reset") == "r"
    with pytest.raises(UserError, match="GRU has no forget gate") as e:
        gates_lib.resolve_show("gru", "forget")
    assert "update" in e.value.hint and "reset" in e.value.hint
    with pytest.raises(UserError, match="no forget gate: it records only the hidden state"):
        gates_lib.resolve_show("rnn", "forget")
    with pytest.raises(UserError, match="LSTM has no update gate"):
        gates_lib.resolve_show("lstm", "update")
    with pytest.raises(UserError, match="unknown --show"):
        gates_lib.resolve_show("lstm", "bogus")


def test_load_text_and_encode_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="both given"):
        inspection.load_text("a", tmp_path / "x.txt", 10)
    with pytest.raises(UserError, match="nothing to read"):
        inspection.load_text(None, None, 10)
    with pytest.raises(UserError, match="cannot read"):
        inspection.load_text(None, tmp_path / "missing.txt", 10)
    src = inspection.load_text(None, COMPARE_CORPUS, 500)
    assert len(src.text) == 500 and src.records and src.truncated
    assert not inspection.load_text("abc", None, 3).truncated and inspection.load_text("abcd", None, 3).text == "abc"
    (tmp_path / "crlf.txt").write_bytes(b"a\r\nb")
    assert inspection.load_text(None, tmp_path / "crlf.txt", 10).text == "a\r\nb"
    with pytest.raises(UserError, match="not in the run's vocabulary"):
        inspection.encode(vocab_of("abc"), "abz", skip_unknown=False)
    skipped = inspection.encode(vocab_of("abc"), "azb")  # skipped, and drawn where it was
    assert skipped.dropped == 1 and skipped.skipped == "z"
    assert skipped.units == [("a", 0), (inspection.SKIPPED_GLYPH, 0), ("b", 1)]


# --- text signals ------------------------------------------------------------------------------------------


def test_properties_on_hand_made_text() -> None:
    s = 'a "b" (c)\nde f'
    p = text_properties.properties(s, [placememory.Span("X", 11, 13)])
    assert len(s) == 14
    assert p["inside quotes"].tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert p["inside brackets"].tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0]
    assert p["distance since last newline"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4]
    assert p["distance since last space"].tolist() == [1, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 0, 1]
    assert p["after the place name, before the language word"].tolist() == [0] * 11 + [1, 1] + [0]
    curly = text_properties.properties("“a”b")["inside quotes"].tolist()
    assert curly == [1, 1, 0, 0]


def test_place_spans_from_text_and_records() -> None:
    s = "I went to Tamil Nadu last year. But I don't speak Tamil.\nGoa is nice.\nno place here\n"
    spans = placememory.find_spans(s)
    assert spans[0] == placememory.Span("Tamil Nadu", s.index(" last"), s.index("Tamil."), True)
    assert spans[1] == placememory.Span("Goa", s.index(" is nice"), s.index("\nno"), False)
    assert len(spans) == 2
    text = COMPARE_CORPUS.read_text(encoding="utf-8")[:3000]
    records = langcorpus.load_gaps(COMPARE_CORPUS.with_name("languages.gaps.json"))
    from_records = placememory.spans_from_records(records, text)
    assert from_records and all(text[sp.end - 1] == " " and sp.language for sp in from_records)
    scanned = {(sp.start, sp.end) for sp in placememory.find_spans(text) if sp.language}
    assert {(sp.start, sp.end) for sp in from_records} <= scanned  # the scan finds every annotated gap
    assert placememory.spans_from_records(records, "x" + text) is None  # offsets no longer match


# --- picking cells -----------------------------------------------------------------------------------------


def test_correlation_picks_planted_cells() -> None:
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list('ab c"\n')) for _ in range(600))
    props = text_properties.properties(text)
    x = rng.normal(size=(len(text), 16))
    x[:, 11] = props["distance since last newline"] + 0.1 * rng.normal(size=len(text))
    x[:, 3] = -props["inside quotes"] + 0.05 * rng.normal(size=len(text))
    x[:, 5] = 1.0  # constant: tracks nothing
    corr = text_properties.correlations(x, props)
    assert "inside brackets" not in corr  # no brackets in the text: a constant signal is left out
    assert corr["distance since last newline"][5] == 0.0
    picks = text_properties.pick_top(corr, 2)
    assert {(p.cell, p.prop) for p in picks} == {(11, "distance since last newline"), (3, "inside quotes")}
    assert all(abs(p.r) > 0.95 for p in picks)
    assert next(p for p in picks if p.cell == 3).r < 0
    assert len({p.cell for p in text_properties.pick_top(corr, 16)}) == 16
    assert text_properties.pick_top({}, 3) == []


def test_saturation_fractions_on_known_arrays() -> None:
    g = np.array([[0.05, 0.95], [0.05, 0.5], [0.5, 0.95], [0.05, 0.99]])
    (s,) = gates_lib.saturation({"f": g})
    assert (s.left, s.right) == pytest.approx((3 / 8, 3 / 8))
    assert s.between == pytest.approx(2 / 8)
    assert (s.cells_left, s.cells_right) == (1, 1)


def test_place_memory_finds_a_planted_cell() -> None:
    rng = np.random.default_rng(1)
    places = ["Goa", "Assam", "Kerala"]
    spans, t, code = [], 0, {}
    for k in range(30):
        place = places[k % 3]
        length = int(rng.integers(20, 60))
        spans.append(placememory.Span(place, t + 5, t + 5 + length))
        t += length + 10
    state = rng.normal(size=(t, 12))
    for sp in spans:  # cell 7 holds the place through the gap, under noise; cell 2 follows the position
        code.setdefault(sp.place, len(code))
        state[sp.start : sp.end, 7] = code[sp.place] + 0.3 * rng.normal(size=sp.end - sp.start)
        state[sp.start : sp.end, 2] = np.arange(sp.end - sp.start, 0, -1)
    pm = placememory.place_memory([state[:, :6], state[:, 6:]], spans)
    assert pm is not None and (pm.paragraphs, pm.places) == (30, 3)
    best = pm.cells[0]
    assert (best.layer, best.cell) == (1, 1) and best.eta2 > 0.8 > pm.chance
    assert best.eta2_end > pm.chance_end and (best.high, best.low) == ("Kerala", "Goa")
    assert all(c.eta2 < pm.chance for c in pm.cells[1:])  # position-driven and noise cells stay below chance
    assert placememory.place_memory([state], spans[:2]) is None  # two paragraphs of two places: too few


def test_eta_squared_matches_definition() -> None:
    rng = np.random.default_rng(2)
    x, g = rng.normal(size=(50, 3)), rng.integers(0, 4, 50)
    sums, counts = placememory.group_sums(x, g, 4)
    eta = placememory.eta_squared(sums, counts, (x**2).sum(axis=0), np.arange(4), 4)
    for j in range(3):
        between = sum((g == k).sum() * (x[g == k, j].mean() - x[:, j].mean()) ** 2 for k in range(4) if (g == k).any())
        assert eta[j] == pytest.approx(between / ((x[:, j] - x[:, j].mean()) ** 2).sum())


# --- colours, wrapping, HTML -------------------------------------------------------------------------------


def test_colour_scale_endpoints_midpoint_and_monotonic() -> None:
    s = heatmap.Scale(0.0, 0.5, 1.0)
    assert s.color(0.0) == heatmap.NEGATIVE and s.color(1.0) == heatmap.POSITIVE and s.color(0.5) == heatmap.MIDDLE
    assert (
        s.color(-3.0) == heatmap.NEGATIVE
        and s.color(7.0) == heatmap.POSITIVE
        and s.color(float("nan")) == heatmap.MIDDLE
    )
    red_minus_blue = [c[0] - c[2] for c in (s.color(v) for v in np.linspace(0, 1, 101))]
    assert all(a < b for a, b in zip(red_minus_blue, red_minus_blue[1:]))
    asym = heatmap.Scale(-4.0, 0.0, 1.0)  # each half scaled on its own: the midpoint stays white
    assert (
        asym.color(0.0) == heatmap.MIDDLE
        and asym.color(-4.0) == heatmap.NEGATIVE
        and asym.color(1.0) == heatmap.POSITIVE
    )
    assert asym.unit(-2.0) == pytest.approx(-0.5) and asym.unit(0.5) == pytest.approx(0.5)
    assert heatmap.Scale(0, 0, 0).color(5.0) == heatmap.MIDDLE
    assert heatmap.text_color(heatmap.NEGATIVE) == (255, 255, 255) and heatmap.text_color(heatmap.MIDDLE) == (0, 0, 0)


WIDE = ["日", "本", "語", "🙂", "🎉", "a", "b", " ", "\n", "é", "\u0301", "\t", "\x1b", "한", "x"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_wrapping_never_exceeds_the_width(seed: int) -> None:
    rng = random.Random(seed)
    chars = [rng.choice(WIDE) for _ in range(400)] + ["🙂"] * 30  # and a long run of wide characters
    units = [(heatmap.glyph(c), float(k)) for k, c in enumerate(chars)]
    for width in (2, 3, 5, 8, 13, 40, 79):
        lines = heatmap.wrap(units, width)
        assert [u for line in lines for u in line] == units  # nothing dropped, nothing reordered
        assert all(sum(heatmap.width_of(g) for g, _ in line) <= width for line in lines)
        assert all(u[0] != heatmap.NEWLINE_GLYPH for line in lines for u in line[:-1])  # a newline ends its line
        row = heatmap.Row("t", units, heatmap.Scale(0, 200, 430))
        console = Console(width=width, record=True, color_system="truecolor", force_terminal=True)
        for text in heatmap.render(row, width):
            assert text.cell_len <= width
            console.print(text, soft_wrap=True)
        assert all(cell_len(line) <= width for line in console.export_text().splitlines())


def test_words_move_to_the_next_line_whole() -> None:
    units = [(c, 0.0) for c in "aaa bbb ccc"]
    assert ["".join(g for g, _ in line) for line in heatmap.wrap(units, 5)] == ["aaa ", "bbb ", "ccc"]
    assert ["".join(g for g, _ in line) for line in heatmap.wrap(units, 2)] == ["aa", "a ", "bb", "b ", "cc", "c"]
    assert heatmap.glyph("\x00") == "␀" and heatmap.glyph("\n") == "↵" and heatmap.glyph("日") == "日"


class _Checker(HTMLParser):
    VOID = {"meta", "br", "link", "img", "hr", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_html_is_well_formed_and_escaped(tmp_path: Path) -> None:
    evil = '<script>alert("x")</script> & 日本🙂\n'
    row = heatmap.Row(
        'cell <1> & "2"', [(heatmap.glyph(c), k / 10) for k, c in enumerate(evil)], heatmap.Scale(-1, 0, 1, "c")
    )
    view = heatmap.View(
        "title <b>",
        ["head & <i>"],
        [("-1", "+1", "legend <x>")],
        [row],
        ["note <n>"],
        [("table <t>", ["a<", "b"], [["<td>", "&"]])],
    )
    path = tmp_path / "v.html"
    heatmap.write_html(path, view)
    page = path.read_text(encoding="utf-8")
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == []
    assert "script" not in checker.tags and "b" not in checker.tags and "td" in checker.tags
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in "".join(re.findall(r">([^<]*)</span>", page))
    assert "cell &lt;1&gt; &amp; &quot;2&quot;" in page and "日" in page and "🙂" in page and page.count("<br>") == 1
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page


# --- the CLI -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny runs on the bundled corpus: an LSTM ("lstm") and a plain RNN ("rnn")."""
    root = tmp_path_factory.mktemp("inspect")
    runs = root / "runs"

    for name, *extra in [("lstm",), ("rnn", "--set", "model.cell=rnn")]:
        assert_ok(run_cli(["train", *TINY_TRAIN, "--runs-dir", runs, "--name", name, *extra], cwd=root))
    return runs


@pytest.mark.slow
def test_cli_inspect_top_html_and_place_memory(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "view.html"
    proc = run_cli(
        [
            "inspect",
            "--runs-dir",
            runs,
            "--run",
            "lstm",
            "--file",
            COMPARE_CORPUS,
            "--max-chars",
            "4000",
            "--display-chars",
            "300",
            "--top",
            "3",
            "--html",
            out,
        ],
        cwd=tmp_path,
        env={"COLUMNS": "60"},
    )
    assert_ok(proc)
    assert "\x1b" not in proc.stdout
    assert len(re.findall(r"^layer 1 · cell \d+ · c from .* · tracks .* \(r = [+-]\d\.\d\d\)$", proc.stdout, re.M)) == 3
    assert "place memory" in proc.stdout and "η² gap" in proc.stdout and "gate saturation" in proc.stdout
    assert "forget" in proc.stdout and "read the first 4,000 characters" in proc.stdout
    lines = proc.stdout.splitlines()
    first = next(k for k, ln in enumerate(lines) if ln.startswith("layer 1 · cell"))
    heat = lines[first + 1 : lines.index("", first)]  # the first cell's heatmap, up to the blank line
    assert heat and all(cell_len(ln) <= 60 for ln in heat)
    text, bars = heat[0::2], heat[1::2]  # without colour (a pipe), a line of bars under each line of text
    shown = COMPARE_CORPUS.read_text(encoding="utf-8")[:300].replace("\n", "↵")
    assert "".join(text) == shown  # wrapped, never cut: every character is drawn once
    assert [cell_len(b) for b in bars] == [cell_len(t) for t in text] and set("".join(bars)) <= set(heatmap.LEVELS)
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "place memory" in page and "wrote" in proc.stderr


@pytest.mark.slow
def test_cli_inspect_cells_and_gates(runs: Path, tmp_path: Path) -> None:
    proc = run_cli(
        [
            "inspect",
            "--runs-dir",
            runs,
            "--run",
            "lstm",
            "--text",
            "I went to Goa. It was fun.",
            "--cell",
            "0",
            "--cell",
            "31",
            "--show",
            "forget",
        ],
        cwd=tmp_path,
    )
    assert_ok(proc)
    assert "layer 1 · cell 0 · f from" in proc.stdout and "layer 1 · cell 31 · f from" in proc.stdout
    assert "0 shut" in proc.stdout and "I went to Goa. It was fun." in proc.stdout
    rnn = run_cli(["inspect", "--runs-dir", runs, "--run", "rnn", "--text", "I went to Goa. It was fun."], cwd=tmp_path)
    assert_ok(rnn)
    assert "hidden state h" in rnn.stdout and "gate saturation" not in rnn.stdout


@pytest.mark.slow
def test_cli_inspect_errors(runs: Path, tmp_path: Path) -> None:
    base = ["inspect", "--runs-dir", str(runs), "--run", "lstm"]
    cases = [
        (base + ["--text", "Goa", "--file", str(COMPARE_CORPUS)], ("--text and --file both given",)),
        (base, ("nothing to read", "--text")),
        (base + ["--text", "Goa", "--layer", "2"], ("--layer 2 is out of range", "1 layer")),
        (base + ["--text", "Goa", "--cell", "32"], ("--cell 32 is out of range", "0..31")),
        (base + ["--text", "Goa", "--cell", "1", "--top", "2"], ("--cell and --top both given",)),
        (base + ["--text", "Goa", "--show", "update"], ("LSTM has no update gate",)),
        (base + ["--text", "€¥"], ("no character of the text is in the run's vocabulary",)),
        (
            ["inspect", "--runs-dir", str(runs), "--run", "rnn", "--text", "Goa", "--show", "forget"],
            ("plain RNN has no forget gate", "--show hidden"),
        ),
    ]
    for proc, (_, words) in zip((run_cli(args, cwd=tmp_path) for args, _ in cases), cases):
        assert_clean_error(proc, *words, code=2)  # every one a value the options cannot have for this run
