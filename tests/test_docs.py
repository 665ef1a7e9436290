"""The README stays true: every config key, every command, and CI's commands are documented."""

from __future__ import annotations

import re
from pathlib import Path

from charlstm import config
from charlstm.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_config_key_is_in_the_readme_table() -> None:
    for key, default, _ in config.describe():
        assert re.search(rf"\| `{re.escape(key)}` \| `{re.escape(default)}` \|", README), f"{key}: run scripts/readme_config_table.py"


def test_every_command_is_documented() -> None:
    names = [c.name or c.callback.__name__ for c in app.registered_commands]  # type: ignore[union-attr]
    names += [g.name for g in app.registered_groups]
    assert len(names) >= 5
    for name in names:
        assert f"charlstm {name}" in README, name


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -q ".[test]"' in ci and "python -m pytest -q" in ci
    assert 'pip install ".[test]" && python -m pytest -q' in README
    assert "pip install . && charlstm train" in README
