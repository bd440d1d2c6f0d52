"""Choose between the compiled kernels and their pure-Python twin.

The compiled extension is used when it imports, unless ``L2L_PUREPYTHON=1``. Both produce
identical results for the same seed, so the choice only changes speed.
"""

from __future__ import annotations

import os
import types

from . import _kernels_py

try:
    from . import _kernels as _compiled
except ImportError:  # no compiler at install time: the twin does the work
    _compiled = None

_MODES = ("compiled", "python")
_mode = "python" if (_compiled is None or os.environ.get("L2L_PUREPYTHON") == "1") else "compiled"


def kernel_mode() -> str:
    """``"compiled"`` or ``"python"``: which sampling kernels the data layer uses now."""
    return _mode


def compiled_available() -> bool:
    """Whether the Cython extension was built and imports."""
    return _compiled is not None


def set_kernel_mode(mode: str) -> None:
    """Switch kernels for the whole process (tests and benchmarks compare the two)."""
    global _mode
    if mode not in _MODES:
        raise ValueError(f"mode={mode!r} is not one of {_MODES}")
    if mode == "compiled" and _compiled is None:
        raise ImportError(
            "the compiled kernels (l2l_multi.data._kernels) are not built; reinstall with a C "
            "compiler and Cython available: pip install --no-build-isolation -e ."
        )
    _mode = mode


def kernels() -> types.ModuleType:
    return _compiled if _mode == "compiled" else _kernels_py
