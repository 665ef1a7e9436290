"""The cells `compare-rnn` trains, sized fairly, and the config each one trains with.

With match="params" every cell gets the hidden width whose total parameter count is closest to the config's
own cell at `model.hidden` (an RNN needs about twice an LSTM's width for the same budget); with
match="hidden" every cell uses `model.hidden`.
"""

from __future__ import annotations

from dataclasses import dataclass

from charlstm import config as config_lib
from charlstm.config import Config
from charlstm.errors import UsageError
from charlstm.nn import cells, model

MIN_EVALS = 4  # validation points per curve, at least (short --steps runs would otherwise get only one)


@dataclass(frozen=True)
class CellSpec:
    cell: str
    hidden: int
    params: int


def model_param_count(
    cell: str,
    layers: int,
    hidden: int,
    vocab_size: int,
    embed: int = 0,
    learned_start: bool = True,
    *,
    tie_embed: bool = False,
    layer_norm: bool = False,
) -> int:
    """Parameters of the whole model (embedding, layers, head and start state), as `model.param_count` would
    count them. A tied head reads the embedding table, which is then `hidden` wide; layer norm adds gains for
    the gate pre-activations and the cell state's gain and shift to every layer."""
    if tie_embed:
        embed = hidden
    norm = 2 * cells.GATES[cell] * hidden + 2 * hidden if layer_norm else 0
    first = cells.layer_param_count(cell, embed or vocab_size, hidden) + norm + vocab_size * embed
    rest = (layers - 1) * (cells.layer_param_count(cell, hidden, hidden) + norm)
    start = layers * len(model.state_names(cell)) * hidden if learned_start else 0
    head = (0 if tie_embed else hidden * vocab_size) + vocab_size
    return first + rest + head + start


def match_hidden(
    cell: str,
    target: int,
    layers: int,
    vocab_size: int,
    embed: int = 0,
    max_hidden: int = 8192,
    *,
    tie_embed: bool = False,
    layer_norm: bool = False,
) -> int:
    """The hidden width whose parameter count is closest to `target` (the count grows with the width)."""

    def count(h: int) -> int:
        return model_param_count(cell, layers, h, vocab_size, embed, tie_embed=tie_embed, layer_norm=layer_norm)

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
    options = {"tie_embed": m.tie_embed, "layer_norm": m.layer_norm}
    target = model_param_count(m.cell, m.layers, m.hidden, vocab_size, m.embed, **options)
    plan = []
    for name in names:
        h = (
            m.hidden
            if match == "hidden" or name == m.cell
            else match_hidden(name, target, m.layers, vocab_size, m.embed, **options)
        )
        plan.append(CellSpec(name, h, model_param_count(name, m.layers, h, vocab_size, m.embed, **options)))
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
