"""The configuration schema, YAML loading and `--set section.key=value` overrides.

Config is data: a frozen pydantic model per section, validated once at load time so that the rest of the
code can trust every value. This module must not import JAX (it is read by the CLI before JAX starts).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_serializer, field_validator

from charlstm import resources
from charlstm.errors import ConfigError

CONFIG_DIR = resources.data_dir("configs")
# The seeds charlstm takes, everywhere (train.seed, sample --seed, serve): what a JAX PRNG key holds, 32 bits.
MAX_SEED = (1 << 32) - 1


_DURATION = re.compile(r"(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m)?(?:(\d+(?:\.\d*)?)s)?|(\d+(?:\.\d*)?)")
MAX_DURATION = 7 * 24 * 3600.0


def parse_duration(text: str) -> float:
    """ "90s", "10m", "1h30m", "1.5h" or a bare number of seconds -> seconds; a ValueError says what is wrong."""
    match = _DURATION.fullmatch(text.strip().lower().replace(" ", ""))
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration: write 90s, 10m, 1h30m or a number of seconds")
    h, m, s, bare = (float(g) if g else 0.0 for g in match.groups())
    seconds = 3600 * h + 60 * m + s + bare
    if not 0 < seconds <= MAX_DURATION:
        raise ValueError(f"{text!r}: a duration must be more than 0 and at most 7 days")
    return seconds


class _Section(BaseModel):
    # Unknown keys are typos; frozen so a config can be hashed and closed over by jitted functions.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # Lax mode reads true/yes/on as 1 for numbers (`--set train.steps=yes` would train one step).
        annotation = cls.model_fields[info.field_name].annotation  # type: ignore[index]  # field validators have one
        if isinstance(value, bool) and annotation in (int, float):
            raise ValueError("input should be a number, not a boolean")
        return value


class ModelConfig(_Section):
    cell: Literal["lstm", "gru", "rnn"] = Field("lstm", description="recurrent cell type")
    layers: int = Field(2, ge=1, le=16, description="number of stacked recurrent layers")
    hidden: int = Field(256, ge=1, le=8192, description="hidden units per layer")
    embed: int = Field(0, ge=0, le=8192, description="learned character embedding size (0: one-hot input)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout between layers and before the head")
    forget_bias: float = Field(1.0, description="initial LSTM forget-gate bias (remembers by default)")
    compute_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="matmul input dtype; bfloat16 keeps fp32 accumulation and fp32 master weights"
    )
    init_hh: Literal["uniform", "orthogonal"] = Field(
        "uniform", description="W_hh initialisation: PyTorch's uniform, or an orthogonal matrix per gate"
    )
    layer_norm: bool = Field(False, description="layer-normalised LSTM (gate pre-activations and cell state)")
    recurrent_dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="variational dropout on h where it enters W_hh (one mask per sequence)"
    )
    weight_drop: float = Field(
        0.0, ge=0.0, lt=1.0, description="DropConnect on W_hh: drop recurrent weights, one mask per training step"
    )
    input_dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="hide input characters at this rate (layer 0 sees only its bias there)"
    )
    dropout_ramp: int = Field(
        0,
        ge=0,
        description="steps over which every dropout rate (output, recurrent, weight, input) rises "
        "linearly from 0 to its value: learn fast first, regularise once overfitting can start "
        "(0: full rates from step 0)",
    )
    tie_embed: bool = Field(False, description="share the embedding table with the output head (needs embed = hidden)")
    auto_size: bool = Field(
        False,
        description="choose layers, hidden, dropout, DropConnect, weight decay and matmul dtype from the corpus size "
        "and this machine's speed for the train.time budget (--config auto; the run's saved config holds the choice)",
    )
    start_state: Literal["learned", "zeros"] = Field(
        "learned",
        description="the state every sequence starts from (sampling, eval, inspect, reset training "
        "streams): a learned h0/c0 per layer, or zeros",
    )

    @field_validator("layer_norm")
    @classmethod
    def _layer_norm_needs_lstm(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("cell") != "lstm":
            raise ValueError("layer_norm is implemented for model.cell=lstm only")
        return value

    @field_validator("tie_embed")
    @classmethod
    def _tie_needs_matching_sizes(cls, value: bool, info: ValidationInfo) -> bool:
        embed, hidden = info.data.get("embed"), info.data.get("hidden")
        if value and embed != hidden:
            raise ValueError(f"tie_embed needs model.embed equal to model.hidden ({hidden}), got embed={embed}")
        return value


# The model keys that decide which parameters there are and their shapes (a fine-tuning run keeps them).
SHAPE_KEYS = ("cell", "layers", "hidden", "embed", "tie_embed", "layer_norm", "start_state")


class DataConfig(_Section):
    seq_len: int = Field(100, ge=1, le=100_000, description="characters per training window (BPTT length)")
    batch_size: int = Field(64, ge=1, le=65_536, description="parallel streams per step")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="share of the corpus held out at its end")
    encoding: Literal["utf-8", "bytes"] = Field("utf-8", description="characters (utf-8) or raw bytes")
    batching: Literal["stream", "random"] = Field(
        "stream", description="contiguous streams with carried state, or random windows from the start state"
    )
    line_restarts: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="stream batching: share of each batch's rows that read every window from "
        "the start state at a random line start, as `sample` reads a prompt (the rest are carried streams)",
    )
    curriculum: tuple[tuple[int, float], ...] = Field(
        (),
        description="stream batching: [step, share] stages; from each stage's step on, read only the first "
        "share of the training text (for text ordered from easy to hard; empty: all of it throughout). The "
        "stages are steps: a --time run whose steps end before the last stage says so",
    )

    @field_serializer("curriculum")
    def _stages_as_lists(self, value: tuple[tuple[int, float], ...]) -> list[list[float]]:
        return [list(stage) for stage in value]  # as YAML and JSON write them, so a saved config reads back equal

    @field_validator("curriculum")
    @classmethod
    def _stages_in_order(cls, value: tuple[tuple[int, float], ...]) -> tuple[tuple[int, float], ...]:
        steps = [first for first, _ in value]
        if value and (steps[0] != 0 or steps != sorted(set(steps))):
            raise ValueError("stages must start at step 0 and go up, e.g. [[0, 0.2], [1000, 1.0]]")
        if any(not 0 < share <= 1 for _, share in value):
            raise ValueError("each stage's share must be in (0, 1]")
        return value


class OptimConfig(_Section):
    lr: float = Field(2e-3, gt=0.0, le=10.0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW decoupled weight decay")
    warmup_steps: int = Field(100, ge=0, description="linear warmup steps")
    schedule: Literal["cosine", "constant", "wsd"] = Field(
        "cosine",
        description="after warmup: cosine decay to the end, constant, or wsd (constant, then a cosine decay over "
        "the last decay_fraction of the steps; what a --time budget trains with)",
    )
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="final lr as a fraction of lr (cosine, wsd)")
    decay_fraction: float = Field(0.2, gt=0.0, le=1.0, description="wsd: share of the steps the decay takes")
    clip_norm: float = Field(5.0, ge=0.0, description="global gradient-norm clip (0 disables)")
    b1: float = Field(0.9, ge=0.0, lt=1.0, description="Adam beta1")
    b2: float = Field(0.999, ge=0.0, lt=1.0, description="Adam beta2")
    ema: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="decay of a moving average of the weights, which evaluation, sampling and export then use (0: off)",
    )


class TrainConfig(_Section):
    steps: int = Field(2000, ge=1, description="optimizer steps (with train.time: chosen to fit the budget)")
    time: str | None = Field(
        None,
        description="time budget (90s, 10m, 1h30m), counted from the command's start: the steps are chosen from "
        "the measured step time to end within it, with the learning rate annealed (null: train.steps)",
    )
    eval_every: int = Field(200, ge=1, description="steps between validation passes")
    eval_batches: int = Field(20, ge=1, description="most validation batches per evaluation")
    log_every: int = Field(10, ge=1, description="steps between metric log lines")
    sample_length: int = Field(200, ge=0, description="characters of the sample printed at each evaluation (0: none)")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed for init, dropout and batch order (0..2^32-1)")
    max_bad_steps: int = Field(10, ge=1, description="stop after this many consecutive non-finite steps (none applied)")
    prompt_check: bool = Field(
        True,
        description="after training on an annotated corpus (the bundled one), sample "
        "each place's prompts and report how often the right language follows",
    )
    patience: int = Field(
        0,
        ge=0,
        description="stop once this many evaluations in a row have not lowered the best "
        "validation loss; the best checkpoint is kept (0: off, train all steps)",
    )
    tensorboard: bool = Field(
        False,
        description='also write TensorBoard event files to runs/<name>/tb/ (needs pip install "charlstm[tensorboard]")',
    )

    @field_validator("time", mode="before")
    @classmethod
    def _a_duration(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError("a duration such as 90s, 10m or 1h30m")
        parse_duration(str(value))
        return str(value).strip()


class CheckpointConfig(_Section):
    every: int = Field(500, ge=1, description="steps between checkpoints")
    keep: int = Field(3, ge=1, description="most recent checkpoints kept (plus the best)")


class DistConfig(_Section):
    # Per process, so one config serves a 1-GPU workstation and a job of 8-GPU hosts alike.
    devices: int = Field(
        0, ge=0, le=65_536, description="devices per process the batch is split across (0: all local devices)"
    )


class Config(_Section):
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    dist: DistConfig = DistConfig()


def _field_paths(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every valid dotted key, for error messages and suggestions."""
    paths = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            paths += _field_paths(ann, f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, _field_paths(), n=1, cutoff=0.5)
    if not close:  # a bare key like "hidden" should still find "model.hidden"
        close = [p for p in _field_paths() if p.split(".")[-1] == key.split(".")[-1]][:1]
    return f"did you mean '{close[0]}'?" if close else "`charlstm config show` lists every key"


def _explain(err: ValidationError) -> ConfigError:
    """Turn pydantic's report into one line naming the key and the allowed values."""
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        return ConfigError(f"unknown config key '{key}'", _suggest(key))
    ctx = e.get("ctx", {})
    if e["type"] == "literal_error":
        return ConfigError(f"invalid value {e['input']!r} for '{key}'", f"allowed: {ctx.get('expected')}")
    return ConfigError(f"invalid value {e['input']!r} for '{key}': {e['msg'].lower()}", "fix the value")


def from_dict(data: dict[str, Any]) -> Config:
    """Validate a nested dict into a Config (raises ConfigError)."""
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise _explain(err) from None


# Keys added after runs were saved without them, with the value that reproduces what those runs did.
_SAVED_DEFAULTS: dict[str, dict[str, Any]] = {"model": {"start_state": "zeros"}}


def from_saved(data: dict[str, Any]) -> Config:
    """A run's saved config (config.yaml or checkpoint metadata): as `from_dict`, reading a key the run
    predates as the behaviour it was trained with, not today's default."""
    data = {**data}
    for section, keys in _SAVED_DEFAULTS.items():
        if isinstance(data.get(section), dict):
            data[section] = {**keys, **data[section]}
    return from_dict(data)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, reporting syntax errors with their line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}", f"configs available: {list_configs()}") from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as err:
        raise ConfigError(f"cannot read config {path}: {err.__class__.__name__}", "pass a YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise ConfigError(f"YAML error in {path}{where}: {problem}", "fix the YAML syntax") from None
    if data is None:  # an empty file would otherwise mean every default, silently
        raise ConfigError(
            f"config {path} is empty",
            "write sections like 'model:' and 'train:', or leave out --config for the default",
        )
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} is not a mapping", "write sections like 'model:' and 'train:'")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse 'section.key=value'; the value is read as YAML so numbers and booleans get their types."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' has no '='", "write it as section.key=value, e.g. model.hidden=128")
    key, raw = item.split("=", 1)
    key = key.strip()
    if key not in _field_paths():
        raise ConfigError(f"unknown config key '{key}' in --set", _suggest(key))
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def resolve_config_path(name_or_path: str | os.PathLike[str]) -> Path:
    """Accept a path, or a bare name of a bundled config ('tiny' -> configs/tiny.yaml)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in {".yaml", ".yml"} or len(path.parts) > 1:
        return path
    return CONFIG_DIR / f"{name_or_path}.yaml"


def load(
    path: str | os.PathLike[str] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    saved: bool = False,
    sections: dict[str, dict[str, Any]] | None = None,
) -> Config:
    """Load a config file (default: configs/default.yaml), apply overrides, validate. `saved`: the file is a
    run's own config.yaml (see `from_saved`). `sections` replace the file's sections of the same name before
    the overrides apply (fine-tuning takes the model section of the run it starts from)."""
    data = read_yaml(resolve_config_path(path) if path else CONFIG_DIR / "default.yaml")
    data.update(sections or {})
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ConfigError(f"config section '{k}' is not a mapping", "fix the config file")
            node = child
        node[keys[-1]] = value
    return from_saved(data) if saved else from_dict(data)


def to_yaml(cfg: Config) -> str:
    """The fully resolved config, as saved next to a run."""
    return yaml.safe_dump(cfg.model_dump(), sort_keys=False)


def list_configs() -> list[str]:
    """Names of the bundled configs."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def describe() -> list[tuple[str, str, str]]:
    """(key, default, description) for every config key: `config show` and docs/configuration.md."""
    rows = []
    for section, field in Config.model_fields.items():
        for name, f in field.annotation.model_fields.items():  # type: ignore[union-attr]  # every section is a model
            rows.append((f"{section}.{name}", repr(f.default), f.description or ""))
    return rows
