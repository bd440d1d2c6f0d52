"""The conv4 family (flax twins of the torch backend's ``_conv4.py``): ``ConvBase`` and the
mini-ImageNet ``CNN4Backbone``/``CNN4``, plus the conv blocks ``OmniglotCNN`` is built from.

Re-exported by ``models``, whose docstring describes ``track_running_stats``, ``layout``,
``implementation`` and the NCHW convention.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ....vision._layout import BATCH_NORM_SETTINGS, pool_window, resolve_layout
from ._layers import BatchNorm, Conv2d

_zeros = nn.initializers.zeros


class _ConvModel(nn.Module):
    """Checks ``layout`` and ``track_running_stats`` when the model is made, as torch's do."""

    def __post_init__(self):
        resolve_layout(self.layout, self.track_running_stats)
        super().__post_init__()


class _ConvBlock(nn.Module):
    """3x3 conv (padding 1) -> BatchNorm -> ReLU [-> max-pool] on NHWC."""

    out_channels: int
    max_pool: bool
    window: int
    track_running_stats: bool
    implementation: str
    layout: str = "maml"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        stride = 1 if self.max_pool else self.window  # without pooling the convolution downsamples
        x = Conv2d(self.out_channels, stride=stride, implementation=self.implementation, name="conv")(x)
        epsilon, momentum = BATCH_NORM_SETTINGS[self.layout]
        x = BatchNorm(
            momentum=momentum,
            epsilon=epsilon,
            track_running_stats=self.track_running_stats,
            scale_init=nn.initializers.uniform(1.0),
            name="normalize",
        )(x, train)
        x = nn.relu(x)
        if self.max_pool:  # VALID = torch's floor mode
            window = (self.window, self.window)
            x = nn.max_pool(x, window, strides=window, padding="VALID")
        return x


def _conv_blocks(
    x,
    train,
    *,
    hidden,
    channels,
    max_pool,
    layers,
    max_pool_factor,
    track_running_stats,
    implementation,
    layout,
):
    """NCHW in, NCHW out; called inside a compact method, so the blocks belong to that module."""
    if layers < 1:
        raise ValueError(f"layers={layers!r} must be at least 1")
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"expected x of shape [N, {channels}, H, W] (NCHW), got {tuple(x.shape)}")
    window = pool_window(max_pool_factor)
    track_running_stats = resolve_layout(layout, track_running_stats)
    x = jnp.transpose(x, (0, 2, 3, 1))
    for i in range(layers):
        x = _ConvBlock(hidden, max_pool, window, track_running_stats, implementation, layout, name=str(i))(
            x, train
        )
    return jnp.transpose(x, (0, 3, 1, 2))


class ConvBase(_ConvModel):
    """``layers`` conv blocks: 3x3 conv (padding 1) -> BatchNorm -> ReLU [-> max-pool] (flax twin).

    Attributes: ``hidden`` (64), ``channels`` (1), ``max_pool`` (False: stride-``window``
    convolutions; True: stride 1 then ``window`` x ``window`` max-pool), ``layers`` (4),
    ``max_pool_factor`` (window ``int(2 * factor)``), ``track_running_stats`` (None: False, True
    for learn2learn), ``layout`` ("maml" or "learn2learn"; see the module docstring),
    ``implementation`` ("auto"). Conv kernels xavier-uniform, biases 0; batch-norm scale U[0, 1),
    shift 0, eps 1e-3, momentum 0.999 (torch convention); with ``layout="learn2learn"`` eps 1e-5,
    momentum 0.1, running statistics tracked.

    Input: float32 ``[N, channels, H, W]`` (NCHW). Output: float32 ``[N, hidden, H', W']`` (NCHW).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = ConvBase(hidden=32, channels=1)
        >>> x = jnp.ones((2, 1, 28, 28))
        >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compute
        >>> jax.eval_shape(model.apply, variables, x).shape
        (2, 32, 2, 2)
    """

    hidden: int = 64
    channels: int = 1
    max_pool: bool = False
    layers: int = 4
    max_pool_factor: float = 1.0
    track_running_stats: bool | None = None
    layout: str = "maml"
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        return _conv_blocks(
            x,
            train,
            hidden=self.hidden,
            channels=self.channels,
            max_pool=self.max_pool,
            layers=self.layers,
            max_pool_factor=self.max_pool_factor,
            track_running_stats=self.track_running_stats,
            implementation=self.implementation,
            layout=self.layout,
        )


class CNN4Backbone(_ConvModel):
    """The conv4 feature extractor (flax twin): max-pooling ConvBase, flattened in (C, H, W) order.

    Attributes: ``hidden_size`` (64), ``layers`` (4), ``channels`` (3), ``max_pool`` (True),
    ``max_pool_factor`` (None: ``4 // layers``), ``track_running_stats`` (None: False, True for
    learn2learn), ``layout`` ("maml" or "learn2learn"; see ``ConvBase``), ``implementation`` ("auto").

    Input: float32 ``[N, channels, H, W]``. Output: float32 ``[N, hidden_size * H' * W']``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = CNN4Backbone(hidden_size=32)
        >>> x = jnp.ones((2, 3, 84, 84))
        >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compute
        >>> jax.eval_shape(model.apply, variables, x).shape
        (2, 800)
    """

    hidden_size: int = 64
    layers: int = 4
    channels: int = 3
    max_pool: bool = True
    max_pool_factor: float | None = None
    track_running_stats: bool | None = None
    layout: str = "maml"
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        factor = 4 // self.layers if self.max_pool_factor is None else self.max_pool_factor
        x = _conv_blocks(
            x,
            train,
            hidden=self.hidden_size,
            channels=self.channels,
            max_pool=self.max_pool,
            layers=self.layers,
            max_pool_factor=factor,
            track_running_stats=self.track_running_stats,
            implementation=self.implementation,
            layout=self.layout,
        )
        return x.reshape(x.shape[0], -1)


class CNN4(_ConvModel):
    """The mini-ImageNet conv4 network (flax twin): CNN4Backbone, then a Dense classifier.

    Attributes: ``output_size``, ``hidden_size`` (64), ``layers`` (4), ``channels`` (3),
    ``max_pool`` (True), ``embedding_size`` (None: ``25 * hidden_size``), ``track_running_stats``
    (None: False, True for learn2learn), ``layout`` ("maml" or "learn2learn"; see ``ConvBase``),
    ``implementation`` ("auto"). The classifier is xavier-uniform with a zero bias.
    Alias: ``MiniImagenetCNN``.

    Input: float32 ``[N, channels, 84, 84]``. Output: float32 logits ``[N, output_size]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = CNN4(5, hidden_size=32)
        >>> x = jnp.ones((2, 3, 84, 84))
        >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compute
        >>> jax.eval_shape(model.apply, variables, x).shape
        (2, 5)
    """

    output_size: int
    hidden_size: int = 64
    layers: int = 4
    channels: int = 3
    max_pool: bool = True
    embedding_size: int | None = None
    track_running_stats: bool | None = None
    layout: str = "maml"
    implementation: str = "auto"

    def setup(self):
        self.features = CNN4Backbone(
            hidden_size=self.hidden_size,
            layers=self.layers,
            channels=self.channels,
            max_pool=self.max_pool,
            max_pool_factor=4 // self.layers,
            track_running_stats=self.track_running_stats,
            layout=self.layout,
            implementation=self.implementation,
        )
        self.classifier = nn.Dense(
            self.output_size, kernel_init=nn.initializers.xavier_uniform(), bias_init=_zeros
        )

    def embed(self, x: jax.Array, train: bool = True) -> jax.Array:
        """The classifier's input ``[N, embedding_size]`` (torch's ``model.features(x)``)."""
        embedding = self.features(x, train)
        expected = 25 * self.hidden_size if self.embedding_size is None else self.embedding_size
        if embedding.shape[1] != expected:
            raise ValueError(
                f"the backbone gives {embedding.shape[1]} features for x of shape {tuple(x.shape)}, but "
                f"embedding_size={expected} (pass embedding_size to match the image size)"
            )
        return embedding

    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        return self.classifier(self.embed(x, train))


MiniImagenetCNN = CNN4
