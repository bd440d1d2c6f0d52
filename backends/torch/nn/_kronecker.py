"""Kronecker-factored linear maps and recurrent cells (Arnold, Iqbal & Sha 2019, "When MAML can
adapt fast and how to assist when it cannot").

A ``KroneckerLinear(n, m)`` acts on ``[..., n, m]`` matrices as ``X -> L X R + B``; on the
column-stacked vector it is the ``nm x nm`` matrix ``R^T ⊗ L`` with only ``n^2 + m^2``
parameters. Identity initialisation makes an untrained transform the identity map.
"""

from __future__ import annotations

import torch


def kronecker_addmm(
    left: torch.Tensor,
    right: torch.Tensor,
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> torch.Tensor:
    """``alpha * left @ x @ right + beta * bias``, i.e. ``(right^T ⊗ left) vec(x)`` reshaped.

    Args:
        left: ``[n, n]``; right: ``[m, m]``; x: ``[..., n, m]``; bias: broadcastable to
            ``[..., n, m]`` or ``None``. All the same float dtype.

    Returns:
        ``[..., n, m]``.

    Example:
        >>> import torch
        >>> left, right, x = torch.eye(2), 2 * torch.eye(3), torch.ones(2, 3)
        >>> kronecker_addmm(left, right, x, bias=torch.ones(2, 3))
        tensor([[3., 3., 3.],
                [3., 3., 3.]])
    """
    if left.dim() != 2 or left.shape[0] != left.shape[1]:
        raise ValueError(f"left must be square [n, n], got {tuple(left.shape)}")
    if right.dim() != 2 or right.shape[0] != right.shape[1]:
        raise ValueError(f"right must be square [m, m], got {tuple(right.shape)}")
    if x.dim() < 2 or x.shape[-2:] != (left.shape[0], right.shape[0]):
        raise ValueError(
            f"x must have shape [..., {left.shape[0]}, {right.shape[0]}] to match left and right, "
            f"got {tuple(x.shape)}"
        )
    out = left @ x @ right
    if alpha != 1.0:
        out = alpha * out
    if bias is not None:
        out = out + (bias if beta == 1.0 else beta * bias)
    return out


class KroneckerLinear(torch.nn.Module):
    """``X -> L X R + B`` on ``[..., n, m]`` inputs, with ``L``, ``R`` initialised to identity.

    A 1-d input of ``n * m`` elements is read as the column-stacked ``vec(X)`` and the result
    returned the same way, i.e. ``y = (R^T ⊗ L) x + vec(B)`` (learn2learn's convention).

    Args:
        n: rows of the matrices the layer acts on.
        m: columns of the matrices the layer acts on.
        bias: learn a bias ``B`` of shape ``[n, m]`` (zeros at init).
        psd: parametrise the factors as ``L = A^T A`` and ``R = C^T C`` (positive semi-definite,
            so as a gradient preconditioner the update stays a descent direction; learn2learn's
            parametrisation, so its checkpoints give the same map).
        dtype: of the parameters.
        device: of the parameters.

    Input: ``[..., n, m]`` or ``[n * m]``, the parameters' dtype. Output: the input's shape.

    Example:
        >>> import torch
        >>> layer = KroneckerLinear(2, 3)
        >>> x = torch.randn(4, 2, 3)
        >>> torch.allclose(layer(x), x)
        True
        >>> layer(torch.arange(6.0)).tolist()
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """

    def __init__(self, n: int, m: int, bias: bool = True, psd: bool = False, dtype=None, device=None):
        super().__init__()
        if n < 1 or m < 1:
            raise ValueError(f"n={n!r} and m={m!r} must be positive")
        self.n, self.m, self.psd = int(n), int(m), bool(psd)
        self.left = torch.nn.Parameter(torch.eye(self.n, dtype=dtype, device=device))
        self.right = torch.nn.Parameter(torch.eye(self.m, dtype=dtype, device=device))
        self.bias = (
            torch.nn.Parameter(torch.zeros(self.n, self.m, dtype=dtype, device=device)) if bias else None
        )

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The effective ``(L, R)`` (``A^T A`` and ``C^T C`` when ``psd``)."""
        if self.psd:
            return self.left.t() @ self.left, self.right.t() @ self.right
        return self.left, self.right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = self.factors()
        if x.dim() == 1:
            if x.shape[0] != self.n * self.m:
                raise ValueError(
                    f"a 1-d x must have n * m = {self.n * self.m} elements (vec of an [{self.n}, {self.m}] "
                    f"matrix), got {x.shape[0]}"
                )
            matrix = x.reshape(self.m, self.n).t()  # column-stacked vec(X) -> X
            return kronecker_addmm(left, right, matrix, self.bias).t().reshape(-1)
        return kronecker_addmm(left, right, x, self.bias)


class KroneckerRNN(torch.nn.Module):
    """An Elman cell whose three maps are ``KroneckerLinear`` layers (learn2learn's layout):
    ``h' = sigma(W_h(x) + U_h(h))`` and ``output = W_y(h')``.

    Args:
        n: rows of the input and hidden matrices.
        m: columns of the input and hidden matrices.
        bias: every map learns a bias.
        sigma: the nonlinearity (default ``torch.nn.Tanh()``).
        psd: keyword; positive semi-definite factors.
        dtype: keyword; of the parameters.
        device: keyword; of the parameters.

    ``forward(x, hidden=None) -> (output, new_hidden)``; ``x``, ``hidden`` and both results are
    ``[..., n, m]`` matrices or ``[n * m]`` column-stacked vectors; ``hidden`` defaults to zeros.
    Parameter names (``W_h``, ``U_h``, ``W_y``) are learn2learn's, so its checkpoints load.

    Example:
        >>> import torch
        >>> cell = KroneckerRNN(3, 2)
        >>> out, hidden = cell(torch.randn(6), torch.randn(6))
        >>> out.shape
        torch.Size([6])
    """

    def __init__(
        self, n: int, m: int, bias: bool = True, sigma=None, *, psd: bool = False, dtype=None, device=None
    ):
        super().__init__()
        options = dict(bias=bias, psd=psd, dtype=dtype, device=device)
        self.W_h = KroneckerLinear(n, m, **options)
        self.U_h = KroneckerLinear(n, m, **options)
        self.W_y = KroneckerLinear(n, m, **options)
        self.sigma = torch.nn.Tanh() if sigma is None else sigma

    def forward(self, x: torch.Tensor, hidden: torch.Tensor | None = None):
        if hidden is None:
            hidden = torch.zeros_like(x)
        new_hidden = self.sigma(self.W_h(x) + self.U_h(hidden))
        return self.W_y(new_hidden), new_hidden


class KroneckerLSTM(torch.nn.Module):
    """An LSTM cell whose eight maps are ``KroneckerLinear`` layers (learn2learn's layout: input
    maps ``W_i*`` and hidden maps ``W_h*`` for the input, forget, cell and output gates).

    Args:
        n: rows of the input and hidden matrices.
        m: columns of the input and hidden matrices.
        bias: every map learns a bias.
        sigma: the gates' nonlinearity (default ``torch.nn.Sigmoid()``); the cell uses tanh.
        psd: keyword; positive semi-definite factors.
        dtype: keyword; of the parameters.
        device: keyword; of the parameters.

    ``forward(x, hidden=None) -> (h, (h, c))`` with ``x``, ``h``, ``c`` of the same shape
    (``[..., n, m]`` or ``[n * m]``); ``hidden = (h, c)`` defaults to zeros.

    Example:
        >>> import torch
        >>> cell = KroneckerLSTM(2, 3)
        >>> out, (h, c) = cell(torch.ones(2, 3), (torch.zeros(2, 3), torch.zeros(2, 3)))
        >>> out.shape, c.shape
        (torch.Size([2, 3]), torch.Size([2, 3]))
    """

    def __init__(
        self, n: int, m: int, bias: bool = True, sigma=None, *, psd: bool = False, dtype=None, device=None
    ):
        super().__init__()
        options = dict(bias=bias, psd=psd, dtype=dtype, device=device)
        for gate in "ifgo":
            setattr(self, f"W_i{gate}", KroneckerLinear(n, m, **options))
            setattr(self, f"W_h{gate}", KroneckerLinear(n, m, **options))
        self.sigma = torch.nn.Sigmoid() if sigma is None else sigma
        self.tanh = torch.nn.Tanh()

    def forward(self, x: torch.Tensor, hidden=None):
        h, c = (torch.zeros_like(x), torch.zeros_like(x)) if hidden is None else hidden
        i = self.sigma(self.W_ii(x) + self.W_hi(h))
        f = self.sigma(self.W_if(x) + self.W_hf(h))
        g = self.tanh(self.W_ig(x) + self.W_hg(h))
        o = self.sigma(self.W_io(x) + self.W_ho(h))
        c = f * c + i * g
        h = o * self.tanh(c)
        return h, (h, c)
