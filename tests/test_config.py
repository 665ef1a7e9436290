"""Tests for charlstm.config: bundled configs, --set overrides and one-line error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from charlstm import config as config_lib
from charlstm.config import Config
from charlstm.errors import ConfigError

BUNDLED = sorted(config_lib.CONFIG_DIR.glob("*.yaml"))


def test_bundled_configs_exist() -> None:
    names = {p.stem for p in BUNDLED}
    assert {"default", "tiny"} <= names
    assert config_lib.list_configs() == sorted(names)


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_every_bundled_config_loads(path: Path) -> None:
    cfg = config_lib.load(path)
    assert isinstance(cfg, Config)
    by_name = config_lib.load(path.stem)  # a bare name finds the bundled file
    assert by_name == cfg
    # every value written in the file is what the config holds (nothing silently dropped or renamed)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for section, values in raw.items():
        for key, value in values.items():
            held = getattr(getattr(cfg, section), key)
            if isinstance(held, tuple):  # YAML lists are held as tuples (data.curriculum's stages)
                held = [list(item) if isinstance(item, tuple) else item for item in held]
            assert held == value, f"{path.name}: {section}.{key}"
    # the saved form of a run's config reads back to the same config
    assert config_lib.from_dict(yaml.safe_load(config_lib.to_yaml(cfg))) == cfg


def test_default_is_used_without_a_path() -> None:
    assert config_lib.load() == config_lib.load(config_lib.CONFIG_DIR / "default.yaml")


def test_tiny_values() -> None:
    cfg = config_lib.load("tiny")
    assert (cfg.model.hidden, cfg.data.seq_len, cfg.data.batch_size) == (32, 32, 8)


def test_resolve_config_path() -> None:
    assert config_lib.resolve_config_path("tiny") == config_lib.CONFIG_DIR / "tiny.yaml"
    assert config_lib.resolve_config_path("tiny").is_file()
    assert config_lib.resolve_config_path("my/own.yaml") == Path("my/own.yaml")
    assert config_lib.resolve_config_path("other.yml") == Path("other.yml")


def test_resolve_prefers_an_existing_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").write_text("model: {hidden: 7}\n", encoding="utf-8")
    assert config_lib.resolve_config_path("tiny") == Path("tiny")
    assert config_lib.load("tiny").model.hidden == 7


def test_overrides_are_typed() -> None:
    cfg = config_lib.load(
        "tiny",
        [
            "model.hidden=64",
            "optim.lr=0.01",
            "model.cell=gru",
            "data.encoding=bytes",
            "optim.weight_decay=1e-4",
            "train.seed=7",
            "model.dropout=0.25",
            "optim.lr=5e-3",
        ],
    )
    assert cfg.model.hidden == 64 and type(cfg.model.hidden) is int
    assert cfg.optim.lr == pytest.approx(5e-3) and type(cfg.optim.lr) is float  # last one wins
    assert cfg.optim.weight_decay == pytest.approx(1e-4)
    assert cfg.model.cell == "gru" and cfg.data.encoding == "bytes"
    assert cfg.train.seed == 7 and cfg.model.dropout == 0.25
    # untouched values come from the file
    assert cfg.data.seq_len == 32 and cfg.model.layers == 1


def test_override_adds_a_section_missing_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: {hidden: 16}\n", encoding="utf-8")
    cfg = config_lib.load(path, ["train.steps=3", "model.layers=3"])
    assert (cfg.train.steps, cfg.model.layers, cfg.model.hidden) == (3, 3, 16)


def test_parse_override() -> None:
    assert config_lib.parse_override("model.hidden=128") == (["model", "hidden"], 128)
    assert config_lib.parse_override(" model.cell = gru") == (["model", "cell"], "gru")
    assert config_lib.parse_override("optim.lr=0.5") == (["optim", "lr"], 0.5)


def _msg(excinfo: pytest.ExceptionInfo[ConfigError]) -> str:
    text = str(excinfo.value)
    assert "\n" not in text, "errors are one line"
    return text


@pytest.mark.parametrize(
    "item,suggestion",
    [
        ("model.hiden=3", "model.hidden"),
        ("hidden=3", "model.hidden"),
        ("train.step=5", "train.steps"),
        ("optim.learning_rate=1", None),
        ("seq_len=10", "data.seq_len"),
    ],
)
def test_unknown_override_key_suggests_closest(item: str, suggestion: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        config_lib.load("tiny", [item])
    msg = _msg(info)
    assert f"unknown config key '{item.split('=')[0]}'" in msg
    if suggestion:
        assert f"did you mean '{suggestion}'" in msg
    else:
        assert "did you mean" in msg or "--help" in msg


def test_unknown_key_in_file_suggests_closest(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  hiden: 64\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        config_lib.load(path)
    msg = _msg(info)
    assert "model.hiden" in msg and "did you mean 'model.hidden'" in msg


@pytest.mark.parametrize(
    "item,words",
    [
        ("model.hidden=abc", ["model.hidden", "'abc'", "integer"]),
        ("model.hidden=12.5", ["model.hidden", "12.5"]),
        ("optim.lr=fast", ["optim.lr", "'fast'", "number"]),
        ("model.hidden=0", ["model.hidden", "0", "greater than or equal to 1"]),
        ("model.layers=-1", ["model.layers", "-1"]),
        ("data.batch_size=0", ["data.batch_size"]),
        ("data.seq_len=-5", ["data.seq_len"]),
        ("train.steps=0", ["train.steps"]),
        ("optim.lr=0", ["optim.lr", "greater than 0"]),
        ("data.val_fraction=1.0", ["data.val_fraction"]),
        ("data.val_fraction=0", ["data.val_fraction"]),
        ("model.dropout=1", ["model.dropout"]),
        ("model.cell=lstmm", ["model.cell", "'lstmm'", "'lstm'", "'gru'", "'rnn'"]),
        ("data.encoding=latin-1", ["data.encoding", "'utf-8'", "'bytes'"]),
        ("data.batching=shuffle", ["data.batching", "'stream'", "'random'"]),
        ("train.steps=yes", ["train.steps", "boolean"]),  # YAML reads yes/true/on as booleans, not 1
        ("optim.lr=true", ["optim.lr", "boolean"]),
        ("model.dropout=off", ["model.dropout", "boolean"]),
    ],
)
def test_invalid_values(item: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        config_lib.load("tiny", [item])
    msg = _msg(info)
    assert "invalid value" in msg
    for w in words:
        assert w in msg, (w, msg)


def test_invalid_literal_lists_allowed_values() -> None:
    with pytest.raises(ConfigError) as info:
        config_lib.load("tiny", ["model.cell=lstmm"])
    assert "allowed" in info.value.hint


def test_override_without_equals() -> None:
    with pytest.raises(ConfigError) as info:
        config_lib.load("tiny", ["model.hidden"])
    msg = _msg(info)
    assert "'model.hidden'" in msg and "=" in msg and "section.key=value" in msg


def test_yaml_syntax_error_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  hidden: 32\n  cell: [lstm\ntrain:\n  steps: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        config_lib.load(path)
    msg = _msg(info)
    assert "YAML" in msg and str(path) in msg
    line = int(msg.split(" at line ")[1].split(":")[0])
    assert line in (3, 4), msg  # the open bracket is on line 3, the parser notices on line 4


def test_yaml_bad_indentation_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "indent.yaml"
    path.write_text("model:\n  hidden: 32\n   layers: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        config_lib.load(path)
    assert " at line 3" in _msg(info)


@pytest.mark.parametrize("text", ["- model\n- train\n", "just a string\n", "42\n"])
def test_non_mapping_yaml_rejected(tmp_path: Path, text: str) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="not a mapping"):
        config_lib.load(path)


def test_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        config_lib.load(path)
    assert "'model'" in _msg(info)
    with pytest.raises(ConfigError, match="not a mapping"):
        config_lib.load(path, ["model.hidden=4"])


@pytest.mark.parametrize("text", ["", "# comments only\n"])
def test_an_empty_file_is_an_error_not_silently_every_default(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="is empty"):
        config_lib.load(path)
    path.write_text("{}\n", encoding="utf-8")  # an explicit empty mapping still means every default
    assert config_lib.load(path) == Config()


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config_lib.load(tmp_path / "nope.yaml")
    msg = _msg(info)
    assert "not found" in msg and "tiny" in msg  # lists the bundled configs
    with pytest.raises(ConfigError, match="not found"):
        config_lib.load("no-such-bundled-config")


def test_config_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        config_lib.load(tmp_path)


def test_describe_covers_every_key() -> None:
    rows = config_lib.describe()
    keys = [k for k, _, _ in rows]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(config_lib._field_paths())
    defaults = Config()
    for key, default, desc in rows:
        section, name = key.split(".")
        assert desc.strip(), f"{key} has no description"
        assert default == repr(getattr(getattr(defaults, section), name)), key
    for section in Config.model_fields:
        for name in type(getattr(defaults, section)).model_fields:
            assert f"{section}.{name}" in keys


def test_config_is_frozen_and_hashable() -> None:
    cfg = config_lib.load("tiny")
    with pytest.raises(Exception):  # noqa: B017 (pydantic's frozen-instance error)
        cfg.model.hidden = 3  # type: ignore[misc]
    assert hash(cfg) == hash(config_lib.load("tiny"))


def test_a_bundled_corpus_gets_the_config_named_after_it(tmp_path: Path) -> None:
    from charlstm.training import configure

    assert configure.training_config(None, [])[0] == config_lib.load("default")  # the essay corpus's
    assert configure.training_config(None, [], corpus="essay")[0] == config_lib.load("default")
    assert configure.training_config(None, [], corpus="languages")[0] == config_lib.load("languages")
    assert configure.training_config("tiny", [], corpus="languages")[0] == config_lib.load("tiny")
    # a file of your own that happens to share a bundled config's name is not a bundled corpus
    (tmp_path / "languages").write_text("hello\n" * 50)
    assert configure.training_config(None, [], corpus=tmp_path / "languages")[0] == config_lib.load("default")
