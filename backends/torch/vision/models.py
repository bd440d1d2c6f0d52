"""learn2learn's few-shot vision models as ``torch.nn.Module``s.

Constructor signatures, submodule names (hence ``state_dict`` keys) and initialisations follow
learn2learn's ``learn2learn.vision.models``, so its checkpoints load (the conv4 family lives in
``_conv4.py``). ``ResNet12`` and ``WRN28`` (with their backbones; in ``_resnet.py`` and
``_wrn.py``) use ordinary batch norm with running statistics. One keyword is added to every
conv4-style model: ``track_running_stats`` (default False). With False, batch norm normalises with
the statistics of the current batch in training *and* evaluation mode, as the MAML paper does (a
few-shot query set is normalised with its own statistics); True gives ordinary running statistics
(``running_mean``, ``running_var``, ``num_batches_tracked`` buffers).

The conv4 models (``ConvBase``, ``OmniglotCNN``, ``CNN4Backbone``, ``CNN4``) also take ``layout``:
``"maml"`` (default) is the batch norm above (eps 1e-3, momentum 0.999, the MAML code's);
``"learn2learn"`` is learn2learn 0.2.0's own conv block, torch's default ``BatchNorm2d`` (eps 1e-5,
momentum 0.1, running statistics tracked), so learn2learn's conv4 checkpoints load strictly and
give its outputs in train and eval mode. ``OmniglotFC``, ``ResNet12`` and ``WRN28`` already match
learn2learn's layers and need no option.

The jax backend has the same classes as flax modules; ``l2l_multi.interop.torch_to_flax`` and
``flax_to_torch`` convert weights between them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..nn._layers import Flatten, Lambda
from ._blocks import ConvBlock as ConvBlock
from ._blocks import LinearBlock as LinearBlock
from ._blocks import fc_init_ as fc_init_
from ._blocks import maml_init_ as maml_init_
from ._blocks import resolve_layout
from ._blocks import truncated_normal_ as truncated_normal_
from ._conv4 import CNN4 as CNN4
from ._conv4 import CNN4Backbone as CNN4Backbone
from ._conv4 import ConvBase as ConvBase
from ._conv4 import MiniImagenetCNN as MiniImagenetCNN
from ._conv4 import _with_layout
from ._pretrained import get_pretrained_backbone as get_pretrained_backbone
from ._resnet import ResNet12 as ResNet12
from ._resnet import ResNet12Backbone as ResNet12Backbone
from ._wrn import WRN28 as WRN28
from ._wrn import WRN28Backbone as WRN28Backbone

__all__ = [
    "CNN4",
    "CNN4Backbone",
    "ConvBase",
    "ConvBlock",
    "LinearBlock",
    "MiniImagenetCNN",
    "OmniglotCNN",
    "OmniglotFC",
    "ResNet12",
    "ResNet12Backbone",
    "WRN28",
    "WRN28Backbone",
    "fc_init_",
    "get_pretrained_backbone",
    "maml_init_",
    "truncated_normal_",
]


class _FlattenChecked(Flatten):
    """``Flatten`` that refuses samples without ``input_size`` elements, with the flax twin's words
    (torch's own matmul message names neither the model nor the expected size)."""

    def __init__(self, input_size: int):
        super().__init__()
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if x.shape[1] != self.input_size:
            raise ValueError(
                f"expected {self.input_size} features per sample (input_size), "
                f"got x of shape {tuple(x.shape)}"
            )
        return x


class OmniglotFC(torch.nn.Module):
    """The fully connected Omniglot network: [Linear -> BatchNorm1d -> ReLU] blocks, then a Linear.

    Linear weights are normal with std 0.01 truncated at +-0.02, biases zero.

    Args:
        input_size: features after flattening the input (784 for 28x28 images).
        output_size: number of classes.
        sizes: hidden widths, default ``[256, 128, 64, 64]``.
        track_running_stats: keyword; False (default) normalises with batch statistics in train
            and eval mode.

    Input: float32 ``[N, ...]`` with ``input_size`` elements per sample (flattened).
    Output: float32 logits ``[N, output_size]``.

    Attributes: ``features`` (flatten + blocks, ``[N, sizes[-1]]``) and ``classifier``.

    Example:
        >>> import torch
        >>> model = OmniglotFC(28 * 28, 5)
        >>> model(torch.randn(8, 1, 28, 28)).shape
        torch.Size([8, 5])
    """

    def __init__(
        self,
        input_size: int = 784,
        output_size: int = 5,
        sizes: Sequence[int] | None = None,
        *,
        track_running_stats: bool = False,
    ):
        super().__init__()
        sizes = [256, 128, 64, 64] if sizes is None else list(sizes)
        if not sizes:
            raise ValueError(f"sizes={sizes!r} must name at least one hidden width")
        widths = [input_size, *sizes]
        blocks = [
            LinearBlock(i, o, track_running_stats=track_running_stats)
            for i, o in zip(widths[:-1], widths[1:])
        ]
        self.features = torch.nn.Sequential(_FlattenChecked(input_size), torch.nn.Sequential(*blocks))
        self.classifier = fc_init_(torch.nn.Linear(sizes[-1], output_size))
        self.input_size, self.output_size, self.sizes = input_size, output_size, sizes
        self.track_running_stats = track_running_stats

    def get_config(self) -> dict:
        """The constructor arguments: ``type(self)(**get_config())`` rebuilds the model, and the flax
        twin of the same class name takes them too (``l2l_multi.interop``)."""
        return dict(
            input_size=self.input_size,
            output_size=self.output_size,
            sizes=tuple(self.sizes),
            track_running_stats=self.track_running_stats,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _as_omniglot_images(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, 1, 28, 28)  # accepts [N, 784], [N, 28, 28] and [N, 1, 28, 28]


def _spatial_mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3))


class OmniglotCNN(torch.nn.Module):
    """The MAML paper's Omniglot network: 4 stride-2 conv blocks, spatial mean, a Linear classifier.

    The classifier weight starts from N(0, 1) and its bias from 0 (the MAML code's output layer).

    Args:
        output_size: number of classes.
        hidden_size: channels of every conv block.
        layers: number of conv blocks.
        track_running_stats: keyword; see the module docstring (None: False, True for learn2learn).
        layout: keyword, ``"maml"`` or ``"learn2learn"`` (learn2learn's checkpoints load strictly).

    Input: float32 ``[N, 1, 28, 28]`` (``[N, 784]`` and ``[N, 28, 28]`` are reshaped).
    Output: float32 logits ``[N, output_size]``.

    Attributes: ``features`` (reshape, ConvBase, spatial mean: ``[N, hidden_size]``),
    ``classifier``, and ``base``, the ConvBase (``features[1]``).

    learn2learn registers the ConvBase twice, as ``base`` and inside ``features``. Here it is
    registered once (``features.1``): ``torch.func.functional_call`` does not put the original
    parameters back into a module registered under two names, so a model built that way loses
    its parameters after one functional call. ``load_state_dict`` still accepts learn2learn
    checkpoints (their ``base.*`` entries are read as ``features.1.*``).

    Example:
        >>> import torch
        >>> model = OmniglotCNN(output_size=5)
        >>> model(torch.randn(10, 784)).shape
        torch.Size([10, 5])
    """

    def __init__(
        self,
        output_size: int = 5,
        hidden_size: int = 64,
        layers: int = 4,
        *,
        track_running_stats: bool | None = None,
        layout: str = "maml",
    ):
        super().__init__()
        self.hidden_size, self.output_size, self.layers = hidden_size, output_size, layers
        self.track_running_stats, self.layout = resolve_layout(layout, track_running_stats), layout
        base = ConvBase(
            hidden=hidden_size,
            channels=1,
            max_pool=False,
            layers=layers,
            track_running_stats=self.track_running_stats,
            layout=layout,
        )
        self.features = torch.nn.Sequential(
            Lambda(_as_omniglot_images), base, Lambda(_spatial_mean), Flatten()
        )
        self.classifier = torch.nn.Linear(hidden_size, output_size)
        torch.nn.init.normal_(self.classifier.weight)
        torch.nn.init.zeros_(self.classifier.bias)
        self.register_load_state_dict_pre_hook(_read_learn2learn_base)

    def get_config(self) -> dict:
        """The constructor arguments: ``type(self)(**get_config())`` rebuilds the model, and the flax
        twin of the same class name takes them too (``l2l_multi.interop``)."""
        return _with_layout(
            dict(
                output_size=self.output_size,
                hidden_size=self.hidden_size,
                layers=self.layers,
                track_running_stats=self.track_running_stats,
            ),
            self.layout,
        )

    @property
    def base(self) -> ConvBase:
        """The ConvBase, ``features[1]``."""
        return self.features[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _read_learn2learn_base(module, state_dict, prefix, *args) -> None:
    # A learn2learn OmniglotCNN checkpoint holds each conv weight twice, as base.* and features.1.*.
    for key in [k for k in state_dict if k.startswith(prefix + "base.")]:
        value = state_dict.pop(key)
        state_dict.setdefault(prefix + "features.1." + key[len(prefix + "base.") :], value)
