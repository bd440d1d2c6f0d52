"""Learning-curve figures for results folders: matplotlib (Agg) PNGs written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ._files import file_mode as _file_mode


def plot_curves(path, xs, series: dict[str, list[float]], xlabel: str = "iteration", title: str = "") -> Path:
    """Writes a PNG with one line per ``series`` entry (matplotlib, Agg backend); returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    for name, values in series.items():
        axis.plot(xs[: len(values)], values, marker="o", markersize=3, label=name)
    axis.set_xlabel(xlabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return save_figure(figure, path)


def save_figure(figure, path) -> Path:
    """Saves a matplotlib ``figure`` as PNG at ``path`` atomically and closes it; returns ``path``."""
    import matplotlib.pyplot as plt

    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(handle)
    try:
        os.chmod(temporary, _file_mode())
        figure.savefig(temporary, format="png")
        os.replace(temporary, path)
    finally:
        plt.close(figure)
        Path(temporary).unlink(missing_ok=True)
    return path
