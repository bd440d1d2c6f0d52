"""``l2l.vision``: few-shot vision. ``datasets`` and ``benchmarks`` are backend-neutral (numpy,
converted by the task pipeline); ``models`` resolve in the current backend."""

from . import benchmarks as benchmarks
from . import datasets as datasets
from . import models as models
from . import transforms as transforms

__all__ = ["benchmarks", "datasets", "models", "transforms"]
