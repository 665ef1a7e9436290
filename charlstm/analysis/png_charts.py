"""PNG charts with matplotlib: a comparison's charts (`compare-rnn --out`) and the loss curves of runs
(`charlstm plot --out FILE.png`), the same charts `plots` draws in the terminal.

matplotlib is optional (`pip install 'charlstm[plots]'`): it is imported only when a PNG is written, and its
absence is a `UserError` that says how to install it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charlstm.errors import UserError

if TYPE_CHECKING:
    from charlstm.analysis.compare import CompareResult
    from charlstm.analysis.runs import Curves as RunCurves

MPL_COLORS = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
MPL_RUN_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:olive", "tab:purple", "tab:cyan", "tab:orange", "tab:gray")
MPL_RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def matplotlib_figure(instead: str) -> type:
    """matplotlib's Figure, or a UserError that says how to install it (`instead`: what else the user can do)."""
    try:
        from matplotlib.figure import Figure  # the object API: no pyplot state, no GUI backend
    except ImportError:
        raise UserError(
            "PNG charts need matplotlib, which is not installed",
            f'pip install "charlstm[plots]" (or matplotlib), or {instead}',
        ) from None
    return Figure


def save_runs_png(
    curves: Sequence[RunCurves], path: Path, *, x: str = "steps", log_y: bool = False, smooth: float = 0.6
) -> None:
    """`plots.runs_chart` as a PNG: raw training loss faint, smoothed solid, validation dashed with markers."""
    from charlstm.analysis.runs import ema

    fig = matplotlib_figure("write a .csv instead")(figsize=(9, 5))
    ax = fig.add_subplot()
    for k, c in enumerate(curves):
        col, mark = MPL_RUN_COLORS[k % len(MPL_RUN_COLORS)], MPL_RUN_MARKERS[k % len(MPL_RUN_MARKERS)]
        xs = c.x_values(x, False)
        ax.plot(xs, c.loss, color=col, alpha=0.25, lw=0.8)
        ax.plot(xs, ema(c.loss, smooth), color=col, lw=1.6, label=f"{c.name} train")
        ax.plot(c.x_values(x, True), c.val_loss, color=col, ls="--", marker=mark, ms=4, label=f"{c.name} validation")
    if log_y:
        ax.set_yscale("log")
    smoothed = f"EMA {smooth:g}" if smooth > 0 else "raw"
    ax.set(
        xlabel="step" if x == "steps" else "minutes since the run was created",
        ylabel="loss (nats/char)",
        title=f"training loss (faint: raw, solid: {smoothed}) and validation loss",
    )
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}", "choose another --out path") from None


def save_pngs(result: CompareResult, out: Path) -> list[Path]:
    """loss.png, longrange.png (if measured), gradflow.png and grad_norm.png in `out`."""
    Figure = matplotlib_figure("leave out --out")
    written = []

    def save(name: str, fig: Any) -> None:  # a matplotlib Figure
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        written.append(out / name)

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    for r in result.cells:
        col = MPL_COLORS.get(r.spec.cell)
        ax.plot(r.curves.steps, r.curves.loss, color=col, alpha=0.35, lw=0.8)
        ax.plot(r.curves.val_steps, r.curves.val_loss, color=col, marker="o", ms=3, label=f"{r.spec.cell} (val)")
    ax.set(xlabel="step", ylabel="loss (nats/char)", title="train (faint) and validation loss")
    ax.legend()
    save("loss.png", fig)

    if any(r.longrange for r in result.cells):
        from charlstm.evaluation import longrange

        fig = Figure(figsize=(8, 4.5))
        ax = fig.add_subplot()
        labels = [longrange.bucket_label(lo, hi) for lo, hi in longrange.BUCKETS]
        for r in result.cells:
            if r.longrange:
                ax.plot(
                    labels,
                    [b.accuracy for b in r.longrange],
                    marker="o",
                    color=MPL_COLORS.get(r.spec.cell),
                    label=r.spec.cell,
                )
        if result.chance:
            ax.axhline(result.chance, color="gray", ls=":", label="chance")
        ax.set(xlabel="gap (characters)", ylabel="accuracy", ylim=(0, 1.02), title="language-word accuracy by gap")
        ax.legend()
        save("longrange.png", fig)

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    for r in result.cells:
        col = MPL_COLORS.get(r.spec.cell)
        ks = range(1, len(r.grad_final))
        ax.semilogy(ks, r.grad_init[1:], color=col, ls="--", lw=1, label=f"{r.spec.cell} at init")
        ax.semilogy(ks, r.grad_final[1:], color=col, lw=1.5, label=f"{r.spec.cell} trained")
    ax.set(xlabel="k (steps back)", ylabel="|d loss_T / d h_(T-k)|", title="gradient reaching back k steps")
    ax.legend()
    save("gradflow.png", fig)

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    for r in result.cells:
        ax.semilogy(r.curves.steps, r.curves.grad_norm, color=MPL_COLORS.get(r.spec.cell), lw=0.8, label=r.spec.cell)
    ax.set(xlabel="step", ylabel="global gradient norm", title="gradient norm per step (before clipping)")
    ax.legend()
    save("grad_norm.png", fig)
    return written
