"""WideResNet-28-10 (learn2learn's ``WRN28``/``WRN28Backbone``) as flax linen modules.

Flax twins of ``l2l_multi.backends.torch.vision._wrn``: same fields (plus ``implementation``, see
``Conv2d``), NCHW inputs, the same variable names (``features/layer1/0/bn1/scale``, ...), torch's
default initialisation, so ``l2l_multi.interop`` converts weights both ways.

Batch norm keeps running statistics (momentum 0.1, the final one 0.9, torch's convention, as in
learn2learn): train with ``model.apply(variables, x, train=True, mutable=["batch_stats"],
rngs={"dropout": key})`` (the rng only when ``dropout > 0``), evaluate with ``train=False``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._layers import BatchNorm, Conv2d, torch_default_bias_init, torch_default_kernel_init

__all__ = ["WRN28", "WRN28Backbone"]

DEPTH, WIDEN_FACTOR = 28, 10
BLOCKS_PER_GROUP = (DEPTH - 4) // 6  # 4
STEM_CHANNELS = 16
GROUP_CHANNELS = (16 * WIDEN_FACTOR, 32 * WIDEN_FACTOR, 64 * WIDEN_FACTOR)  # 160, 320, 640
GROUP_STRIDES = (1, 2, 2)
FINAL_BATCH_NORM_MOMENTUM = 0.9  # learn2learn's (a TensorFlow-style value read with torch's meaning)


def _torch_conv(x, features, kernel_size, stride, implementation, name):
    """A convolution with torch's default initialisation (its bias bound needs the input channels)."""
    fan_in = x.shape[-1] * kernel_size**2
    return Conv2d(
        features,
        kernel_size=kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        kernel_init=torch_default_kernel_init,
        bias_init=torch_default_bias_init(fan_in),
        implementation=implementation,
        name=name,
    )(x)


class _Shortcut(nn.Module):
    """A strided 1x1 convolution named "0", like torch's ``shortcut`` Sequential."""

    out_channels: int
    stride: int
    implementation: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _torch_conv(x, self.out_channels, 1, self.stride, self.implementation, "0")


class _WideBasic(nn.Module):
    """Pre-activation wide block on NHWC: BN -> ReLU -> 3x3 conv -> dropout -> BN -> ReLU -> 3x3 conv."""

    out_channels: int
    dropout: float
    stride: int
    implementation: str

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out = nn.relu(BatchNorm(momentum=0.1, epsilon=1e-5, name="bn1")(x, train))
        out = _torch_conv(out, self.out_channels, 3, 1, self.implementation, "conv1")
        # dropout changes no shape or variable, so init skips it and needs no "dropout" rng
        deterministic = not train or self.is_initializing()
        out = nn.Dropout(self.dropout, deterministic=deterministic, name="dropout")(out)
        out = nn.relu(BatchNorm(momentum=0.1, epsilon=1e-5, name="bn2")(out, train))
        out = _torch_conv(out, self.out_channels, 3, self.stride, self.implementation, "conv2")
        if self.stride == 1 and x.shape[-1] == self.out_channels:
            return out + x
        # the shortcut takes the block's input before its batch norm, as in learn2learn
        return out + _Shortcut(self.out_channels, self.stride, self.implementation, name="shortcut")(x)


class _WideGroup(nn.Module):
    """Wide blocks named "0", "1", ... like torch's ``layer1`` ... ``layer3`` Sequentials."""

    out_channels: int
    dropout: float
    stride: int
    implementation: str

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for i in range(BLOCKS_PER_GROUP):
            x = _WideBasic(
                self.out_channels,
                self.dropout,
                self.stride if i == 0 else 1,
                self.implementation,
                name=str(i),
            )(x, train)
        return x


class WRN28Backbone(nn.Module):
    """The WideResNet-28-10 feature extractor (flax twin of the torch ``WRN28Backbone``).

    A 3x3 convolution to 16 channels, three groups of four pre-activation wide blocks (160, 320,
    640 channels; stride 1, 2, 2; 1x1 convolution shortcuts where the shape changes), BatchNorm ->
    ReLU, global average pooling. See the module docstring for how to train and evaluate.

    Attributes: ``dropout`` (0.0: the rate between the two convolutions of every block, in
    [0, 1)), ``implementation`` ("auto", see ``Conv2d``).

    Input: float32 ``[N, 3, H, W]`` (NCHW; 84x84 or 80x80 for mini-ImageNet). Output: float32 ``[N, 640]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = WRN28Backbone()
        >>> x = jnp.ones((2, 3, 8, 8))
        >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compute
        >>> variables["params"]["layer3"]["0"]["shortcut"]["0"]["kernel"].shape
        (1, 1, 320, 640)
        >>> jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x).shape
        (2, 640)
    """

    dropout: float = 0.0
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r} must be a dropout rate in [0, 1)")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected x of shape [N, 3, H, W] (NCHW), got {tuple(x.shape)}")
        x = _torch_conv(jnp.transpose(x, (0, 2, 3, 1)), STEM_CHANNELS, 3, 1, self.implementation, "conv1")
        for group, (channels, stride) in enumerate(zip(GROUP_CHANNELS, GROUP_STRIDES)):
            group_name = f"layer{group + 1}"
            x = _WideGroup(channels, self.dropout, stride, self.implementation, name=group_name)(x, train)
        x = BatchNorm(momentum=FINAL_BATCH_NORM_MOMENTUM, epsilon=1e-5, name="bn1")(x, train)
        return nn.relu(x).mean(axis=(1, 2))


class WRN28(nn.Module):
    """WideResNet-28-10 with a Dense classifier (flax twin of the torch ``WRN28``).

    Attributes: ``output_size``, ``hidden_size`` (640), ``dropout`` (0.0), ``implementation``
    ("auto"). The classifier has torch's default initialisation.

    Input: float32 ``[N, 3, H, W]`` (NCHW). Output: float32 logits ``[N, output_size]``;
    ``method="embed"`` gives the ``[N, 640]`` embedding (torch's ``model.features(x)``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = WRN28(5)
        >>> x = jnp.ones((2, 3, 8, 8))
        >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compute
        >>> jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x).shape
        (2, 5)
    """

    output_size: int
    hidden_size: int = 640
    dropout: float = 0.0
    implementation: str = "auto"

    def setup(self):
        self.features = WRN28Backbone(dropout=self.dropout, implementation=self.implementation)
        self.classifier = nn.Dense(
            self.output_size,
            kernel_init=torch_default_kernel_init,
            bias_init=torch_default_bias_init(self.hidden_size),
        )

    def embed(self, x: jax.Array, train: bool = True) -> jax.Array:
        """The classifier's input ``[N, 640]`` (torch's ``model.features(x)``)."""
        embedding = self.features(x, train)
        if embedding.shape[1] != self.hidden_size:
            raise ValueError(
                f"the backbone gives {embedding.shape[1]} features, but hidden_size={self.hidden_size} "
                "(WRN28's embedding has 640)"
            )
        return embedding

    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        return self.classifier(self.embed(x, train))
