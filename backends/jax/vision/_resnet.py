"""ResNet-12 (MetaOptNet's, learn2learn's ``ResNet12``/``ResNet12Backbone``) as flax linen modules.

Flax twins of ``l2l_multi.backends.torch.vision._resnet``: same fields (plus ``implementation``,
see ``Conv2d``), NCHW inputs, the same variable names (``features/layer1/0/conv1/kernel``, ...),
so ``l2l_multi.interop`` converts weights both ways.

Batch norm keeps running statistics: call ``model.apply(variables, x, train=True,
mutable=["batch_stats"], rngs={"dropout": key})`` to train (it returns ``(output, updates)``) and
``model.apply(variables, x, train=False)`` to evaluate. The ``"dropout"`` rng is needed in training
mode when ``dropblock_dropout`` or ``embedding_dropout`` is above 0; ``init`` needs none.

One difference from the torch twin: DropBlock drops at rate ``dropblock_dropout`` from the first
step, without learn2learn's 40000-step warm-up, whose step counter a pure ``apply`` cannot keep.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._layers import BatchNorm, Conv2d, torch_default_bias_init, torch_default_kernel_init

__all__ = ["ResNet12", "ResNet12Backbone"]

WIDER_CHANNELS = (64, 160, 320, 640)  # MetaOptNet's
NARROWER_CHANNELS = (64, 128, 256, 512)  # TADAM's
# torch's kaiming_normal_(mode="fan_out", nonlinearity="leaky_relu") with slope 0: std sqrt(2 / fan_out)
_kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _check_arguments(module) -> None:
    for name in ("embedding_dropout", "dropblock_dropout"):
        value = getattr(module, name)
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name}={value!r} must be a dropout rate in [0, 1)")
    for name in ("dropblock_size", "channels"):
        value = getattr(module, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int")


def drop_block(x: jax.Array, drop_rate: float, block_size: int, key: jax.Array) -> jax.Array:
    """DropBlock (Ghiasi et al. 2018) on NHWC maps, as MetaOptNet applies it.

    Random ``block_size x block_size`` squares of every channel are zeroed (about ``drop_rate`` of
    the map; the block is clipped to the map) and the rest is scaled by the inverse of the kept
    fraction of the whole batch.

    Args:
        x: float ``[N, H, W, C]``.
        drop_rate: expected dropped fraction, in [0, 1).
        block_size: side of the squares.
        key: a ``jax.random`` key.

    Returns:
        float ``[N, H, W, C]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> y = drop_block(jnp.ones((2, 10, 10, 3)), 0.3, 3, jax.random.key(0))
        >>> y.shape, bool(jnp.isclose(y.mean(), 1.0)), bool((y == 0).any())
        ((2, 10, 10, 3), True, True)
    """
    batch, height, width, channels = x.shape
    size = min(block_size, height, width)
    seeds_shape = (batch, height - size + 1, width - size + 1, channels)
    gamma = min(1.0, drop_rate / size**2 * (height * width) / (seeds_shape[1] * seeds_shape[2]))
    seeds = jax.random.bernoulli(key, gamma, seeds_shape).astype(x.dtype)
    # A seed at (i, j) drops rows i..i+size-1 and columns j..j+size-1: a max over the size x size
    # window ending at each position of the zero-padded seed map.
    padding = ((0, 0), (size - 1, size - 1), (size - 1, size - 1), (0, 0))
    covered = nn.max_pool(jnp.pad(seeds, padding), (size, size), strides=(1, 1), padding="VALID")
    keep = 1.0 - covered
    return x * keep * (keep.size / jnp.maximum(keep.sum(), 1.0))


class _Projection(nn.Module):
    """1x1 conv (no bias) -> BatchNorm, named "0" and "1" like torch's ``downsample`` Sequential."""

    out_channels: int
    implementation: str

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = Conv2d(
            self.out_channels,
            kernel_size=1,
            padding=0,
            use_bias=False,
            kernel_init=_kaiming_fan_out,
            implementation=self.implementation,
            name="0",
        )(x)
        return BatchNorm(momentum=0.1, epsilon=1e-5, name="1")(x, train)


class _ResNet12Block(nn.Module):
    """Three 3x3 conv -> BatchNorm (LeakyReLU 0.1 between), a projection shortcut, LeakyReLU, 2x2
    max-pool, then dropout or DropBlock in training mode; NHWC."""

    out_channels: int
    drop_rate: float
    use_drop_block: bool
    block_size: int
    implementation: str

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out = x
        for i in (1, 2, 3):
            out = Conv2d(
                self.out_channels,
                use_bias=False,
                kernel_init=_kaiming_fan_out,
                implementation=self.implementation,
                name=f"conv{i}",
            )(out)
            out = BatchNorm(momentum=0.1, epsilon=1e-5, name=f"bn{i}")(out, train)
            if i < 3:
                out = nn.leaky_relu(out, 0.1)
        # the shortcut runs after the main path, as in torch: interop pairs layers in call order
        shortcut = _Projection(self.out_channels, self.implementation, name="downsample")(x, train)
        out = nn.leaky_relu(out + shortcut, 0.1)
        out = nn.max_pool(out, (2, 2), strides=(2, 2), padding="VALID")  # torch's floor mode
        # dropout changes no shape or variable, so init skips it and needs no "dropout" rng
        if not train or self.drop_rate == 0.0 or self.is_initializing():
            return out
        if self.use_drop_block:
            return drop_block(out, self.drop_rate, self.block_size, self.make_rng("dropout"))
        return nn.Dropout(self.drop_rate, deterministic=False)(out)


class _ResNet12Layer(nn.Module):
    """One block named "0", like torch's one-block ``layer1`` ... ``layer4`` Sequentials."""

    out_channels: int
    drop_rate: float
    use_drop_block: bool
    block_size: int
    implementation: str

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        return _ResNet12Block(
            self.out_channels,
            self.drop_rate,
            self.use_drop_block,
            self.block_size,
            self.implementation,
            name="0",
        )(x, train)


class ResNet12Backbone(nn.Module):
    """The ResNet-12 feature extractor of MetaOptNet (flax twin of the torch ``ResNet12Backbone``).

    Four residual blocks (three 3x3 conv -> BatchNorm with LeakyReLU(0.1), a 1x1 conv + BatchNorm
    shortcut, LeakyReLU, 2x2 max-pool; dropout after blocks 1-2 and DropBlock after blocks 3-4 in
    training mode), optional global average pooling, flattening in torch's (C, H, W) order, dropout.
    Convolutions are kaiming-normal (fan_out, gain sqrt 2), batch-norm scales 1, shifts 0, with
    running statistics (momentum 0.1, eps 1e-5, torch's convention); see the module docstring for
    how to train and evaluate.

    Attributes: ``avg_pool`` (True), ``wider`` (True: channels (64, 160, 320, 640); False: (64, 128,
    256, 512)), ``embedding_dropout`` (0.0), ``dropblock_dropout`` (0.1), ``dropblock_size`` (5),
    ``channels`` (3), ``implementation`` ("auto", see ``Conv2d``).

    Input: float32 ``[N, channels, H, W]`` (NCHW; 84x84 for mini-ImageNet).
    Output: float32 ``[N, C]``, or ``[N, C * H/16 * W/16]`` with ``avg_pool=False``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = ResNet12Backbone(wider=False)
        >>> x = jnp.ones((2, 3, 32, 32))
        >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compute
        >>> sorted(variables), variables["params"]["layer1"]["0"]["conv1"]["kernel"].shape
        (['batch_stats', 'params'], (3, 3, 3, 64))
        >>> jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x).shape
        (2, 512)
    """

    avg_pool: bool = True
    wider: bool = True
    embedding_dropout: float = 0.0
    dropblock_dropout: float = 0.1
    dropblock_size: int = 5
    channels: int = 3
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        _check_arguments(self)
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected x of shape [N, {self.channels}, H, W] (NCHW), got {tuple(x.shape)}")
        x = jnp.transpose(x, (0, 2, 3, 1))
        for i, width in enumerate(WIDER_CHANNELS if self.wider else NARROWER_CHANNELS):
            x = _ResNet12Layer(
                width,
                self.dropblock_dropout,
                i >= 2,
                self.dropblock_size,
                self.implementation,
                name=f"layer{i + 1}",
            )(x, train)
        if self.avg_pool:  # learn2learn's AvgPool2d(5) on the 5x5 maps of 84x84 inputs; global on any size
            x = x.mean(axis=(1, 2))
        else:
            x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        deterministic = not train or self.is_initializing()
        return nn.Dropout(self.embedding_dropout, deterministic=deterministic, name="dropout")(x)


class ResNet12(nn.Module):
    """MetaOptNet's ResNet-12 with a Dense classifier (flax twin of the torch ``ResNet12``).

    Attributes: ``output_size``, ``hidden_size`` (640: the embedding width the classifier takes),
    then ``avg_pool``, ``wider``, ``embedding_dropout``, ``dropblock_dropout``, ``dropblock_size``,
    ``channels``, ``implementation`` as in ``ResNet12Backbone``. The classifier has torch's default
    initialisation (kernel and bias U(+-1/sqrt(hidden_size))).

    Input: float32 ``[N, channels, H, W]`` (NCHW). Output: float32 logits ``[N, output_size]``;
    ``method="embed"`` gives the ``[N, hidden_size]`` embedding (torch's ``model.features(x)``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = ResNet12(5, hidden_size=512, wider=False)
        >>> x = jnp.ones((2, 3, 32, 32))
        >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compute
        >>> def train(variables, x, key):  # returns (logits, {"batch_stats": updated statistics})
        ...     return model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})
        >>> logits, updates = jax.eval_shape(train, variables, x, jax.random.key(1))
        >>> logits.shape, sorted(updates["batch_stats"]["features"]["layer1"]["0"]["bn1"])
        ((2, 5), ['mean', 'num_batches_tracked', 'var'])
    """

    output_size: int
    hidden_size: int = 640
    avg_pool: bool = True
    wider: bool = True
    embedding_dropout: float = 0.0
    dropblock_dropout: float = 0.1
    dropblock_size: int = 5
    channels: int = 3
    implementation: str = "auto"

    def setup(self):
        self.features = ResNet12Backbone(
            avg_pool=self.avg_pool,
            wider=self.wider,
            embedding_dropout=self.embedding_dropout,
            dropblock_dropout=self.dropblock_dropout,
            dropblock_size=self.dropblock_size,
            channels=self.channels,
            implementation=self.implementation,
        )
        self.classifier = nn.Dense(
            self.output_size,
            kernel_init=torch_default_kernel_init,
            bias_init=torch_default_bias_init(self.hidden_size),
        )

    def embed(self, x: jax.Array, train: bool = True) -> jax.Array:
        """The classifier's input ``[N, hidden_size]`` (torch's ``model.features(x)``)."""
        embedding = self.features(x, train)
        if embedding.shape[1] != self.hidden_size:
            raise ValueError(
                f"the backbone gives {embedding.shape[1]} features for x of shape {tuple(x.shape)}, but "
                f"hidden_size={self.hidden_size} (pass hidden_size to match the embedding)"
            )
        return embedding

    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        return self.classifier(self.embed(x, train))
