"""MetaOptNet's differentiable multi-class SVM head (Lee et al., CVPR 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._prototypical import check_query, check_task, check_ways, one_hot
from ._qp import solve_qp

__all__ = ["SVClassifier"]


def svm_dual_problem(support: torch.Tensor, labels: torch.Tensor, ways: int, C_reg: float):
    """The MetaOptNet dual QP of a batch of tasks, in ``solve_qp``'s form.

    Args:
        support: ``[B, n, d]`` floating point embeddings.
        labels: ``[B, n]`` integer labels in ``0..ways-1``.
        ways: the number of classes ``k``.
        C_reg: positive float, the SVM's ``C``.

    Returns:
        ``(Q [B, nk, nk], p [B, nk], G [nk, nk], h [B, nk], A [n, nk], b [n])`` with the
        variable of example ``i`` and class ``c`` at index ``i * k + c``; ``G``, ``A``, ``b``
        are shared by the batch. Only ``Q`` depends on ``support``.

    Example:
        >>> import torch
        >>> Q, p, G, h, A, b = svm_dual_problem(torch.ones(1, 2, 3), torch.tensor([[0, 1]]), 2, 0.1)
        >>> Q.shape, A.tolist()
        (torch.Size([1, 4, 4]), [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    """
    batch, n, _ = support.shape
    options = {"dtype": support.dtype, "device": support.device}
    kernel = support @ support.transpose(1, 2)  # linear kernel K = X X^T, [B, n, n]
    eye_k = torch.eye(ways, **options)
    # Q = K kron I_k + I_nk: entry ((i, c), (j, c')) is K_ij [c == c'] (+1 on the diagonal).
    Q = (kernel[:, :, None, :, None] * eye_k[None, None, :, None, :]).reshape(batch, n * ways, n * ways)
    Q = Q + torch.eye(n * ways, **options)
    targets = one_hot(labels, ways, support.dtype).reshape(batch, n * ways)
    G = torch.eye(n * ways, **options)
    A = torch.kron(torch.eye(n, **options), torch.ones(1, ways, **options))  # sum_c alpha_ic
    return Q, -targets, G, C_reg * targets, A, torch.zeros(n, **options)


class SVClassifier(torch.nn.Module):
    """Differentiable Crammer-Singer multi-class linear SVM of MetaOptNet (Lee et al., CVPR 2019).

    ``fit_`` solves MetaOptNet's dual problem for the support embeddings ``X`` (``[n, d]``) and
    labels ``y`` with ``k = ways`` classes: over ``alpha`` in ``R^{n x k}`` (flattened
    row-major into ``z`` in ``R^{nk}``),

        minimise    1/2 z^T (K kron I_k + I_nk) z - onehot(y)^T z
        subject to  z <= C_reg * onehot(y)   (element-wise)
                    sum_c alpha_{i,c} = 0    for every support example i,

    with the linear kernel ``K = X X^T`` (as in MetaOptNet's released code, which also adds the
    identity ``I_nk`` to the quadratic term). ``forward`` returns the logits
    ``logits[j, c] = sum_i alpha_{i,c} <X_i, query_j>`` (times ``scale`` when learnt, as
    MetaOptNet's classification head does). The QP is solved by ``solve_qp``'s interior point
    method (all tasks of a batch as one batched QP) and differentiated implicitly, so gradients
    reach the support embeddings through ``alpha`` and through the kernel, and the query
    embeddings.

    Args:
        support: optional ``[n, d]`` or ``[B, n, d]`` support embeddings (fitted at construction
            when given with ``labels``).
        labels: optional ``[n]`` or ``[B, n]`` integer labels in ``0..ways-1``.
        ways: number of classes; None: the largest label plus one (at each ``fit_``).
        normalize: if True, support and query embeddings are L2-normalised before use.
        C_reg: positive float, the SVM's box constraint ``C`` (MetaOptNet uses 0.1).
        max_iterations: positive int, the interior point iterations allowed; the solver stops
            as soon as it reaches ``tolerance`` (usually after 5-20 iterations), so the default
            only bounds the work on hard problems.
        tolerance: positive float, the solver's scaled KKT residual tolerance.
        learn_scale: if True, the logits are multiplied by ``scale``, an ``nn.Parameter``
            initialised to 1 (MetaOptNet's ``enable_scale``); else by the constant 1.

    Example:
        >>> import torch
        >>> support = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0]], dtype=torch.float64)
        >>> head = SVClassifier(support, torch.tensor([0, 1, 2]))
        >>> head.alpha.sum(dim=1).abs().max() < 1e-9    # sum_c alpha_ic = 0
        tensor(True)
        >>> head(support).argmax(dim=1).tolist()
        [0, 1, 2]
    """

    def __init__(
        self,
        support: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        ways: int | None = None,
        normalize: bool = False,
        C_reg: float = 0.1,
        max_iterations: int = 50,
        tolerance: float = 1e-10,
        learn_scale: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(C_reg, bool) or not isinstance(C_reg, (int, float)) or not C_reg > 0:
            raise ValueError(f"C_reg must be a positive float, got {C_reg!r}")
        if ways is not None and (not isinstance(ways, int) or isinstance(ways, bool) or ways < 1):
            raise ValueError(f"ways must be a positive int or None, got {ways!r}")
        if not isinstance(max_iterations, int) or isinstance(max_iterations, bool) or max_iterations < 1:
            raise ValueError(f"max_iterations must be a positive int, got {max_iterations!r}")
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0:
            raise ValueError(f"tolerance must be a positive float, got {tolerance!r}")
        if (support is None) != (labels is None):
            raise ValueError("support and labels must be given together (or both left out)")
        self.ways = ways
        self.normalize = bool(normalize)
        self.C_reg = float(C_reg)
        self.max_iterations = max_iterations
        self.tolerance = float(tolerance)
        self.learn_scale = bool(learn_scale)
        self.scale = torch.nn.Parameter(torch.tensor(1.0)) if self.learn_scale else 1.0
        self.support: torch.Tensor | None = None
        self.alpha: torch.Tensor | None = None
        if support is not None:
            self.fit_(support, labels)

    def fit_(self, support: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Solve the SVM dual for the support set (all tasks of a batch in one batched QP).

        Args:
            support: ``[n, d]`` or ``[B, n, d]`` floating point embeddings.
            labels: ``[n]`` or ``[B, n]`` integer labels in ``0..ways-1``.

        Returns:
            ``alpha``: ``[n, ways]`` or ``[B, n, ways]`` dual variables in the support's dtype
            (also stored as ``self.alpha``; the embeddings used as ``self.support``).

        Raises:
            RuntimeError: the QP solver did not reach ``tolerance`` in ``max_iterations``.

        Example:
            >>> import torch
            >>> head = SVClassifier(C_reg=0.1)
            >>> alpha = head.fit_(torch.tensor([[1.0], [-1.0]], dtype=torch.float64), torch.tensor([0, 1]))
            >>> alpha.round(decimals=6).tolist()     # both examples are support vectors at C_reg
            [[0.1, -0.1], [-0.1, 0.1]]
        """
        batched = check_task(support, labels)
        ways = check_ways(labels, self.ways)
        if self.normalize:
            support = F.normalize(support, dim=-1)
        tasks = support if batched else support.unsqueeze(0)
        task_labels = labels if batched else labels.unsqueeze(0)
        problem = svm_dual_problem(tasks, task_labels, ways, self.C_reg)
        z = solve_qp(*problem, max_iterations=self.max_iterations, tolerance=self.tolerance)
        alpha = z.reshape(tasks.shape[0], tasks.shape[1], ways)
        self.support = support
        self.alpha = alpha if batched else alpha.squeeze(0)
        return self.alpha

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        """Logits ``scale * (query X^T) alpha``.

        Args:
            query: ``[q, d]`` (fitted on one task) or ``[B, q, d]`` (fitted on a batch).

        Returns:
            ``[q, ways]`` or ``[B, q, ways]`` logits.

        Example:
            >>> import torch
            >>> head = SVClassifier(torch.tensor([[1.0], [-1.0]]), torch.tensor([0, 1]))
            >>> head(torch.tensor([[5.0]])).round(decimals=4).tolist()
            [[1.0, -1.0]]
        """
        check_query(query, None if self.support is None else self.support.shape, type(self).__name__)
        if self.normalize:
            query = F.normalize(query, dim=-1)
        # logits[j, c] = sum_i <query_j, X_i> alpha_ic; the linear kernel of query and support.
        return self.scale * ((query @ self.support.transpose(-1, -2)) @ self.alpha)

    def extra_repr(self) -> str:
        return (
            f"ways={self.ways}, C_reg={self.C_reg}, normalize={self.normalize}, "
            f"max_iterations={self.max_iterations}, tolerance={self.tolerance:g}, "
            f"learn_scale={self.learn_scale}"
        )
