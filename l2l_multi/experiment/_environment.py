"""What a run's numbers depend on besides its settings: versions, threads, kernels, device."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

PACKAGES = ("numpy", "torch", "jax", "jaxlib", "flax", "optax", "l2l_multi")
# variables that set thread counts or numerics of the frameworks (recorded as given, or None)
VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS", "L2L_PUREPYTHON")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_environment(**extra: Any) -> dict[str, Any]:
    """The determinism-relevant facts of this process, as JSON-serialisable values.

    Reads installed versions from package metadata (it imports neither torch nor jax); records
    ``torch_threads`` (``torch.get_num_threads()``) only when torch is already imported.

    Args:
        extra: more entries, e.g. ``device="torch cpu: x86_64"``.

    Returns:
        ``{"python", "packages": {name: version or None}, "variables": {name: value or None},
        "cpu_count", "data_kernels": "compiled"|"python", ["torch_threads"], **extra}``.

    Example:
        >>> sorted(collect_environment(device="cpu"))[:3]
        ['cpu_count', 'data_kernels', 'device']
    """
    from ..data import kernel_mode

    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "variables": {name: os.environ.get(name) for name in VARIABLES},
        "cpu_count": os.cpu_count(),
        "data_kernels": kernel_mode(),
    }
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        facts["torch_threads"] = torch.get_num_threads()
    facts.update(extra)
    return facts


def environment_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"key: saved -> current"`` for every entry (nested one level) that differs; top-level keys
    recorded on one side only are skipped (a folder written before a key existed compares quietly).

    Example:
        >>> environment_changes({"torch_threads": 1, "device": "cpu"}, {"torch_threads": 2})
        ['torch_threads: 1 -> 2']
    """
    changes = []
    for key in sorted(set(saved) & set(current)):
        before, after = saved[key], current[key]
        if isinstance(before, dict) and isinstance(after, dict):
            for name in sorted(set(before) | set(after)):
                if before.get(name) != after.get(name):
                    changes.append(f"{key}.{name}: {before.get(name)!r} -> {after.get(name)!r}")
        elif before != after:
            changes.append(f"{key}: {before!r} -> {after!r}")
    return changes
