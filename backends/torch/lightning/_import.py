"""The Lightning import, shared by the modules of this package (the ``lightning`` extra)."""

from __future__ import annotations

import importlib
import sys


def preferred_package(loaded_modules) -> str:
    """``"pytorch_lightning"`` when a script has imported that standalone package and not
    ``lightning.pytorch`` (learn2learn's examples do: its ``Trainer`` only fits its own
    ``LightningModule`` class, a different class from ``lightning.pytorch``'s), else
    ``"lightning.pytorch"``. ``loaded_modules``: a mapping of module names (``sys.modules``)."""
    if "pytorch_lightning" in loaded_modules and "lightning.pytorch" not in loaded_modules:
        return "pytorch_lightning"
    return "lightning.pytorch"


try:  # the current package; the older standalone name is accepted too
    pl = importlib.import_module(preferred_package(sys.modules))
except ImportError:  # pragma: no cover - depends on the environment
    try:
        import pytorch_lightning as pl
    except ImportError as error:
        raise ImportError(
            "l2l_multi's Lightning modules need the 'lightning' package: pip install 'l2l_multi[lightning]'"
        ) from error

__all__ = ["pl"]
