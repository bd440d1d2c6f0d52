"""learn2learn's few-shot vision models as flax linen modules, matching the torch backend's classes.

Why linen (not nnx): a linen model is a pure function ``model.apply(variables, x, train=...)`` of
an explicit parameter pytree, which is exactly what ``jax.grad``, ``jax.vmap`` and ``jax.jit`` of
a MAML inner loop need: per-task parameters are just another pytree, with no per-call splitting
and merging of module state.

Every class has the torch class's name, constructor arguments (as dataclass fields, in the same
order), architecture and initialisation rules, plus ``track_running_stats`` (False: batch norm
uses batch statistics in train and eval mode, as the MAML paper does) and ``implementation``
(how convolutions run; see ``Conv2d``). The conv4 models (``ConvBase``, ``OmniglotCNN``,
``CNN4Backbone``, ``CNN4``) take ``layout`` as torch's do: ``"maml"`` (default; eps 1e-3,
momentum 0.999, ``track_running_stats`` None meaning False) or ``"learn2learn"`` (learn2learn
0.2.0's conv block: eps 1e-5, momentum 0.1, running statistics always tracked, so
``track_running_stats`` must be None or True). Inputs use torch's layout, NCHW
(``[N, 1, 28, 28]``), so one data pipeline feeds both backends; the models transpose to NHWC
internally and back, so ``ConvBase`` returns NCHW maps and ``CNN4Backbone`` flattens in torch's
(C, H, W) order. Classifier inputs are therefore identical on both backends, and
``l2l_multi.interop`` converts weights with a plain copy (plus the layout transposes).

Call as ``model.apply(variables, x, train=True)``; with ``track_running_stats=True`` and
``train=True`` also pass ``mutable=["batch_stats"]``. ``method="embed"`` gives the classifier's
input (torch's ``model.features(x)``); the parameter subtrees are ``'features'`` and ``'classifier'``.

The conv4 family lives in ``_conv4.py``. ``ResNet12``, ``WRN28`` and their backbones
(``_resnet.py``, ``_wrn.py``) always keep running statistics and may need a ``"dropout"`` rng
in training mode; see their docstrings.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from ....vision._layout import BATCH_NORM_SETTINGS, LAYOUTS, pool_window, resolve_layout  # noqa: F401 (re-exported)
from ._conv4 import CNN4 as CNN4
from ._conv4 import CNN4Backbone as CNN4Backbone
from ._conv4 import ConvBase as ConvBase
from ._conv4 import MiniImagenetCNN as MiniImagenetCNN
from ._conv4 import _ConvModel
from ._layers import BatchNorm as BatchNorm
from ._layers import Conv2d as Conv2d
from ._layers import conv2d as conv2d
from ._resnet import ResNet12 as ResNet12
from ._resnet import ResNet12Backbone as ResNet12Backbone
from ._wrn import WRN28 as WRN28
from ._wrn import WRN28Backbone as WRN28Backbone

__all__ = [
    "CNN4",
    "CNN4Backbone",
    "BatchNorm",
    "Conv2d",
    "ConvBase",
    "MiniImagenetCNN",
    "OmniglotCNN",
    "OmniglotFC",
    "ResNet12",
    "ResNet12Backbone",
    "WRN28",
    "WRN28Backbone",
    "conv2d",
]

BATCH_NORM_EPS, BATCH_NORM_MOMENTUM = BATCH_NORM_SETTINGS["maml"]

_fc_kernel_init = nn.initializers.truncated_normal(stddev=0.01, lower=-2.0, upper=2.0)
_zeros = nn.initializers.zeros


class _LinearBlock(nn.Module):
    """Dense -> BatchNorm -> ReLU on ``[N, in]``."""

    features: int
    track_running_stats: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        x = nn.Dense(self.features, kernel_init=_fc_kernel_init, bias_init=_zeros, name="linear")(x)
        x = BatchNorm(
            momentum=BATCH_NORM_MOMENTUM,
            epsilon=BATCH_NORM_EPS,
            track_running_stats=self.track_running_stats,
            name="normalize",
        )(x, train)
        return nn.relu(x)


class _LinearStack(nn.Module):
    """The hidden blocks of OmniglotFC, named "0", "1", ... like torch's Sequential."""

    sizes: Sequence[int]
    track_running_stats: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        for i, size in enumerate(self.sizes):
            x = _LinearBlock(size, self.track_running_stats, name=str(i))(x, train)
        return x


class OmniglotFC(nn.Module):
    """The fully connected Omniglot network (flax twin of the torch ``OmniglotFC``).

    Attributes: ``input_size`` (784), ``output_size`` (5), ``sizes`` (default ``(256, 128, 64,
    64)``; give a tuple), ``track_running_stats`` (False). Dense kernels ~ normal(0.01)
    truncated at 2 std, biases 0.

    Input: float32 ``[N, ...]`` with ``input_size`` elements per sample. Output: ``[N, output_size]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = OmniglotFC(784, 5)
        >>> x = jnp.ones((8, 1, 28, 28))
        >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compute
        >>> variables["params"]["features"]["0"]["linear"]["kernel"].shape
        (784, 256)
        >>> jax.eval_shape(model.apply, variables, x).shape
        (8, 5)
    """

    input_size: int = 784
    output_size: int = 5
    sizes: Sequence[int] | None = None
    track_running_stats: bool = False

    def setup(self):
        sizes = (256, 128, 64, 64) if self.sizes is None else tuple(self.sizes)
        if not sizes:
            raise ValueError(f"sizes={self.sizes!r} must name at least one hidden width")
        self.features = _LinearStack(sizes, self.track_running_stats)
        self.classifier = nn.Dense(self.output_size, kernel_init=_fc_kernel_init, bias_init=_zeros)

    def embed(self, x: jax.Array, train: bool = True) -> jax.Array:
        """The classifier's input ``[N, sizes[-1]]`` (torch's ``model.features(x)``)."""
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.input_size:
            raise ValueError(
                f"expected {self.input_size} features per sample (input_size), "
                f"got x of shape {tuple(x.shape)}"
            )
        return self.features(x, train)

    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        return self.classifier(self.embed(x, train))


class OmniglotCNN(_ConvModel):
    """The MAML paper's Omniglot network (flax twin): stride-2 ConvBase, spatial mean, Dense.

    Attributes: ``output_size`` (5), ``hidden_size`` (64), ``layers`` (4),
    ``track_running_stats`` (None: False, True for learn2learn), ``layout`` ("maml" or
    "learn2learn"; see ``ConvBase``), ``implementation`` ("auto"). The classifier kernel starts
    from N(0, 1) and its bias from 0.

    Input: float32 ``[N, 1, 28, 28]`` (``[N, 784]`` and ``[N, 28, 28]`` are reshaped).
    Output: float32 logits ``[N, output_size]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = OmniglotCNN(output_size=5)
        >>> x = jnp.ones((10, 784))
        >>> variables = jax.jit(model.init)(jax.random.key(0), x)
        >>> logits = jax.jit(model.apply)(variables, x)
        >>> embed = jax.jit(lambda variables, x: model.apply(variables, x, method="embed"))
        >>> logits.shape, embed(variables, x).shape
        ((10, 5), (10, 64))
    """

    output_size: int = 5
    hidden_size: int = 64
    layers: int = 4
    track_running_stats: bool | None = None
    layout: str = "maml"
    implementation: str = "auto"

    def setup(self):
        self.features = ConvBase(
            hidden=self.hidden_size,
            channels=1,
            max_pool=False,
            layers=self.layers,
            track_running_stats=self.track_running_stats,
            layout=self.layout,
            implementation=self.implementation,
        )
        # N(0, 1): the MAML code's output layer
        self.classifier = nn.Dense(
            self.output_size, kernel_init=nn.initializers.normal(1.0), bias_init=_zeros
        )

    def embed(self, x: jax.Array, train: bool = True) -> jax.Array:
        """The classifier's input ``[N, hidden_size]`` (torch's ``model.features(x)``)."""
        return self.features(x.reshape(-1, 1, 28, 28), train).mean(axis=(2, 3))

    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        return self.classifier(self.embed(x, train))
