"""Layers with torch semantics for the flax vision models: ``Conv2d``/``conv2d`` and ``BatchNorm``.

``Conv2d`` has two interchangeable implementations that agree to float32 rounding:

- ``"xla"``: ``jax.lax.conv_general_dilated``.
- ``"matmul"``: im2col. The ``k * k`` shifted (and strided) slices of the zero-padded input are
  concatenated on the channel axis and multiplied by the kernel reshaped to ``[k * k * in, out]``.

Why two: on CPU, ``jax.vmap`` of a MAML meta-step over tasks turns every per-task convolution
into a grouped convolution whose backward pass XLA handles very badly (51 s against torch's 1.1 s
for an Omniglot meta-batch of 32; jax-ml/jax issue 13800). As matmuls they become batched
matmuls, which XLA handles well. ``"auto"`` (the default) picks ``"matmul"`` when
``jax.default_backend() == "cpu"`` and ``"xla"`` otherwise (accelerators run convolutions
natively). The matmul form materialises ``k * k`` times the input, so on large images it needs
correspondingly more memory.

``BatchNorm`` implements ``torch.nn.BatchNorm{1,2}d`` exactly rather than flax's ``nn.BatchNorm``,
so converting weights is a plain copy: ``momentum`` as in torch (running = (1 - momentum) *
running + momentum * batch), the running variance stored unbiased, a ``num_batches_tracked``
counter, and ``track_running_stats=False`` meaning batch statistics in train and eval mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("auto", "xla", "matmul")

Initializer = Callable[..., jax.Array]


def _resolve_implementation(implementation: str) -> str:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation={implementation!r} is not one of {IMPLEMENTATIONS}")
    if implementation == "auto":
        return "matmul" if jax.default_backend() == "cpu" else "xla"
    return implementation


def _conv_xla(x, kernel, stride, padding, precision):
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=precision,
    )


def _conv_matmul(x, kernel, stride, padding, precision):
    kernel_h, kernel_w, in_channels, out_channels = kernel.shape
    batch, height, width, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out_h = (height + 2 * padding - kernel_h) // stride + 1
    out_w = (width + 2 * padding - kernel_w) // stride + 1
    # Slice order (dy, dx) then channel matches the row-major flattening of an HWIO kernel.
    patches = [
        jax.lax.slice(
            padded,
            (0, dy, dx, 0),
            (batch, dy + stride * (out_h - 1) + 1, dx + stride * (out_w - 1) + 1, in_channels),
            (1, stride, stride, 1),
        )
        for dy in range(kernel_h)
        for dx in range(kernel_w)
    ]
    columns = jnp.concatenate(patches, axis=-1)
    matrix = kernel.reshape(kernel_h * kernel_w * in_channels, out_channels)
    return jnp.dot(columns, matrix, precision=precision)


def conv2d(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    stride: int = 1,
    padding: int = 1,
    implementation: str = "auto",
    precision: Any = None,
) -> jax.Array:
    """2-d cross-correlation (torch's ``F.conv2d`` in NHWC) with symmetric zero padding.

    Args:
        x: float ``[N, H, W, C_in]``.
        kernel: float ``[kh, kw, C_in, C_out]`` (HWIO).
        bias: optional float ``[C_out]``.
        stride: the same along H and W.
        padding: zero padding on each side of H and W.
        implementation: ``"xla"``, ``"matmul"`` or ``"auto"`` (see the module docstring).
        precision: passed to the convolution or matmul (``None``: the backend default).

    Returns:
        float ``[N, (H + 2p - kh) // stride + 1, (W + 2p - kw) // stride + 1, C_out]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
        >>> kernel = jax.random.normal(jax.random.key(1), (3, 3, 1, 8))
        >>> a = conv2d(x, kernel, stride=2, implementation="xla")
        >>> b = conv2d(x, kernel, stride=2, implementation="matmul")
        >>> a.shape, bool(jnp.allclose(a, b, atol=1e-5))
        ((2, 14, 14, 8), True)
    """
    if x.ndim != 4:
        raise ValueError(f"x must be [N, H, W, C] (4-d), got shape {tuple(x.shape)}")
    if kernel.ndim != 4 or kernel.shape[2] != x.shape[-1]:
        raise ValueError(
            f"kernel must be [kh, kw, C_in, C_out] with C_in={x.shape[-1]} (from x), got shape "
            f"{tuple(kernel.shape)}"
        )
    if stride < 1 or padding < 0:
        raise ValueError(f"stride={stride!r} must be >= 1 and padding={padding!r} >= 0")
    if _resolve_implementation(implementation) == "xla":
        y = _conv_xla(x, kernel, stride, padding, precision)
    else:
        y = _conv_matmul(x, kernel, stride, padding, precision)
    return y if bias is None else y + bias


class Conv2d(nn.Module):
    """A 2-d convolution with params ``'kernel'`` ``[k, k, in, out]`` (HWIO) and ``'bias'`` ``[out]``.

    Attributes:
        features: output channels.
        kernel_size: square kernel side.
        stride: stride along H and W.
        padding: zero padding on each side (torch's ``padding=``).
        use_bias: whether there is a ``'bias'`` parameter.
        implementation: ``"auto"`` (default), ``"xla"`` or ``"matmul"`` (see the module docstring).
        precision: matmul/convolution precision (``None``: backend default).
        kernel_init / bias_init: initialisers; default xavier-uniform and zeros (MAML's).

    Input: float ``[N, H, W, in]`` (NHWC). Output: float ``[N, H', W', out]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = Conv2d(16, stride=2)
        >>> variables = layer.init(jax.random.key(0), jnp.zeros((1, 28, 28, 3)))
        >>> variables["params"]["kernel"].shape, layer.apply(variables, jnp.zeros((4, 28, 28, 3))).shape
        ((3, 3, 3, 16), (4, 14, 14, 16))
    """

    features: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 1
    use_bias: bool = True
    implementation: str = "auto"
    precision: Any = None
    kernel_init: Initializer = nn.initializers.xavier_uniform()
    bias_init: Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"Conv2d expects x of shape [N, H, W, C] (4-d), got {tuple(x.shape)}")
        shape = (self.kernel_size, self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32) if self.use_bias else None
        return conv2d(
            x,
            kernel,
            bias,
            stride=self.stride,
            padding=self.padding,
            implementation=self.implementation,
            precision=self.precision,
        )


class BatchNorm(nn.Module):
    """Batch normalisation over the last axis with torch's semantics (see the module docstring).

    Variables: ``params`` ``'scale'`` and ``'bias'`` ``[C]`` when ``affine``; with
    ``track_running_stats``, ``batch_stats`` ``'mean'``, ``'var'`` (unbiased) ``[C]`` float32 and
    ``'num_batches_tracked'`` int32 scalar, updated when ``train=True`` — which then needs
    ``mutable=["batch_stats"]`` in ``apply`` (flax raises otherwise).

    Attributes:
        momentum: torch's: running = (1 - momentum) * running + momentum * batch; ``None`` gives a
            cumulative average (1 / num_batches_tracked), as in torch.
        epsilon: added to the variance.
        affine: learn a scale and a shift.
        track_running_stats: False: always normalise with the batch's statistics.
        scale_init / bias_init: initialisers for the affine parameters.

    Input: float ``[..., C]`` (NHWC or ``[N, C]``); ``train`` chooses batch statistics (True)
    or running ones (False, only with ``track_running_stats``). Output: same shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = BatchNorm(momentum=0.1)
        >>> x = jnp.arange(8.0).reshape(4, 2)
        >>> variables = layer.init(jax.random.key(0), x)
        >>> y, state = layer.apply(variables, x, train=True, mutable=["batch_stats"])
        >>> state["batch_stats"]["mean"], state["batch_stats"]["num_batches_tracked"]
        (Array([0.3, 0.4], dtype=float32), Array(1, dtype=int32))
    """

    momentum: float | None = 0.1
    epsilon: float = 1e-5
    affine: bool = True
    track_running_stats: bool = True
    scale_init: Initializer = nn.initializers.ones
    bias_init: Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        channels = x.shape[-1]
        axes = tuple(range(x.ndim - 1))
        if self.track_running_stats:
            running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((channels,), jnp.float32))
            running_var = self.variable("batch_stats", "var", lambda: jnp.ones((channels,), jnp.float32))
            count = self.variable("batch_stats", "num_batches_tracked", lambda: jnp.zeros((), jnp.int32))
        if train or not self.track_running_stats:
            values_per_channel = x.size // channels
            if values_per_channel < 2:
                # torch refuses too; a 1-sample batch would normalise everything to the shift.
                raise ValueError(
                    f"BatchNorm needs more than 1 value per channel for batch statistics, got x of shape "
                    f"{tuple(x.shape)}"
                )
            mean = x.mean(axis=axes)
            var = jnp.square(x - mean).mean(axis=axes)  # biased, as torch normalises with
            if self.track_running_stats and not self.is_initializing():
                count.value = count.value + 1
                momentum = 1.0 / count.value if self.momentum is None else self.momentum
                unbiased = var * (values_per_channel / (values_per_channel - 1))
                running_mean.value = (1 - momentum) * running_mean.value + momentum * mean
                running_var.value = (1 - momentum) * running_var.value + momentum * unbiased
        else:
            mean, var = running_mean.value, running_var.value
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        if self.affine:
            y = y * self.param("scale", self.scale_init, (channels,), jnp.float32)
            y = y + self.param("bias", self.bias_init, (channels,), jnp.float32)
        return y


# torch's default initialisation of Linear and Conv layers: weights kaiming-uniform with a = sqrt(5),
# i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases from the same interval.
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias_init(fan_in: int) -> Initializer:
    """torch's default bias initialiser for a layer with ``fan_in`` inputs: U(+-1/sqrt(fan_in)).

    The bound depends on the layer's inputs, which flax's ``(key, shape, dtype)`` initialisers do
    not see, hence a factory.

    Example:
        >>> import jax
        >>> bias = torch_default_bias_init(4)(jax.random.key(0), (1000,))
        >>> bool(abs(bias).max() <= 0.5)
        True
    """
    bound = 1.0 / fan_in**0.5

    def init(key: jax.Array, shape: tuple, dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init
