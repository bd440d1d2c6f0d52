"""``l2l.optim``: resolved in the current backend (``l2l_multi.backends.<backend>.optim``).

See ``l2l_multi._dispatch`` for how names are resolved; each backend documents its own classes.
Binding: ``l2l.optim.Name`` is resolved at each attribute access (under ``use_backend`` it gives
that backend's object), while ``from l2l_multi.optim import Name`` binds the object of the
backend current when the import runs. Type checkers read ``optim/__init__.pyi``.
"""

from __future__ import annotations

from .._dispatch import area_module_hooks
from . import transforms as transforms  # learn2learn's module paths
from . import update_rules as update_rules

__getattr__, __dir__ = area_module_hooks("optim")
