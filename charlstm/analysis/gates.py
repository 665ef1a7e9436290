"""The quantities each cell type records, by name: its gates and states, what `--show` calls them, which are
sigmoid gates, which state is the memory; and how saturated the gates are.

Gate saturation is the share of time a gate is < 0.1 (shut), > 0.9 (open) or in between, as in Karpathy,
Johnson & Fei-Fei, "Visualizing and Understanding Recurrent Networks" (2015).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlstm.errors import UsageError

LONG_NAMES = {
    "i": "input gate i",
    "f": "forget gate f",
    "o": "output gate o",
    "c": "cell state c",
    "h": "hidden state h",
    "r": "reset gate r",
    "z": "update gate z",
}
SHOW = {
    "lstm": {"forget": "f", "input": "i", "output": "o", "cell": "c", "hidden": "h"},
    "gru": {"update": "z", "reset": "r", "hidden": "h"},
    "rnn": {"hidden": "h"},
}
SIGMOID_GATES = {"lstm": ("i", "f", "o"), "gru": ("r", "z"), "rnn": ()}
MEMORY = {"lstm": "c", "gru": "h", "rnn": "h"}  # the state that carries information across time
SATURATED = (0.1, 0.9)
_CELL_NAMES = {"lstm": "an LSTM", "gru": "a GRU", "rnn": "a plain RNN"}


def resolve_show(cell: str, show: str | None) -> str:
    """--show NAME -> the recorded quantity; names another cell type has get an error that says what to use."""
    if show is None:
        return MEMORY[cell]
    name, table = show.strip().lower(), SHOW[cell]
    if name in table:
        return table[name]
    allowed = ", ".join(table)
    if cell == "gru" and name in ("forget", "input"):
        hint = "use --show update (z: how much of the old state it keeps) or --show reset (r)"
        raise UsageError(f"a GRU has no {name} gate", hint)
    if any(name in t for t in SHOW.values()):
        what = "state" if name in ("cell", "hidden") else "gate"
        only = ": it records only the hidden state" if cell == "rnn" else ""
        raise UsageError(
            f"{_CELL_NAMES[cell]} has no {name} {what}{only}", f"use --show {allowed.replace(', ', ', --show ')}"
        )
    raise UsageError(f"unknown --show value '{show}'", f"for {_CELL_NAMES[cell]} run use one of: {allowed}")


# --- gate saturation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Saturation:
    gate: str
    left: float  # share of (step, cell) values < 0.1
    between: float
    right: float  # share > 0.9
    cells_left: int  # cells left-saturated more than half the time
    cells_right: int


def saturation(gates: dict[str, np.ndarray], lo: float = SATURATED[0], hi: float = SATURATED[1]) -> list[Saturation]:
    """For each gate trace [T, H]: how often it is shut, open or in between, overall and per cell."""
    out = []
    for name, g in gates.items():
        left, right = (g < lo).mean(axis=0), (g > hi).mean(axis=0)
        out.append(
            Saturation(
                name,
                float(left.mean()),
                float(1.0 - left.mean() - right.mean()),
                float(right.mean()),
                int((left > 0.5).sum()),
                int((right > 0.5).sum()),
            )
        )
    return out
