"""An optional TensorBoard log of a run's metrics rows (``--tensorboard``).

The writer is torch's ``torch.utils.tensorboard.SummaryWriter`` (it needs the ``tensorboard``
package) or, without torch, ``tensorboardX``'s; neither framework is imported unless asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FOLDER = "tensorboard"
INSTALL_HINT = (
    "--tensorboard needs a TensorBoard writer: pip install tensorboard (used through torch), or "
    "pip install tensorboardX (without torch); both come with l2l_multi's [examples] extra"
)


def summary_writer_class():
    """The ``SummaryWriter`` class to use; ``SystemExit`` naming what to install when there is none."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # ImportError without torch or tensorboard
    except ImportError:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise SystemExit(INSTALL_HINT) from None
    return SummaryWriter


class ScalarLog:
    """Writes each metrics row's numbers as scalars (tag: the column name, step: ``row[step]``)
    to ``folder/tensorboard``. On resume, ``purge_step`` (the checkpoint's iteration + 1) makes
    TensorBoard drop the scalars an interrupted run wrote after its last checkpoint.

    Example (open the log with ``tensorboard --logdir <out>/tensorboard``):
        >>> import tempfile  # doctest: +SKIP
        >>> log = ScalarLog(tempfile.mkdtemp())  # doctest: +SKIP
        >>> log.write({"iteration": 10, "valid_accuracy": 0.5})  # doctest: +SKIP
        >>> log.close()  # doctest: +SKIP
    """

    def __init__(self, folder, step: str = "iteration", purge_step: int | None = None):
        self.path = Path(folder) / FOLDER
        self.step = step
        self._writer = summary_writer_class()(log_dir=str(self.path), purge_step=purge_step)

    def write(self, row: dict[str, Any]) -> None:
        """One row: every int or float column but the step; written to disk at once."""
        step = int(row[self.step])
        for name, value in row.items():
            if name != self.step and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(name, float(value), step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
