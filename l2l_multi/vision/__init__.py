"""``l2l.vision``: few-shot vision. ``models`` resolve in the current backend."""

from . import benchmarks as benchmarks
from . import models as models

__all__ = ["benchmarks", "models"]
