"""A run's results folder: config, metrics, checkpoints, results and the learning curve."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

CONFIG, METRICS, RESULTS, CHECKPOINT, CURVE = (
    "config.json",
    "metrics.csv",
    "results.json",
    "checkpoint.pkl",
    "curve.png",
)


def _file_mode() -> int:
    """0o666 less the umask: what ``open()`` would have given (``mkstemp`` makes files 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: Path, data: bytes) -> None:
    """Writes to a temporary file in the same folder, then renames: a reader never sees half a file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(temporary, _file_mode())
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class RunFolder:
    """One run's folder.

    Args:
        path: folder (created with its parents).
        config: JSON-serialisable dict of everything that defines the run; written to
            ``config.json``. With ``resume=True`` it must equal the saved one, except for the keys
            in ``may_change`` (e.g. ``iterations``, to extend a run).
        resume: continue the run in ``path`` from its checkpoint; without it, a folder that already
            holds a run is refused rather than overwritten.

    Example:
        >>> import tempfile
        >>> folder = RunFolder(tempfile.mkdtemp() + "/run", {"seed": 0})
        >>> folder.log_metrics({"iteration": 10, "valid_accuracy": 0.5})
        >>> folder.save_checkpoint({"iteration": 10})
        >>> RunFolder(folder.path, {"seed": 0}, resume=True).load_checkpoint()["iteration"]
        10
    """

    def __init__(self, path, config: dict[str, Any], resume: bool = False, may_change=("iterations",)):
        self.path = Path(path).expanduser()
        self.config = dict(config)
        try:
            config_text = json.dumps(self.config, indent=2, sort_keys=True)
        except TypeError as error:
            raise TypeError(f"config must be JSON-serialisable: {error}") from None
        self.resume = bool(resume)
        config_file = self.path / CONFIG
        if resume:
            if not config_file.exists():
                raise FileNotFoundError(
                    f"resume: {config_file} does not exist; start the run without --resume"
                )
            saved = json.loads(config_file.read_text())
            fixed = lambda c: {k: v for k, v in c.items() if k not in may_change}  # noqa: E731
            if fixed(saved) != fixed(json.loads(json.dumps(self.config))):
                changed = sorted(
                    k for k in set(saved) | set(self.config) if saved.get(k) != self.config.get(k)
                )
                raise ValueError(
                    f"resume: the configuration differs from the one saved in {config_file} in {changed}; "
                    f"only {list(may_change)} may change"
                )
        elif config_file.exists():
            raise FileExistsError(
                f"{self.path} already holds a run; pass resume=True (--resume) to continue it or choose "
                "another folder"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_write(config_file, config_text.encode())

    # -- metrics ---------------------------------------------------------------------------
    def log_metrics(self, row: dict[str, Any]) -> None:
        """Appends one row (an evaluation) to ``metrics.csv``; the first row fixes the columns."""
        file = self.path / METRICS
        new = not file.exists()
        with open(file, "a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def read_metrics(self) -> list[dict[str, str]]:
        """The rows of ``metrics.csv`` (strings, as csv reads them)."""
        file = self.path / METRICS
        if not file.exists():
            return []
        with open(file, newline="") as stream:
            return list(csv.DictReader(stream))

    def truncate_metrics(self, iteration: int) -> None:
        """Drops rows logged after ``iteration`` (written after the checkpoint a resume starts from)."""
        rows = self.read_metrics()
        kept = [row for row in rows if int(row["iteration"]) <= iteration]
        if len(kept) == len(rows):
            return
        buffer = io.StringIO()  # rows is not empty here: something was dropped
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
        _atomic_write(self.path / METRICS, buffer.getvalue().encode())

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Pickles ``state`` atomically to ``checkpoint.pkl`` (a crash leaves the previous one)."""
        _atomic_write(self.path / CHECKPOINT, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))

    def load_checkpoint(self) -> dict[str, Any]:
        """The last checkpoint. Pickle runs code: only load folders you wrote."""
        file = self.path / CHECKPOINT
        if not file.exists():
            raise FileNotFoundError(
                f"resume: {file} does not exist (the run stopped before its first checkpoint)"
            )
        with open(file, "rb") as stream:
            return pickle.load(stream)

    # -- results -----------------------------------------------------------------------------
    def write_results(self, results: dict[str, Any]) -> None:
        """Writes ``results.json`` (atomically)."""
        _atomic_write(self.path / RESULTS, json.dumps(results, indent=2, sort_keys=True).encode())

    def plot(self, x: str, ys: list[str], title: str = "") -> Path:
        """A PNG learning curve of ``metrics.csv``'s columns ``ys`` against ``x``; returns its path."""
        rows = self.read_metrics()
        series = {y: [float(row[y]) for row in rows if row.get(y) not in (None, "")] for y in ys}
        xs = [float(row[x]) for row in rows]
        return plot_curves(self.path / CURVE, xs, series, xlabel=x, title=title)


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


def command_line(argv=None) -> str:
    """The command that ran this script, shell-quoted: ``python script.py ARGS`` (``argv``: the
    arguments given to the script's ``main``, default ``sys.argv[1:]``), for results files."""
    words = [Path(sys.executable).name, sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    return " ".join(shlex.quote(str(word)) for word in words)
