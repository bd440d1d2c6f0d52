"""Prototypical networks' classifier (Snell et al., NeurIPS 2017) and checks shared by the heads.

A head is fitted on the support embeddings of a task (``fit_``) and then scores query embeddings
(``forward``). Every head here accepts one task (support ``[n, d]``, labels ``[n]``, query
``[q, d]``) or a batch of tasks (support ``[B, n, d]``, labels ``[B, n]``, query ``[B, q, d]``),
and the helpers below give them the same argument checks and messages.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["PrototypicalClassifier"]

DISTANCES = ("euclidean", "cosine")


def check_task(support: torch.Tensor, labels: torch.Tensor) -> bool:
    """Validate a support set; returns True for a batch of tasks, False for one task.

    Args:
        support: ``[n, d]`` or ``[B, n, d]`` floating point embeddings.
        labels: ``[n]`` or ``[B, n]`` integer labels, all ``>= 0``.

    Raises:
        TypeError: a non-tensor, a non-floating ``support`` or non-integer ``labels``.
        ValueError: wrong shapes, an empty support set or a negative label.

    Example:
        >>> import torch
        >>> check_task(torch.zeros(4, 3), torch.tensor([0, 1, 0, 1]))
        False
    """
    if not isinstance(support, torch.Tensor):
        raise TypeError(f"support must be a torch.Tensor, got {type(support).__name__}")
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if not support.is_floating_point():
        raise TypeError(f"support must have a floating point dtype, got {support.dtype}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
    if support.dim() not in (2, 3):
        raise ValueError(
            f"support must have shape [n, d] (one task) or [B, n, d] (a batch of tasks), "
            f"got {tuple(support.shape)}"
        )
    if tuple(labels.shape) != tuple(support.shape[:-1]):
        raise ValueError(
            f"labels must have shape {tuple(support.shape[:-1])} to match support of shape "
            f"{tuple(support.shape)} (one label per support row), got {tuple(labels.shape)}"
        )
    if labels.numel() == 0:
        raise ValueError(f"support must hold at least one example, got shape {tuple(support.shape)}")
    if int(labels.min()) < 0:
        raise ValueError(f"labels must be integers in 0..ways-1, got the label {int(labels.min())}")
    return support.dim() == 3


def check_ways(labels: torch.Tensor, ways: int | None) -> int:
    """The number of classes: ``ways`` if given (checked against ``labels``), else ``max + 1``.

    Args:
        labels: integer labels, any shape, all ``>= 0``.
        ways: None, or a positive int larger than every label.

    Returns:
        The number of classes, an int.

    Example:
        >>> import torch
        >>> check_ways(torch.tensor([0, 2, 1]), None), check_ways(torch.tensor([0, 2, 1]), 5)
        (3, 5)
    """
    largest = int(labels.max())
    if ways is None:
        return largest + 1
    if not isinstance(ways, int) or isinstance(ways, bool) or ways < 1:
        raise ValueError(f"ways must be a positive int or None, got {ways!r}")
    if largest >= ways:
        raise ValueError(f"labels must be integers in 0..ways-1 = 0..{ways - 1}, got the label {largest}")
    return ways


def check_query(query: torch.Tensor, fitted: torch.Size | None, head: str) -> None:
    """Check ``query`` against the shape ``fitted`` (``[n, d]`` or ``[B, n, d]``) of the support.

    Args:
        query: the tensor passed to a head's ``forward``.
        fitted: the shape of the support embeddings of the last ``fit_``; None if never fitted.
        head: the head's class name, for the messages.

    Example:
        >>> import torch
        >>> check_query(torch.zeros(2, 3), torch.Size([4, 3]), "PrototypicalClassifier")
    """
    if fitted is None:
        raise RuntimeError(f"{head} is not fitted: call fit_(support, labels) before forward(query)")
    if not isinstance(query, torch.Tensor):
        raise TypeError(f"query must be a torch.Tensor, got {type(query).__name__}")
    if not query.is_floating_point():
        raise TypeError(f"query must have a floating point dtype, got {query.dtype}")
    batched = len(fitted) == 3
    expected = f"[B={fitted[0]}, q, d={fitted[-1]}]" if batched else f"[q, d={fitted[-1]}]"
    wrong_batch = batched and query.shape[0] != fitted[0]
    if query.dim() != len(fitted) or query.shape[-1] != fitted[-1] or wrong_batch:
        raise ValueError(
            f"query must have shape {expected} to match the support the head was fitted on, "
            f"got {tuple(query.shape)}"
        )


def one_hot(labels: torch.Tensor, ways: int, dtype: torch.dtype) -> torch.Tensor:
    """``[..., n]`` integer labels -> ``[..., n, ways]`` one-hot matrix of ``dtype``.

    Args:
        labels: integer labels in ``0..ways-1``.
        ways: the number of classes.
        dtype: the result's floating point dtype.

    Example:
        >>> import torch
        >>> one_hot(torch.tensor([1, 0]), 3, torch.float32).tolist()
        [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    """
    return F.one_hot(labels.long(), ways).to(dtype)


class PrototypicalClassifier(torch.nn.Module):
    """Nearest-prototype classifier of prototypical networks (Snell et al., NeurIPS 2017).

    ``fit_`` stores one prototype per class, the mean of that class's support embeddings;
    ``forward`` scores each query embedding against each prototype: with
    ``distance="euclidean"`` the logit is the negative squared euclidean distance
    ``-||query - prototype||^2``, with ``distance="cosine"`` it is the cosine similarity.
    Everything is differentiable w.r.t. the support and query embeddings.

    Args:
        support: optional ``[n, d]`` or ``[B, n, d]`` support embeddings; given with ``labels``,
            the classifier is fitted at construction.
        labels: optional ``[n]`` or ``[B, n]`` integer labels in ``0..C-1``; every class (every
            class of every task) must have at least one example.
        distance: ``"euclidean"`` or ``"cosine"``.
        normalize: if True, support and query embeddings are L2-normalised before use.

    Example:
        >>> import torch
        >>> support = torch.tensor([[0.0, 0.0], [0.0, 2.0], [4.0, 0.0]])
        >>> classifier = PrototypicalClassifier(support, torch.tensor([0, 0, 1]))
        >>> classifier.prototypes.tolist()
        [[0.0, 1.0], [4.0, 0.0]]
        >>> classifier(torch.tensor([[1.0, 1.0]])).tolist()
        [[-1.0, -10.0]]
    """

    def __init__(
        self,
        support: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        distance: str = "euclidean",
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {', '.join(map(repr, DISTANCES))}, got {distance!r}")
        if (support is None) != (labels is None):
            raise ValueError("support and labels must be given together (or both left out)")
        self.distance = distance
        self.normalize = bool(normalize)
        self.prototypes: torch.Tensor | None = None
        self._fitted: torch.Size | None = None
        if support is not None:
            self.fit_(support, labels)

    def fit_(self, support: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Compute and store the class prototypes.

        Args:
            support: ``[n, d]`` or ``[B, n, d]`` floating point embeddings.
            labels: ``[n]`` or ``[B, n]`` integer labels in ``0..C-1``, every class present
                (in every task), where ``C`` is the largest label plus one.

        Returns:
            The prototypes, ``[C, d]`` or ``[B, C, d]`` (also stored as ``self.prototypes``).

        Example:
            >>> import torch
            >>> PrototypicalClassifier().fit_(torch.tensor([[1.0], [3.0], [5.0]]),
            ...                               torch.tensor([1, 1, 0])).tolist()
            [[5.0], [2.0]]
        """
        batched = check_task(support, labels)
        ways = check_ways(labels, None)
        if self.normalize:
            support = F.normalize(support, dim=-1)
        members = one_hot(labels, ways, support.dtype)  # [..., n, C]
        counts = members.sum(dim=-2)  # [..., C]
        if bool((counts == 0).any()):
            missing = (counts == 0).nonzero()[0].tolist()
            where = (
                f"task {missing[0]} has no example of class {missing[1]}"
                if batched
                else (f"there is no example of class {missing[0]}")
            )
            raise ValueError(
                f"labels must contain every class 0..{ways - 1} (C is the largest label plus one), "
                f"but {where}"
            )
        self.prototypes = members.transpose(-1, -2) @ support / counts.unsqueeze(-1)
        self._fitted = support.shape
        return self.prototypes

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        """Logits of ``query`` against the fitted prototypes.

        Args:
            query: ``[q, d]`` (classifier fitted on one task) or ``[B, q, d]`` (on a batch).

        Returns:
            ``[q, C]`` or ``[B, q, C]`` logits in the query's dtype.

        Example:
            >>> import torch
            >>> classifier = PrototypicalClassifier(distance="cosine")
            >>> _ = classifier.fit_(torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64),
            ...                     torch.tensor([0, 1]))
            >>> classifier(torch.tensor([[3.0, 3.0]], dtype=torch.float64)).round(decimals=4).tolist()
            [[0.7071, 0.7071]]
        """
        check_query(query, self._fitted, type(self).__name__)
        prototypes = self.prototypes
        if self.normalize:
            query = F.normalize(query, dim=-1)
        if self.distance == "cosine":
            return F.normalize(query, dim=-1) @ F.normalize(prototypes, dim=-1).transpose(-1, -2)
        # -||q - c||^2 = 2 q.c - ||c||^2 - ||q||^2: one matrix product instead of a [q, C, d]
        # difference tensor; the rounding of ||q||^2 is a per-query shift that softmax ignores.
        return (
            2 * query @ prototypes.transpose(-1, -2)
            - (prototypes**2).sum(dim=-1).unsqueeze(-2)
            - (query**2).sum(dim=-1, keepdim=True)
        )

    def extra_repr(self) -> str:
        return f"distance={self.distance!r}, normalize={self.normalize}"
