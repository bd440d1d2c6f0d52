"""Where the few-shot driver gathers its training tasks: on the host (``TaskDataset.sample_batch``,
then ``partition_task_batch``), or on the device (``DeviceTasks``: the dataset copied there once,
each meta-batch sending only its index plan). Both give the same tasks for the same seed, and
their checkpointed stream positions are the same dict, so a run may resume with the other one.
"""

from __future__ import annotations

from typing import Any

PREFETCH = 2  # meta-batches a background thread prepares ahead on the device path


def accelerator_in_use(backend: str, device: str | None) -> bool:
    """Whether the training step runs on an accelerator: torch with a ``device`` other than the
    CPU, jax when its default device is not a CPU."""
    if backend == "jax":
        import jax

        return jax.local_devices()[0].platform != "cpu"
    return bool(device) and not str(device).startswith("cpu")


class TrainTasks:
    """The driver's training stream: ``next(n, shots)`` gives ``((sx, sy), (qx, qy))``.

    Args:
        tasks: the training ``TaskDataset``; backend: "torch" or "jax"; device: the torch
            device option (jax: its default local device).
        on_device: ``True``/``False``, or ``None`` for :func:`accelerator_in_use`. A stream the
            device path cannot take (not on ``TaskDataset``'s fast path, or images converted in
            a way it does not know) is refused with ``SystemExit`` when asked for explicitly.
    """

    def __init__(self, tasks: Any, backend: str, device: str | None, on_device: bool | None):
        from ..data import DeviceTasks

        self.tasks, self.device_tasks = tasks, None
        wanted = accelerator_in_use(backend, device) if on_device is None else on_device
        if wanted:
            try:
                self.device_tasks = DeviceTasks(tasks, backend, device=device, prefetch=PREFETCH)
            except ValueError as error:
                if on_device:
                    raise SystemExit(f"--tasks-on-device: {error}") from None
        self.on_device = self.device_tasks is not None

    def next(self, n: int, shots: int) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
        """The next meta-batch of ``n`` tasks, split into support (``shots`` per class) and query."""
        if self.device_tasks is not None:
            return self.device_tasks.sample_split(n, shots)
        from ..data import partition_task_batch

        return partition_task_batch(*self.tasks.sample_batch(n), shots=shots)

    def state_dict(self) -> dict:
        """The stream's position after the meta-batches handed out (``TaskDataset.state_dict``'s dict)."""
        return (self.device_tasks or self.tasks).state_dict()

    def load_state_dict(self, state: dict) -> None:
        (self.device_tasks or self.tasks).load_state_dict(state)

    def close(self) -> None:
        """Stops the device path's prefetch thread (the stream stays at ``state_dict``)."""
        if self.device_tasks is not None:
            self.device_tasks.close()
