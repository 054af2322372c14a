"""Tables and plots that runs write next to their records (matplotlib, headless)."""

from __future__ import annotations

import math
from pathlib import Path


def grid_table(grid, rows, cols, corner: str) -> str:
    """Markdown table of grid[i][j] (rows x cols) in percent."""
    head = f"| {corner} | " + " | ".join(str(c) for c in cols) + " |"
    sep = "|---" * (len(cols) + 1) + "|"
    label = lambda r: f"{r:g}" if isinstance(r, (int, float)) else str(r)  # noqa: E731
    body = ["| " + f"{label(r)} | " + " | ".join("-" if math.isnan(v) else f"{100 * v:.0f}" for v in line) + " |"
            for r, line in zip(rows, grid)]
    return "\n".join([head, sep, *body])


def heatmap(grid, rows, cols, path, title: str = "", xlabel: str = "context length (tokens)",
            ylabel: str = "depth (%)") -> Path:
    """Red-yellow-green heatmap of scores in [0, 1]: rows on y, cols on x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label_w = 0.09 * max(len(str(r)) for r in rows)  # long row labels (task names) need room
    fig, ax = plt.subplots(figsize=(max(4.0, 2.0 + label_w + 0.8 * len(cols)), max(2.6, 1.2 + 0.45 * len(rows))),
                           layout="constrained")
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [f"{r:g}" if isinstance(r, (int, float)) else str(r) for r in rows])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
