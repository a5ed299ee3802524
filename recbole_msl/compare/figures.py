"""Charts as PNG files: matplotlib without a display, and a figure written atomically."""

from __future__ import annotations

import io

from ..files import write_atomic


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display needed)."""
    # lazy: matplotlib, only where a chart is drawn; the backend must be chosen before pyplot is imported
    import matplotlib

    matplotlib.use("Agg", force=True)
    # lazy: matplotlib's pyplot, after the backend above
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str) -> None:
    """Write ``fig`` to ``path`` as PNG (atomically: a reader sees the old chart or the new one) and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    write_atomic(path, buffer.getvalue())
