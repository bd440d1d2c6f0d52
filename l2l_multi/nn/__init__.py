"""``l2l.nn``: resolved in the current backend (``l2l_multi.backends.<backend>.nn``).

See ``l2l_multi._dispatch`` for how names are resolved; each backend documents its own classes.
Binding: ``l2l.nn.Name`` is resolved at each attribute access (under ``use_backend`` it gives
that backend's object), while ``from l2l_multi.nn import Name`` binds the object of the
backend current when the import runs. Type checkers read ``nn/__init__.pyi``.
"""

from __future__ import annotations

from .._dispatch import area_module_hooks
from . import metalayers as metalayers  # learn2learn's module path

__getattr__, __dir__ = area_module_hooks("nn")
