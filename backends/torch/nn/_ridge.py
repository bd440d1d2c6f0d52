"""R2D2's differentiable closed-form ridge regression head (Bertinetto et al., ICLR 2019)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._prototypical import check_query, check_task, check_ways, one_hot

__all__ = ["RidgeClassifier"]


class RidgeClassifier(torch.nn.Module):
    """Ridge regression onto one-hot labels, solved in closed form (R2D2, Bertinetto et al. 2019).

    ``fit_`` solves ``min_W ||X W - Y||^2 + reg ||W||^2`` for the support embeddings ``X``
    (``[n, d]``) and their one-hot labels ``Y`` (``[n, ways]``) with the Woodbury identity,
    ``W = X^T (X X^T + reg I_n)^{-1} Y``, which needs an ``n x n`` solve (few-shot tasks have
    ``n << d``) and equals the primal ``(X^T X + reg I_d)^{-1} X^T Y``. ``forward`` returns
    ``scale * (query W) + bias``; R2D2 learns ``scale`` and ``bias`` (and ``reg``) with the
    feature extractor, since raw regression outputs are poorly scaled logits. Gradients flow to
    the support and query embeddings and to the learnable scalars.

    Args:
        support: optional ``[n, d]`` or ``[B, n, d]`` support embeddings (fitted at construction
            when given with ``labels``).
        labels: optional ``[n]`` or ``[B, n]`` integer labels in ``0..ways-1``.
        ways: number of classes; None: the largest label plus one (at each ``fit_``).
        reg: positive float, the ridge penalty ``reg``.
        learn_scale: if True (default, as in R2D2) ``scale`` and ``bias`` are ``nn.Parameter``
            scalars initialised to 1 and 0; if False they are the constants 1 and 0.
        normalize: if True, support and query embeddings are L2-normalised before use.
        learn_reg: if True, ``reg`` is learnt as ``exp(log_reg)`` with ``log_reg`` an
            ``nn.Parameter`` (float32, initialised to ``log(reg)``).

    Example:
        >>> import torch
        >>> support = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
        >>> head = RidgeClassifier(support, torch.tensor([0, 1]), reg=1.0, learn_scale=False)
        >>> head.weight.round(decimals=6).tolist()
        [[0.5, 0.0], [0.0, 0.5]]
        >>> head(2 * support[:1]).round(decimals=6).tolist()
        [[1.0, 0.0]]
    """

    def __init__(
        self,
        support: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        ways: int | None = None,
        reg: float = 1.0,
        learn_scale: bool = True,
        normalize: bool = False,
        learn_reg: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(reg, bool) or not isinstance(reg, (int, float)) or not reg > 0:
            raise ValueError(f"reg must be a positive float, got {reg!r}")
        if ways is not None and (not isinstance(ways, int) or isinstance(ways, bool) or ways < 1):
            raise ValueError(f"ways must be a positive int or None, got {ways!r}")
        if (support is None) != (labels is None):
            raise ValueError("support and labels must be given together (or both left out)")
        self.ways = ways
        self.normalize = bool(normalize)
        self.learn_scale = bool(learn_scale)
        self.learn_reg = bool(learn_reg)
        if self.learn_reg:
            self.log_reg = torch.nn.Parameter(torch.tensor(math.log(reg)))
        else:
            self._reg = float(reg)
        if self.learn_scale:
            self.scale = torch.nn.Parameter(torch.tensor(1.0))
            self.bias = torch.nn.Parameter(torch.tensor(0.0))
        else:
            self.scale, self.bias = 1.0, 0.0
        self.weight: torch.Tensor | None = None
        self._fitted: torch.Size | None = None
        if support is not None:
            self.fit_(support, labels)

    @property
    def reg(self) -> torch.Tensor | float:
        """The ridge penalty: a float, or a 0-d tensor ``exp(log_reg)`` when ``learn_reg=True``.

        Example:
            >>> RidgeClassifier(reg=0.5).reg
            0.5
        """
        return self.log_reg.exp() if self.learn_reg else self._reg

    def fit_(self, support: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Solve the ridge regression of the one-hot labels on the support embeddings.

        Args:
            support: ``[n, d]`` or ``[B, n, d]`` floating point embeddings.
            labels: ``[n]`` or ``[B, n]`` integer labels in ``0..ways-1`` (a class without
                examples gets a zero column of ``W``).

        Returns:
            ``W``: ``[d, ways]`` or ``[B, d, ways]`` in the support's dtype (also stored as
            ``self.weight``).

        Example:
            >>> import torch
            >>> head = RidgeClassifier(ways=3, reg=3.0)
            >>> head.fit_(torch.tensor([[3.0]]), torch.tensor([2])).round(decimals=6).tolist()
            [[0.0, 0.0, 0.25]]
        """
        check_task(support, labels)
        ways = check_ways(labels, self.ways)
        if self.normalize:
            support = F.normalize(support, dim=-1)
        targets = one_hot(labels, ways, support.dtype)  # [..., n, ways]
        n = support.shape[-2]
        eye = torch.eye(n, dtype=support.dtype, device=support.device)
        gram = support @ support.transpose(-1, -2) + self.reg * eye
        # The Gram matrix plus reg * I is symmetric positive definite: Cholesky is the stable,
        # cheap solve (and differentiable).
        factor = torch.linalg.cholesky(gram)
        self.weight = support.transpose(-1, -2) @ torch.cholesky_solve(targets, factor)
        self._fitted = support.shape
        return self.weight

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        """``scale * (query @ W) + bias``.

        Args:
            query: ``[q, d]`` (fitted on one task) or ``[B, q, d]`` (fitted on a batch).

        Returns:
            ``[q, ways]`` or ``[B, q, ways]`` logits.

        Example:
            >>> import torch
            >>> head = RidgeClassifier(torch.eye(2), torch.tensor([1, 0]), reg=1.0)
            >>> head(torch.tensor([[0.0, 4.0]])).round(decimals=5).tolist()
            [[2.0, 0.0]]
        """
        check_query(query, self._fitted, type(self).__name__)
        if self.normalize:
            query = F.normalize(query, dim=-1)
        return self.scale * (query @ self.weight) + self.bias

    def extra_repr(self) -> str:
        reg = "learnt" if self.learn_reg else self._reg
        return f"ways={self.ways}, reg={reg}, learn_scale={self.learn_scale}, normalize={self.normalize}"
