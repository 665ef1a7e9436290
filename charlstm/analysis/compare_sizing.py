"""The cells `compare-rnn` trains, sized fairly, and the config each one trains with.

With match="params" every cell gets the hidden width whose total parameter count is closest to the config's
own cell at `model.hidden` (an RNN needs about twice an LSTM's width for the same budget); with
match="hidden" every cell uses `model.hidden`.
"""

from __future__ import annotations

from dataclasses import dataclass

from charlstm import config as config_lib
from charlstm.config import Config, ModelConfig
from charlstm.errors import UsageError
from charlstm.nn import model

MIN_EVALS = 4  # validation points per curve, at least (short --steps runs would otherwise get only one)


@dataclass(frozen=True)
class CellSpec:
    cell: str
    hidden: int
    params: int


def sized(cfg: ModelConfig, cell: str, hidden: int) -> ModelConfig:
    """`cfg` with this cell and width (a tied embedding table is as wide as the layer)."""
    return cfg.model_copy(update={"cell": cell, "hidden": hidden, **({"embed": hidden} if cfg.tie_embed else {})})


def match_hidden(cfg: ModelConfig, cell: str, target: int, vocab_size: int, max_hidden: int = 8192) -> int:
    """The hidden width of `cell` (otherwise `cfg`) whose parameter count is closest to `target` (the count grows
    with the width)."""

    def count(h: int) -> int:
        return model.param_count_of(sized(cfg, cell, h), vocab_size)

    lo, hi = 1, max_hidden
    while lo < hi:  # smallest width reaching the target
        mid = (lo + hi) // 2
        if count(mid) < target:
            lo = mid + 1
        else:
            hi = mid
    options = [h for h in (lo - 1, lo) if h >= 1]
    return min(options, key=lambda h: abs(count(h) - target))


def plan_cells(cfg: Config, names: tuple[str, ...], vocab_size: int, match: str = "params") -> list[CellSpec]:
    """Hidden width and parameter count per cell; the config's cell at model.hidden sets the budget."""
    if match not in ("params", "hidden"):
        raise UsageError(f"invalid --match {match!r}", "use params or hidden")
    m = cfg.model
    for name in names:  # a cell the config's options do not fit (layer_norm on a GRU) is refused first
        cell_config(cfg, CellSpec(name, m.hidden, 0))
    target = model.param_count_of(m, vocab_size)
    plan = []
    for name in names:
        h = m.hidden if match == "hidden" or name == m.cell else match_hidden(m, name, target, vocab_size)
        plan.append(CellSpec(name, h, model.param_count_of(sized(m, name, h), vocab_size)))
    return plan


def cell_config(cfg: Config, spec: CellSpec, clip: bool = True) -> Config:
    """The config one cell trains with: its cell and width, clipping as asked, enough validation points.
    Validated like any config (raises ConfigError), so a cell the config's options do not fit is refused."""
    data = cfg.model_dump()
    data["model"].update(cell=spec.cell, hidden=spec.hidden)
    if cfg.model.tie_embed:  # the tied head reads the embedding table, as wide as the layer
        data["model"]["embed"] = spec.hidden
    if not clip:
        data["optim"]["clip_norm"] = 0.0
    data["train"]["eval_every"] = min(cfg.train.eval_every, max(1, cfg.train.steps // MIN_EVALS))
    return config_lib.from_dict(data)
