"""The config a training run will use: a new run's (a YAML file or bundled name, with overrides), a resumed
run's own, or a fine-tuning run's (another run's model section). JAX-free, so the command line settles the
config, and reports its errors, before it starts JAX or joins a multi-process job."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from charlstm import config as config_lib
from charlstm import resources
from charlstm.config import Config
from charlstm.errors import UsageError
from charlstm.training import budget, rundir

Overrides = Mapping[str, object] | Sequence[str] | None  # {"model.hidden": 64} or ["model.hidden=64"]


def training_config(
    config: str | os.PathLike[str] | None = None,
    overrides: Overrides = None,
    *,
    resume: str | os.PathLike[str] | None = None,
    runs_dir: str | os.PathLike[str] = "runs",
    init_from: str | os.PathLike[str] | None = None,
    corpus: str | os.PathLike[str] | None = None,
) -> tuple[Config, rundir.RunDir | None]:
    """The config a training run will use, and the run to resume (None for a new run); JAX-free.

    `config` is a YAML file or a bundled name (None: the config named after a bundled `corpus`, else default;
    with a time budget on a `corpus` that is not bundled, auto: the model sized for the budget, see `sizing`).
    A resumed run keeps its own config, with `overrides` applied on top: a `config` given with `resume` is a
    usage error. A run that starts from `init_from`'s weights (fine-tuning) takes that run's model section and
    data.encoding, the rest from `config`; overrides may change model keys that leave the weights' shapes alone
    (e.g. model.dropout).
    The first half of `train`: the command line calls it before joining a multi-process job, so config errors
    come first.
    """
    items = override_items(overrides)
    if resume is not None and init_from is not None:
        raise UsageError(
            "--resume and --init-from both given",
            "--resume continues a run; --init-from starts a new one from a run's weights",
        )
    if resume is not None and config is not None:
        raise UsageError(
            "--resume and --config both given",
            "a resumed run keeps its own config: drop --config (--set KEY=VALUE still changes a key)",
        )
    if resume is not None:
        run = rundir.resolve(str(resume), Path(runs_dir))
        # The run's own config, read as a saved one (keys it predates keep the behaviour it was trained with);
        # a file that cannot be read is the run's damage (RunError), an override that does not apply is usage.
        cfg = run.read_config()
        if items:
            cfg = config_lib.load(run.config_file, items, saved=True)
    elif init_from is not None:
        cfg = fine_tuning_config(config, items, rundir.resolve(str(init_from), Path(runs_dir)))
        run = None
    else:
        cfg, run = config_lib.load(config or _config_for(corpus), items), None
        if config is None and cfg.train.time is not None and not _bundled(corpus):
            cfg = config_lib.load("auto", items)
    if cfg.model.auto_size and cfg.train.time is None:
        raise UsageError("model.auto_size (--config auto) needs a time budget", "add --time DURATION, e.g. --time 10m")
    if cfg.train.time is not None:
        cfg = budget.for_budget(cfg)
    if cfg.train.tensorboard:
        from charlstm.training import tensorboard

        tensorboard.check_available()
    return cfg, run


def _bundled(corpus: str | os.PathLike[str] | None) -> bool:
    """Whether `corpus` is a bundled corpus (None: the default one), which keeps the config made for it."""
    if corpus is None or str(corpus) == "":
        return True
    path = Path(corpus)
    return not path.exists() and (resources.data_dir("corpora") / f"{corpus}.txt").exists()


def _config_for(corpus: str | os.PathLike[str] | None) -> str:
    """The bundled config a run on `corpus` gets without --config: the one named after a bundled corpus
    (`charlstm train languages` -> configs/languages.yaml), else the default."""
    named = corpus is not None and _bundled(corpus) and (config_lib.CONFIG_DIR / f"{corpus}.yaml").exists()
    return str(corpus) if named else "default"


def fine_tuning_config(config: str | os.PathLike[str] | None, items: list[str], source: rundir.RunDir) -> Config:
    """`config` with `source`'s model section and encoding, then `items`; shape-changing overrides refused."""
    src = source.read_config()
    encoding = source.read_vocab().encoding
    cfg = config_lib.load(
        config or "default", [f"data.encoding={encoding}", *items], sections={"model": src.model.model_dump()}
    )
    changed = [
        f"model.{k}={getattr(cfg.model, k)!r} (the run has {getattr(src.model, k)!r})"
        for k in config_lib.SHAPE_KEYS
        if getattr(cfg.model, k) != getattr(src.model, k)
    ]
    if cfg.data.encoding != encoding:
        changed.append(f"data.encoding={cfg.data.encoding} (the run reads {encoding})")
    if changed:
        raise UsageError(
            f"--init-from {source.path}: the weights cannot take {', '.join(changed)}",
            "drop those --set/--encoding options: the model's shape comes from the run",
        )
    return cfg


def override_items(overrides: Overrides) -> list[str]:
    """{"model.hidden": 64} or ["model.hidden=64"] -> ["model.hidden=64"]; values are written as JSON, which
    YAML reads back with the same type (64, 0.5, true, "lstm")."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    if isinstance(overrides, str):
        raise UsageError(
            f"overrides must be a mapping or a list of KEY=VALUE strings, got the string {overrides!r}",
            'e.g. overrides={"model.hidden": 64}',
        )
    return list(overrides)
