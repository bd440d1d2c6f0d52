"""Learning-curve figures for results folders: matplotlib (Agg) PNGs written atomically.

matplotlib is optional: :func:`have_matplotlib` says whether it imports, and
:func:`warn_plot_skipped` tells the user which figure was skipped and how to get it.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from ._files import file_mode as _file_mode

INSTALL_HINT = "pip install matplotlib (or install l2l_multi with the [examples] extra)"


class Curves(NamedTuple):
    """One panel of a learning-curve figure, drawn from a results folder's metrics columns.

    Attributes:
        ylabel: the y-axis label, e.g. ``"accuracy (%)"``.
        columns: metrics column -> legend label, e.g. ``{"valid_accuracy": "validation"}``.
        bands: metrics column -> the column holding its 95% interval half-width, drawn as a
            shaded band around that line.
        scale: multiplies every value (and half-width), e.g. 100 for fractions shown in percent.
        limits: the y-axis range, e.g. ``(0, 100)``; None: matplotlib's choice.
        references: legend label -> a value drawn as a dashed horizontal line (chance level, a
            published number), already in the panel's scale.
    """

    ylabel: str
    columns: Mapping[str, str]
    bands: Mapping[str, str] = {}
    scale: float = 1.0
    limits: tuple[float, float] | None = None
    references: Mapping[str, float] = {}


class Panel(NamedTuple):
    """One panel with its values: ``lines`` legend label -> float values (one per x),
    ``bands`` legend label -> half-widths drawn around that line; ``limits`` and ``references``
    as in :class:`Curves`."""

    ylabel: str
    lines: Mapping[str, Sequence[float]]
    bands: Mapping[str, Sequence[float]] = {}
    limits: tuple[float, float] | None = None
    references: Mapping[str, float] = {}


def have_matplotlib() -> bool:
    """Whether matplotlib imports (the figures are skipped without it)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def warn_plot_skipped(path) -> None:
    """Warns (``RuntimeWarning``) that the figure ``path`` was not drawn and how to get it."""
    warnings.warn(
        f"matplotlib is not installed, so the plot {path} was skipped (every other result is written); "
        f"to draw it: {INSTALL_HINT}",
        RuntimeWarning,
        stacklevel=3,
    )


def plot_curves(path, xs, series: dict[str, list[float]], xlabel="iteration", title="", ylabel="") -> Path:
    """Writes a PNG with one line per ``series`` entry (legend label -> values at ``xs``); returns
    ``path``. Needs matplotlib."""
    return plot_panels(path, xs, [Panel(ylabel, series)], xlabel=xlabel, title=title)


def plot_panels(path, xs: Sequence[float], panels: Sequence[Panel], xlabel="iteration", title="") -> Path:
    """Writes a PNG with one axes per :class:`Panel`, side by side, sharing ``xs`` and ``title``;
    a line with a band gets a shaded ``value +- half-width`` region (say so in its legend label).
    A line may have fewer values than ``xs`` (its first ones). Returns ``path``. Needs matplotlib.

    Example:
        >>> import tempfile
        >>> panel = Panel("accuracy (%)", {"validation": [50.0, 60.0]}, {"validation": [5.0, 4.0]})
        >>> file = plot_panels(tempfile.mkdtemp() + "/curve.png", [1, 2], [panel])
        >>> file.read_bytes()[:4]
        b'\\x89PNG'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4), dpi=100, squeeze=False)
    for axis, panel in zip(axes[0], panels):
        for label, values in panel.lines.items():
            x = list(xs[: len(values)])
            (line,) = axis.plot(x, values, marker="o", markersize=3, label=label)
            if label in panel.bands:
                half = panel.bands[label][: len(values)]
                low = [v - h for v, h in zip(values, half)]
                high = [v + h for v, h in zip(values, half)]
                alpha = 0.2 if len(panel.bands) == 1 else 0.1  # overlapping bands stay readable
                axis.fill_between(x, low, high, color=line.get_color(), alpha=alpha, linewidth=0)
        for (label, value), style in zip(panel.references.items(), ("--", ":", "-.")):
            axis.axhline(value, color="grey", linestyle=style, linewidth=1, label=label)
        if panel.limits is not None:
            axis.set_ylim(*panel.limits)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations are counts
        axis.set_xlabel(xlabel)
        axis.set_ylabel(panel.ylabel)
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.suptitle(title)
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
