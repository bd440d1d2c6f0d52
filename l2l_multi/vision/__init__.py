"""``l2l.vision``: few-shot vision. ``models`` resolve in the current backend."""

from . import models as models

__all__ = ["models"]
