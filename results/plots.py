"""Bar charts of a table: one panel per data set, whiskers for the 95% interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cells import dataset_label, rich_modality
from .tables import Table, row_names


def plot(table: Table, path: Path, published: bool = False) -> Path | None:
    """Horizontal bars, one panel per data set (methods down the side, one bar per modality column), sized
    for a printed page whatever the number of columns: 2.4 in per panel, 0.2 in per bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = table.columns
    # rows with no result in any column (a variant the plan did not run) take no room in the plot
    shown = [(k, name) for (k, _, _), name in zip(table.rows, row_names(table))
             if any(table.cells[(k, c)].mean is not None for c in cols)]
    if not cols or not shown:
        return None
    datasets = list(dict.fromkeys(d for d, _ in cols))
    mods = {d: [m for dd, m in cols if dd == d] for d in datasets}
    widest = max(len(v) for v in mods.values())
    fig, axes = plt.subplots(1, len(datasets), sharey=True, squeeze=False,
                             figsize=(1.4 + 2.4 * len(datasets), 1.4 + 0.2 * len(shown) * widest))
    y = np.arange(len(shown))
    seeds = sorted({table.cells[(k, c)].n for k, _ in shown for c in cols if table.cells[(k, c)].mean is not None})
    for ax, d in zip(axes[0], datasets):
        _panel(ax, table, d, mods[d], [k for k, _ in shown], y)
    axes[0][0].set_yticks(y)
    axes[0][0].set_yticklabels([name for _, name in shown], fontsize=8)
    axes[0][0].invert_yaxis()  # the table's first row on top
    n = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    if published:
        fig.supxlabel(f"{table.metric}: the paper's published means (no per-seed values, so no intervals)", fontsize=8)
    else:
        fig.supxlabel(f"{table.metric}: bar = mean over {n} seed(s); whisker = 95% t interval of the mean"
                      + (" (none with one seed)" if seeds and seeds[0] < 2 else ""), fontsize=8)
    fig.suptitle(table.title().split(",")[0], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=150, bbox_inches="tight")  # a title wider than a one-panel figure stays whole
    plt.close(fig)
    return path


def _panel(ax, table: Table, dataset: str, mods: list[str], keys: list[str], y: np.ndarray) -> None:
    """One data set's panel: a bar per row and modality column, whiskers where an interval exists."""
    h = 0.8 / len(mods)
    for j, m in enumerate(mods):
        cells = [table.cells[(k, (dataset, m))] for k in keys]
        at = y + (j - (len(mods) - 1) / 2) * h
        # a missing cell is a gap (no bar), never a zero-length bar
        present = [i for i, c in enumerate(cells) if c.mean is not None]
        label = f"{(rich_modality(dataset) or '?').upper()}→{m.upper()}" if table.number == 1 else m.upper()
        ax.barh(at[present], [cells[i].mean for i in present], h, label=label, alpha=0.9)
        # whiskers only where an interval exists (two seeds or more): no zero-width caps
        ci = [i for i in present if cells[i].ci]
        if ci:
            # clipped at 0: seeds with one identical F1 give an interval that float rounding puts a hair off the mean
            lo = [max(0.0, cells[i].mean - cells[i].ci[0]) for i in ci]
            hi = [max(0.0, cells[i].ci[1] - cells[i].mean) for i in ci]
            ax.errorbar([cells[i].mean for i in ci], at[ci], xerr=[lo, hi], fmt="none", ecolor="black",
                        elinewidth=0.8, capsize=2.5)
    ax.set_title(dataset_label(dataset), fontsize=10, pad=20)
    # F1 lives in [0, 100]; a t interval may reach past 100 and keeps its cap in view
    tops = [table.cells[(k, (dataset, m))].ci[1] for k in keys for m in mods if table.cells[(k, (dataset, m))].ci]
    ax.set_xlim(0, max([100.0] + [t + 2 for t in tops]))
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(axis="x", labelsize=8)
    # the legend between the panel's title and its bars: it never hides a bar
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(mods), frameon=False,
              handlelength=1.2, borderaxespad=0.2)
