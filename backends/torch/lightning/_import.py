"""The Lightning import, shared by the modules of this package (the ``lightning`` extra)."""

from __future__ import annotations

try:  # the current package; the older standalone name is accepted too
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - depends on the environment
    try:
        import pytorch_lightning as pl
    except ImportError as error:
        raise ImportError(
            "l2l_multi's Lightning modules need the 'lightning' package: pip install 'l2l_multi[lightning]'"
        ) from error

__all__ = ["pl"]
