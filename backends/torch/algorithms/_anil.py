"""ANIL (Raghu et al., ICLR 2020): MAML on the head only, on top of a meta-learned feature extractor."""

from __future__ import annotations

import torch

from .._module_utils import clone_module
from ._base import BaseLearner


class ANIL(BaseLearner):
    """Almost No Inner Loop: ``forward(x) = head(features(x))``; ``adapt`` only changes the head.

    Args:
        features: feature extractor, ``[N, ...] -> [N, d]`` (meta-learned, never adapted).
        head: the adapted module, ``[N, d] -> [N, classes]``.
        lr: as in ``MAML``, for the head (pass ``lr`` or ``inner``).
        first_order: as in ``MAML``.
        allow_unused: as in ``MAML``.
        allow_nograd: as in ``MAML``.
        inner: as in ``MAML``, for the head (pass ``lr`` or ``inner``).

    ``clone()`` shares ``features`` (gradients still reach it) and clones the head. Compute the
    embeddings once per task with ``learner.features(x)`` and adapt with ``learner.head(z)``
    to save the feature extractor's forward passes (``forward(x, features=z)`` does this).

    Example:
        >>> import torch
        >>> import l2l_multi as l2l
        >>> anil = l2l.algorithms.ANIL(torch.nn.Linear(8, 4), torch.nn.Linear(4, 2), lr=0.5)
        >>> learner = anil.clone()
        >>> x, y = torch.randn(5, 8), torch.randint(0, 2, (5,))
        >>> learner.adapt(torch.nn.functional.cross_entropy(learner(x), y))
        >>> torch.nn.functional.cross_entropy(learner(x), y).backward()
        >>> anil.features.weight.grad is not None, anil.head.weight.grad is not None
        (True, True)
    """

    def __init__(
        self, features, head, lr=None, first_order=False, allow_unused=None, allow_nograd=False, inner=None
    ):
        if not isinstance(head, torch.nn.Module):
            raise TypeError(f"head must be a torch.nn.Module, got {type(head).__name__}")
        super().__init__(head, first_order, allow_unused, allow_nograd)
        if not isinstance(features, torch.nn.Module):
            raise TypeError(f"features must be a torch.nn.Module, got {type(features).__name__}")
        self.features = features
        self._set_inner(lr, inner)

    functional = True

    @property
    def head(self) -> torch.nn.Module:
        return self.module

    def _extra_meta_parameters(self) -> dict:
        return {"features": dict(self.features.named_parameters())}

    def _networks(self) -> list[torch.nn.Module]:
        return [self.features, self.module]

    def from_variables(self, variables, head_variables=None) -> dict:
        """Load ``variables`` (the feature extractor's ``{name: tensor}``) and ``head_variables``
        (the head's) and return ``meta_parameters()``."""
        from ._base import _load_variables

        if head_variables is None:
            raise ValueError("ANIL.from_variables needs both the features' and the head's variables")
        _load_variables(self.features, variables, "variables")
        _load_variables(self.module, head_variables, "head_variables")
        return self.meta_parameters()

    def forward(self, x=None, features=None):
        """``head(features(x))``, or ``head(features)`` when precomputed embeddings are given."""
        if (x is None) == (features is None):
            raise ValueError("pass exactly one of x (inputs) and features (precomputed embeddings)")
        return self.module(self.features(x) if features is None else features)

    def clone(self, first_order=None, allow_unused=None, allow_nograd=None):
        """A learner with a cloned head and the same (shared) feature extractor."""
        clone = clone_module(self, memo={p: p for p in self.features.parameters()})
        clone.features = self.features
        clone.first_order, clone.allow_unused, clone.allow_nograd = self._options(
            first_order, allow_unused, allow_nograd
        )
        return clone

    def adapt_loss(self, loss: torch.Tensor, first_order=None, allow_unused=None, allow_nograd=None) -> None:
        """One inner-optimizer step on the head's parameters (see ``MAML.adapt`` for errors)."""
        first_order, allow_unused, allow_nograd = self._options(first_order, allow_unused, allow_nograd)
        params = list(self.module.parameters())
        grads = self._gradients(loss, params, first_order, allow_unused, allow_nograd)
        self._inner_step(self.module, grads)
