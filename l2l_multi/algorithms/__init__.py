"""``l2l.algorithms``: resolved in the current backend (``l2l_multi.backends.<backend>.algorithms``).

See ``l2l_multi._dispatch`` for how names are resolved; each backend documents its own classes.
Binding: ``l2l.algorithms.Name`` is resolved at each attribute access (under ``use_backend`` it gives
that backend's object), while ``from l2l_multi.algorithms import Name`` binds the object of the
backend current when the import runs. Type checkers read ``algorithms/__init__.pyi``.
"""

from __future__ import annotations

from .._dispatch import area_module_hooks
from . import base_learner as base_learner  # learn2learn's module paths
from . import maml as maml
from . import meta_sgd as meta_sgd

__getattr__, __dir__ = area_module_hooks("algorithms")
