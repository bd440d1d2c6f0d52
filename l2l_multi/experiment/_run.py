"""A run's results folder: config, metrics, checkpoints, results and the learning curve."""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

from . import _checkpoint
from ._environment import collect_environment, environment_changes
from ._errors import RunFolderError
from ._faults import fault_point
from ._files import atomic_write as _atomic_write
from ._files import file_mode as _file_mode
from ._files import lock_file as _lock_file
from ._plot import Curves, Panel, have_matplotlib, plot_panels, warn_plot_skipped

CONFIG, METRICS, RESULTS, CHECKPOINT, CURVE = (
    "config.json",
    "metrics.csv",
    "results.json",
    "checkpoint.npz",
    "curve.png",
)
LOCK = ".lock"
LEGACY_CHECKPOINT = "checkpoint.pkl"  # pickles of earlier versions: never loaded (pickle runs code)
ENVIRONMENT = "environment"  # config.json's section of facts that are recorded, not compared


class RunFolder:
    """One run's folder, owned by one process at a time.

    Files: ``config.json`` (the run's settings, plus an ``environment`` section: library versions,
    thread settings, data kernels, device), ``checkpoint.npz`` (arrays and JSON, never pickle; it
    also holds every metrics row logged so far), ``metrics.csv`` (re-rendered from those rows at
    each :meth:`log_metrics`, atomically, never appended), ``results.json``, ``curve.png``. Every
    file is written to a temporary file and renamed; temporaries left by a killed process are
    removed when the folder is opened.

    Ownership: opening takes an OS lock on ``.lock`` (``flock``), held until :meth:`close` (or the
    ``with`` block ends, or the process dies): a second process, or a second ``RunFolder`` on the
    same folder, gets a :class:`RunFolderError` naming the folder.

    Opening a folder:

    - empty or new: a new run;
    - ``config.json`` but no checkpoint and no ``results.json`` (a start that failed: wrong data
      root, missing framework, Ctrl-C before the first checkpoint): reused, by a new run or by
      ``resume=True``, which then starts from scratch; both warn, and rows of ``metrics.csv`` are
      dropped (no checkpoint holds them);
    - a run with a checkpoint or results: refused without ``resume`` (``FileExistsError``); with it,
      the checkpoint is loaded, ``metrics.csv`` is rebuilt from the checkpoint's rows (rows logged
      after it are dropped, a damaged csv is replaced), and ``config`` must equal the saved one
      except for the keys in ``may_change``; ``iterations`` may not go below the checkpoint's
      ``iteration`` (the run cannot be shortened, so config.json and results.json agree);
    - no ``config.json`` but a checkpoint, metrics or results: refused (the settings are lost).

    Damaged files (``config.json``, the checkpoint) raise :class:`RunFolderError`, naming the file.

    Determinism: the ``environment`` section is compared on resume; a change (another thread
    count, other versions, other data kernels, another device) warns (``RuntimeWarning``) and the
    run continues; its numbers may then differ from an uninterrupted run in the last digits.

    Args:
        path: folder (created with its parents).
        config: JSON-serialisable dict of everything that defines the run (without an
            ``environment`` key); written to ``config.json``.
        resume: continue the run in ``path`` from its checkpoint.
        may_change: keys of ``config`` that may differ from the saved ones on resume.
        environment: extra facts for the ``environment`` section (e.g. ``device``); more can be
            added later with :meth:`record_environment`.

    Example:
        >>> import tempfile
        >>> with RunFolder(tempfile.mkdtemp() + "/run", {"seed": 0}) as folder:
        ...     folder.log_metrics({"iteration": 10, "valid_accuracy": 0.5})
        ...     folder.save_checkpoint({"iteration": 10})
        >>> with RunFolder(folder.path, {"seed": 0}, resume=True) as resumed:
        ...     resumed.load_checkpoint()["iteration"], len(resumed.read_metrics())
        (10, 1)
    """

    def __init__(
        self, path, config: dict[str, Any], resume: bool = False, may_change=("iterations",), environment=None
    ):
        self.path = Path(path).expanduser()
        self.config = dict(config)
        if ENVIRONMENT in self.config:
            raise ValueError(f"config may not hold the key {ENVIRONMENT!r}: RunFolder records it itself")
        try:
            self.config = json.loads(json.dumps(self.config))
        except (TypeError, ValueError) as error:
            raise TypeError(f"config must be JSON-serialisable: {error}") from None
        self.resume, self.may_change = bool(resume), tuple(may_change)
        self.checkpoint: dict[str, Any] | None = None  # the state a resumed run starts from
        self.metrics: list[dict[str, Any]] = []
        self._descriptor: int | None = None
        self._warned: set[str] = set()
        if resume and not (self.path / CONFIG).exists() and not self._run_files():
            raise FileNotFoundError(
                f"resume: {self.path / CONFIG} does not exist; start the run without --resume"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self._acquire()
        try:
            self._remove_temporaries()
            self.saved_environment = self._open()
            self.environment = collect_environment(**(environment or {}))
            self._compare_environment()
            self._write_config()
        except BaseException:
            self.close()
            raise

    # -- ownership ---------------------------------------------------------------------------
    def _acquire(self) -> None:
        lock = self.path / LOCK
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, _file_mode())
        if not _lock_file(descriptor):
            os.close(descriptor)
            try:
                holder = lock.read_text().strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise RunFolderError(
                f"{self.path} is in use: another process (pid {holder}), or another RunFolder of this "
                "process, holds it; wait for that run to end or choose another folder (--out)"
            )
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        self._descriptor = descriptor

    def close(self) -> None:
        """Releases the folder (the OS lock); the object can still be read, not written."""
        if getattr(self, "_descriptor", None) is not None:  # (None too when __init__ failed early)
            os.close(self._descriptor)  # closing the descriptor drops the lock
            self._descriptor = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def _check_owned(self) -> None:
        if self._descriptor is None:
            raise RunFolderError(
                f"{self.path} was closed; open it again (RunFolder(..., resume=True)) to write to it"
            )

    def _remove_temporaries(self) -> None:
        prefixes = tuple(f".{name}." for name in (CONFIG, METRICS, RESULTS, CHECKPOINT, CURVE))
        for entry in self.path.iterdir():
            if entry.name.startswith(prefixes) and entry.is_file():
                entry.unlink(missing_ok=True)

    # -- opening -----------------------------------------------------------------------------
    def _run_files(self) -> list[str]:
        names = (CHECKPOINT, LEGACY_CHECKPOINT, METRICS, RESULTS)
        return [name for name in names if (self.path / name).exists()]

    @staticmethod
    def saved_config(path) -> dict[str, Any]:
        """The settings saved in ``path/config.json`` (without its ``environment`` section), for
        ``--resume``. Raises ``FileNotFoundError`` when there is none, :class:`RunFolderError` when
        it is damaged."""
        file = Path(path).expanduser() / CONFIG
        if not file.exists():
            raise FileNotFoundError(f"resume: {file} does not exist; start the run without --resume")
        try:
            saved = json.loads(file.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise RunFolderError(
                f"{file} is damaged ({error}); the run's settings are lost: restore the file from a copy, "
                "or start the run again in another folder"
            ) from None
        if not isinstance(saved, dict):
            raise RunFolderError(
                f"{file} holds a {type(saved).__name__}, not a settings object; restore the file from a "
                "copy, or start the run again in another folder"
            )
        return {key: value for key, value in saved.items() if key != ENVIRONMENT}

    def _open(self) -> dict[str, Any]:
        """Classifies the folder (see the class docstring); returns the saved environment."""
        files = self._run_files()
        if not (self.path / CONFIG).exists():
            if files:
                raise RunFolderError(
                    f"{self.path / CONFIG} is missing but {self.path} holds {', '.join(files)}: the "
                    "settings of that run are lost, so the folder is neither resumable nor empty; "
                    "restore config.json, or choose another folder (--out)"
                )
            return {}
        saved = self.saved_config(self.path)
        saved_environment = json.loads((self.path / CONFIG).read_text()).get(ENVIRONMENT, {})
        if not ({CHECKPOINT, LEGACY_CHECKPOINT, RESULTS} & set(files)):
            if self.resume:
                self._check_changes(saved)
            warnings.warn(
                f"{self.path} holds a run that started but never wrote a checkpoint; "
                f"{'resuming it starts' if self.resume else 'the new run starts'} from scratch",
                RuntimeWarning,
                stacklevel=3,
            )
            (self.path / METRICS).unlink(missing_ok=True)  # rows no checkpoint holds
            return saved_environment if self.resume else {}
        if not self.resume:
            raise FileExistsError(
                f"{self.path} already holds a run; pass resume=True (--resume) to continue it or choose "
                "another folder"
            )
        self._check_changes(saved)
        self._load()
        iteration = self.checkpoint.get("iteration") if isinstance(self.checkpoint, dict) else None
        iterations = self.config.get("iterations")
        if isinstance(iteration, int) and isinstance(iterations, int) and iterations < iteration:
            raise ValueError(
                f"resume: --iterations {iterations} is below the iteration of the checkpoint in "
                f"{self.path} ({iteration}); a run cannot be shortened: pass --iterations {iteration} "
                "or more, or start a new folder"
            )
        self._render_metrics()  # rebuilt from the checkpoint: later or damaged rows are replaced
        return saved_environment

    def _check_changes(self, saved: dict[str, Any]) -> None:
        changed = sorted(
            key
            for key in set(saved) | set(self.config)
            if key not in self.may_change and saved.get(key) != self.config.get(key)
        )
        if changed:
            details = "; ".join(f"{k}: saved {saved.get(k)!r}, given {self.config.get(k)!r}" for k in changed)
            raise ValueError(
                f"resume: the configuration differs from the one saved in {self.path / CONFIG} in {changed}; "
                f"only {list(self.may_change)} may change ({details})"
            )

    def _load(self) -> None:
        file = self.path / CHECKPOINT
        if (self.path / LEGACY_CHECKPOINT).exists() and not file.exists():
            raise RunFolderError(
                f"{self.path / LEGACY_CHECKPOINT} is a pickle checkpoint of an earlier l2l_multi; pickle "
                "can run code, so it is never loaded: start the run again in another folder"
            )
        if not file.exists():
            raise RunFolderError(
                f"resume: {file} does not exist but {self.path} holds results; the run cannot continue "
                "without its checkpoint: start it again in another folder"
            )
        try:
            payload = _checkpoint.loads(file.read_bytes())
            if not isinstance(payload, dict) or set(payload) != {"state", "metrics"}:
                raise ValueError("it is not a RunFolder checkpoint (no state and metrics)")
            metrics = payload["metrics"]
            if not isinstance(metrics, list) or not all(isinstance(row, dict) for row in metrics):
                raise ValueError("its metrics are not a list of rows")
        except Exception as error:  # whatever the damage: one error type that names the file
            raise RunFolderError(
                f"{file} is damaged or not a checkpoint ({type(error).__name__}: {error}); restore it from "
                "a copy, or start the run again in another folder"
            ) from None
        self.checkpoint, self.metrics = payload["state"], metrics

    # -- environment -------------------------------------------------------------------------
    def _compare_environment(self) -> None:
        changes = [
            change
            for change in environment_changes(self.saved_environment, self.environment)
            if change not in self._warned
        ]
        if changes:
            self._warned.update(changes)
            warnings.warn(
                f"resume: {self.path} was run in another environment ({'; '.join(changes)}); the "
                "continued run may differ from an uninterrupted one in the last digits",
                RuntimeWarning,
                stacklevel=4,
            )

    def record_environment(self, **facts: Any) -> None:
        """Adds ``facts`` (e.g. ``device=``) to config.json's ``environment`` section, with
        ``torch_threads`` if torch is imported by now; on resume, warns about changes."""
        self._check_owned()
        self.environment = collect_environment(**{**self.environment, **facts})
        self._compare_environment()
        self._write_config()

    def _write_config(self) -> None:
        document = {**self.config, ENVIRONMENT: self.environment}
        _atomic_write(self.path / CONFIG, json.dumps(document, indent=2, sort_keys=True).encode())

    # -- metrics ---------------------------------------------------------------------------
    def log_metrics(self, row: dict[str, Any]) -> None:
        """Adds one row (an evaluation; numbers or strings) and re-renders ``metrics.csv``; the first
        row fixes the columns. The rows are stored in the next checkpoint."""
        self._check_owned()
        if self.metrics and list(row) != list(self.metrics[0]):
            raise ValueError(f"row has the columns {list(row)}, metrics.csv has {list(self.metrics[0])}")
        self.metrics.append(dict(row))
        self._render_metrics()
        fault_point("metrics_written")

    def _render_metrics(self) -> None:
        if not self.metrics:
            (self.path / METRICS).unlink(missing_ok=True)
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.metrics[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.metrics)
        _atomic_write(self.path / METRICS, buffer.getvalue().encode())

    def read_metrics(self) -> list[dict[str, Any]]:
        """The rows logged so far (restored from the checkpoint on resume), values as logged."""
        return [dict(row) for row in self.metrics]

    def truncate_metrics(self, iteration: int) -> None:
        """Drops rows logged after ``iteration`` and re-renders ``metrics.csv``."""
        self._check_owned()
        kept = [row for row in self.metrics if int(row["iteration"]) <= iteration]
        if len(kept) != len(self.metrics):
            self.metrics = kept
            self._render_metrics()

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Stores ``state`` and the metrics rows atomically in ``checkpoint.npz`` (a crash leaves the
        previous one). ``state`` may hold what :mod:`l2l_multi.experiment._checkpoint` stores:
        containers, numbers, strings, numpy/torch/jax arrays."""
        self._check_owned()
        data = _checkpoint.dumps({"state": state, "metrics": self.metrics})
        _atomic_write(self.path / CHECKPOINT, data, fault="checkpoint_write")

    def load_checkpoint(self) -> dict[str, Any]:
        """The last checkpoint's state (NamedTuples come back as tuples, torch tensors on the CPU,
        jax arrays as numpy arrays). ``FileNotFoundError`` when the run has none (a new run, or a
        resumed one that never wrote one)."""
        if self.checkpoint is None:
            raise FileNotFoundError(
                f"resume: {self.path / CHECKPOINT} does not exist (the run stopped before its first "
                "checkpoint)"
            )
        return self.checkpoint

    # -- results -----------------------------------------------------------------------------
    def write_results(self, results: dict[str, Any]) -> None:
        """Writes ``results.json`` (atomically)."""
        self._check_owned()
        text = json.dumps(results, indent=2, sort_keys=True)
        _atomic_write(self.path / RESULTS, text.encode(), fault="results_write")

    def plot(self, x: str, ys, title: str = "", xlabel: str | None = None) -> Path | None:
        """A PNG learning curve (``curve.png``) of metrics columns against the column ``x``.

        ``ys``: a list of column names (one panel, the names as legend), or a list of
        :class:`~l2l_multi.experiment._plot.Curves` (one panel each: y label, legend names,
        95% bands, scale). Returns the PNG's path; without matplotlib, warns that the plot was
        skipped (and how to install it) and returns None: the run's other files are unaffected."""
        self._check_owned()
        if not have_matplotlib():
            warn_plot_skipped(self.path / CURVE)
            return None
        panels = [Curves("", {y: y for y in ys})] if all(isinstance(y, str) for y in ys) else list(ys)
        rows = self.metrics

        def column(name: str, scale: float) -> list[float]:
            return [scale * float(row[name]) for row in rows if row.get(name) not in (None, "")]

        drawn = [
            Panel(
                curves.ylabel,
                {label: column(name, curves.scale) for name, label in curves.columns.items()},
                {curves.columns[name]: column(band, curves.scale) for name, band in curves.bands.items()},
                curves.limits,
                curves.references,
            )
            for curves in panels
        ]
        xs = [float(row[x]) for row in rows]
        return plot_panels(self.path / CURVE, xs, drawn, xlabel=xlabel or x, title=title)

    def describe_files(self) -> str:
        """One line naming the folder and the result files in it, e.g. ``"Results in runs/a:
        results.json, metrics.csv, curve.png, checkpoint.npz"``; the examples print it last."""
        names = [name for name in (RESULTS, METRICS, CURVE, CHECKPOINT) if (self.path / name).exists()]
        return f"Results in {self.path}: {', '.join(names)}"
