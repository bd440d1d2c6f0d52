"""``l2l.vision.models``: resolved in the current backend (``l2l_multi.backends.<backend>.vision.models``).

The torch classes are ``torch.nn.Module``s, the jax ones ``flax.linen.Module``s with the same
architecture and initialisation rules; ``l2l_multi.interop`` converts weights between them.
``l2l.vision.models.Name`` is resolved at each attribute access, while ``from
l2l_multi.vision.models import Name`` binds the class of the backend current at import time.
Type checkers read ``models/__init__.pyi``.
"""

from __future__ import annotations

from ..._dispatch import area_module_hooks
from . import cnn4 as cnn4  # learn2learn's module path

__getattr__, __dir__ = area_module_hooks("vision.models")
