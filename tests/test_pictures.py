"""scripts/make_pictures.py regenerates the README's pictures: run here with tiny settings, and the SVGs checked for
what they show (lines of the tool's own output), not for pixels; and no picture shows a path of the machine. (The
compare-rnn picture runs the same way; `charlstm compare-rnn` itself is tested in test_compare.py.)"""

from __future__ import annotations

import html
import importlib.util
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT

from charlstm import ui

TINY = ["--config", "tiny", "--set", "train.eval_every=2", "--set", "checkpoint.every=2"]


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("make_pictures", ROOT / "scripts" / "make_pictures.py")
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def shown(svg: Path) -> list[str]:
    """The picture's lines of text, top to bottom, as the terminal showed them."""
    root = ET.fromstring(svg.read_text(encoding="utf-8"))  # well-formed XML, or this raises
    rows: dict[float, list[tuple[float, str]]] = {}
    for node in root.iter("{http://www.w3.org/2000/svg}text"):
        if node.get("y") is not None and node.get("x") is not None and node.text:
            rows.setdefault(float(node.get("y", 0)), []).append((float(node.get("x", 0)), html.unescape(node.text)))
    return ["".join(t for _, t in sorted(parts)).replace("\xa0", " ").rstrip() for _, parts in sorted(rows.items())]


@pytest.fixture
def pictures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Path]:
    """The script, run from a scratch directory, on consoles of its own (it records them)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARLSTM_MALLOC_TUNING", "0")
    out, err = ui.new_consoles()
    monkeypatch.setattr(ui, "out", out)
    monkeypatch.setattr(ui, "err", err)
    return _script(), tmp_path


@pytest.mark.slow
def test_train_and_inspect_pictures_regenerate(pictures: tuple[Any, Path]) -> None:
    script, where = pictures
    assert script.main(["--images", "pics", "train", *TINY, "--steps", "4", "--name", "pic"]) == 0
    svg = where / "pics" / "train.svg"
    lines = shown(svg)
    assert re.match(r"lstm 1x32 · [\d,]+ params · vocab \d+ · ", lines[0]) and "runs/pic" in lines[0], lines[0]
    assert any(line.startswith("step 2: val loss") for line in lines) and any("training summary" in ln for ln in lines)
    assert any(line.startswith("sample with: charlstm sample --run runs/pic") for line in lines)
    text = html.unescape(svg.read_text(encoding="utf-8")).replace("\xa0", " ")
    assert "charlstm train --config tiny" in text  # the window's title is the command
    assert str(where) not in svg.read_text(encoding="utf-8")

    assert script.main(["--images", "pics", "inspect"]) == 0  # runs/latest: the run above
    lines = shown(where / "pics" / "inspect.svg")
    assert lines[0].startswith("lstm 1x32 · ") and "showing the cell state c" in lines[0]
    assert any(line.startswith("layer 1 · cell ") for line in lines) and any("gate saturation" in ln for ln in lines)
    # the text, one coloured character at a time (spaces are coloured cells without a glyph)
    assert any(line.replace(" ", "").startswith("Jammuisabeautifulplace.") for line in lines)


def test_a_picture_that_would_show_a_machine_path_is_refused(pictures: tuple[Any, Path]) -> None:
    script, where = pictures
    assert str(where) in script.machine_paths(f"run {where}/runs/pic")  # the working directory
    assert script.machine_paths("run runs/pic · sample with: charlstm sample --run runs/pic") == []
