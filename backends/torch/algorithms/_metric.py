"""Metric-learning and closed-form-head algorithms: ProtoNet and MetaOptNet (SVM or ridge head).

Both embed a task's support and query inputs with a feature extractor, fit a head on the
support embeddings and return the query logits; training them is ordinary backpropagation of a
query loss into the feature extractor (and the head's learnable scalars), with no inner loop.
"""

from __future__ import annotations

import torch

from ..nn._prototypical import PrototypicalClassifier
from ..nn._ridge import RidgeClassifier
from ..nn._svm import SVClassifier

__all__ = ["MetaOptNet", "ProtoNet"]

HEADS = {"svm": SVClassifier, "ridge": RidgeClassifier}


class _EmbedAndFit(torch.nn.Module):
    """Shared ``forward``: embed support and query, ``head.fit_`` on the support, score the query."""

    features: torch.nn.Module
    head: torch.nn.Module

    def embed(self, inputs: torch.Tensor, task_dims: int, name: str) -> torch.Tensor:
        """Run ``features`` on ``inputs`` ``[*task_shape, ...]`` -> ``[*task_shape, d]``.

        Args:
            inputs: ``[*task_shape, ...]`` inputs of any dtype the extractor accepts.
            task_dims: how many leading dimensions index examples (1: ``[n]``; 2: ``[B, n]``);
                the rest are one input's shape.
            name: ``"support"`` or ``"query"``, for the error message.

        The extractor sees ``[N, ...]`` (N examples) and its output is flattened to ``[N, d]``.

        Returns:
            ``[*task_shape, d]`` embeddings.

        Example:
            >>> import torch
            >>> model = ProtoNet(torch.nn.Conv2d(1, 2, 3))          # [N, 1, 3, 3] -> [N, 2, 1, 1]
            >>> model.embed(torch.zeros(4, 5, 1, 3, 3), 2, "support").shape
            torch.Size([4, 5, 2])
        """
        if task_dims == 2:
            # One extractor call per task: with batch norm in training mode each task's set gets
            # its own statistics, as when tasks are processed one by one (and as on jax).
            return torch.stack([self.embed(task_inputs, 1, name) for task_inputs in inputs])
        task_shape = inputs.shape[:task_dims]
        flat = inputs.reshape(-1, *inputs.shape[task_dims:])
        embeddings = self.features(flat)
        if (
            not isinstance(embeddings, torch.Tensor)
            or embeddings.dim() < 1
            or (embeddings.shape[0] != flat.shape[0])
        ):
            shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings)
            raise ValueError(
                f"features must map [N, ...] inputs to [N, d] embeddings; for the {name} inputs of "
                f"shape {tuple(flat.shape)} it returned {shape}"
            )
        return embeddings.reshape(*task_shape, -1)

    def forward(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor
    ) -> torch.Tensor:
        """Query logits for one task or a batch of tasks.

        Args:
            support: ``[n, ...]`` support inputs (one task) or ``[B, n, ...]`` (a batch of tasks).
            support_labels: ``[n]`` or ``[B, n]`` integer labels; their number of dimensions
                says whether the inputs are one task or a batch.
            query: ``[q, ...]`` or ``[B, q, ...]`` query inputs (same per-input shape).

        Returns:
            ``[q, ways]`` or ``[B, q, ways]`` logits.

        Example:
            >>> import torch
            >>> model = MetaOptNet(torch.nn.Flatten(), head="svm")
            >>> support = torch.tensor([[[1.0]], [[-1.0]]])             # two 1x1 "images"
            >>> model(support, torch.tensor([0, 1]), torch.tensor([[[5.0]]])).round(decimals=4).tolist()
            [[1.0, -1.0]]
        """
        for name, value in (("support", support), ("support_labels", support_labels), ("query", query)):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        task_dims = support_labels.dim()
        if task_dims not in (1, 2):
            raise ValueError(
                f"support_labels must have shape [n] (one task) or [B, n] (a batch of tasks), "
                f"got {tuple(support_labels.shape)}"
            )
        if tuple(support.shape[:task_dims]) != tuple(support_labels.shape):
            raise ValueError(
                f"support must have shape [{', '.join(map(str, support_labels.shape))}, ...] to match "
                f"support_labels of shape {tuple(support_labels.shape)}, got {tuple(support.shape)}"
            )
        if query.dim() != support.dim() or (task_dims == 2 and query.shape[0] != support.shape[0]):
            expected = f"[B={support.shape[0]}, q, ...]" if task_dims == 2 else "[q, ...]"
            raise ValueError(
                f"query must have shape {expected} with {support.dim()} dimensions like support "
                f"{tuple(support.shape)}, got {tuple(query.shape)}"
            )
        # Support and query go through the extractor separately, as in the reference
        # implementations: with batch norm in training mode each set gets its own statistics.
        support_embeddings = self.embed(support, task_dims, "support")
        query_embeddings = self.embed(query, task_dims, "query")
        self.head.fit_(support_embeddings, support_labels)
        return self.head(query_embeddings)

    # -- the functional contract (l2l_multi._contract.MetricLearner) -------------------------
    def meta_parameters(self, layout: str = "torch") -> dict:
        """``{"features": {name: tensor}, "head": {name: tensor}}`` of the live parameters (``head``
        only when the head has learnable scalars); ``.grad`` of a loss computed from it fills
        these modules' parameters, as for the gradient-based learners."""
        if layout != "torch":
            raise ValueError(f"layout={layout!r}: metric learners give their tree in the torch layout")
        tree = {"features": dict(self.features.named_parameters())}
        head = dict(self.head.named_parameters())
        return {**tree, "head": head} if head else tree

    def init(self, key, x) -> dict:
        """Re-initialise the feature extractor's layers under the int seed ``key`` (the global
        random state is left as it was) and return ``meta_parameters()``; ``x`` (a sample input)
        is accepted for the shared signature."""
        from ._functional import reset_parameters

        reset_parameters([self.features], key)
        return self.meta_parameters()

    def from_variables(self, variables) -> dict:
        """Load the feature extractor's ``{name: tensor}`` and return ``meta_parameters()``."""
        from ._base import _load_variables

        _load_variables(self.features, variables, "variables")
        return self.meta_parameters()

    def task_loss(
        self, meta_params, support_x, support_y, query_x, query_y, *, loss=None, steps=1, train=True
    ):
        """``(query loss 0-d, query logits [q, ways])`` of one task with the modules run on
        ``meta_params`` (functional: differentiable w.r.t. it; ``steps`` is ignored, there is no
        inner loop; ``loss=None``: cross-entropy)."""
        from ._functional import functional_mode, task_tensors

        loss = torch.nn.functional.cross_entropy if loss is None else loss
        support_x, support_y, query_x, query_y = task_tensors(
            self, support_x=support_x, support_y=support_y, query_x=query_x, query_y=query_y
        )
        flat = {f"features.{name}": value for name, value in meta_params["features"].items()}
        flat.update({f"head.{name}": value for name, value in meta_params.get("head", {}).items()})
        with functional_mode(self.features, train=train):
            logits = torch.func.functional_call(self, flat, (support_x, support_y, query_x), strict=False)
        return loss(logits, query_y), logits


class ProtoNet(_EmbedAndFit):
    """Prototypical networks (Snell et al., NeurIPS 2017): nearest class mean in embedding space.

    ``forward(support, support_labels, query)`` embeds the inputs with ``features``, fits a
    ``PrototypicalClassifier`` on the support embeddings (every class ``0..C-1`` must appear in
    every task) and returns its query logits (negative squared euclidean distances or cosine
    similarities). Train by minimising the cross-entropy of the logits and the query labels.

    Args:
        features: any ``torch.nn.Module`` mapping ``[N, ...]`` inputs to ``[N, d]`` embeddings
            (higher-dimensional outputs are flattened to ``[N, d]``).
        distance: ``"euclidean"`` or ``"cosine"``.
        normalize: if True, embeddings are L2-normalised before the prototypes are formed.

    Example:
        >>> import torch
        >>> model = ProtoNet(torch.nn.Linear(4, 3))
        >>> support, query = torch.randn(10, 4), torch.randn(6, 4)
        >>> logits = model(support, torch.arange(5).repeat(2), query)
        >>> logits.shape
        torch.Size([6, 5])
        >>> torch.nn.functional.cross_entropy(logits, torch.arange(5).repeat(2)[:6]).backward()
        >>> model.features.weight.grad.shape
        torch.Size([3, 4])
    """

    def __init__(self, features: torch.nn.Module, distance: str = "euclidean", normalize: bool = False):
        super().__init__()
        if not isinstance(features, torch.nn.Module):
            raise TypeError(f"features must be a torch.nn.Module, got {type(features).__name__}")
        self.features = features
        self.head = PrototypicalClassifier(distance=distance, normalize=normalize)


class MetaOptNet(_EmbedAndFit):
    """MetaOptNet (Lee et al., CVPR 2019) and R2D2 (Bertinetto et al., ICLR 2019).

    ``forward(support, support_labels, query)`` embeds the inputs with ``features``, fits a
    differentiable closed-form/convex head on the support embeddings and returns its query
    logits; the meta-gradient reaches ``features`` through the head's solution (implicit
    differentiation of the SVM's QP, or the ridge regression's closed form).

    Args:
        features: any ``torch.nn.Module`` mapping ``[N, ...]`` inputs to ``[N, d]`` embeddings
            (higher-dimensional outputs are flattened to ``[N, d]``).
        head: ``"svm"`` (``SVClassifier``, MetaOptNet-SVM) or ``"ridge"`` (``RidgeClassifier``,
            MetaOptNet-RR / R2D2).
        **head_kwargs: keyword arguments of the head (``ways``, ``C_reg``, ``reg``,
            ``learn_scale``, ``normalize``, ...); the head's learnable scalars, if any, are
            parameters of this module.

    Example:
        >>> import torch
        >>> model = MetaOptNet(torch.nn.Linear(4, 3), head="ridge", reg=0.5)
        >>> support, query = torch.randn(2, 6, 4), torch.randn(2, 5, 4)   # two tasks
        >>> labels = torch.tensor([0, 1, 2]).repeat(2, 2)
        >>> model(support, labels, query).shape
        torch.Size([2, 5, 3])
        >>> sorted(name for name, _ in model.named_parameters())
        ['features.bias', 'features.weight', 'head.bias', 'head.scale']
    """

    def __init__(self, features: torch.nn.Module, head: str = "svm", **head_kwargs):
        super().__init__()
        if not isinstance(features, torch.nn.Module):
            raise TypeError(f"features must be a torch.nn.Module, got {type(features).__name__}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(map(repr, HEADS))}, got {head!r}")
        for reserved in ("support", "labels"):
            if reserved in head_kwargs:
                raise TypeError(
                    f"MetaOptNet fits the head in forward; {reserved}= is not a head argument here"
                )
        self.features = features
        self.head_type = head
        self.head = HEADS[head](**head_kwargs)

    def from_variables(self, variables, head=None) -> dict:
        """Load the feature extractor's ``{name: tensor}`` and, when given, the head's learnable
        scalars ``head`` (``{name: tensor}``); return ``meta_parameters()``."""
        from ._base import _load_variables

        if head is not None:
            _load_variables(self.head, head, "head")
        return super().from_variables(variables)
