"""learn2learn's conv4 building blocks and initialisers (``learn2learn.vision.models.cnn4``):
``ConvBlock``, ``LinearBlock``, ``truncated_normal_``, ``fc_init_``, ``maml_init_``."""

from __future__ import annotations

import torch

from ....vision._layout import BATCH_NORM_SETTINGS, LAYOUTS, pool_window, resolve_layout  # noqa: F401 (re-exported)

BATCH_NORM_EPS, BATCH_NORM_MOMENTUM = BATCH_NORM_SETTINGS["maml"]


@torch.no_grad()
def truncated_normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """Fill ``tensor`` in place from a normal(``mean``, ``std``) truncated at two standard deviations.

    Args:
        tensor: any float tensor, filled in place.
        mean: the normal's mean (float).
        std: the normal's standard deviation (positive float).

    Returns:
        ``tensor``.

    Example:
        >>> import torch
        >>> bool(truncated_normal_(torch.empty(1000), std=0.5).abs().max() <= 1.0)
        True
    """
    return torch.nn.init.trunc_normal_(tensor, mean=mean, std=std, a=mean - 2 * std, b=mean + 2 * std)


def fc_init_(module: torch.nn.Module) -> torch.nn.Module:
    """learn2learn's fully connected initialisation, in place: ``weight`` from a normal with std
    0.01 truncated at +-0.02, ``bias`` zero (either may be absent).

    Args:
        module: a layer with ``weight`` and/or ``bias`` tensors (any shapes).

    Returns:
        ``module``.

    Example:
        >>> import torch
        >>> layer = fc_init_(torch.nn.Linear(4, 3))
        >>> bool(layer.weight.abs().max() <= 0.02), layer.bias.tolist()
        (True, [0.0, 0.0, 0.0])
    """
    if getattr(module, "weight", None) is not None:
        truncated_normal_(module.weight, mean=0.0, std=0.01)
    if getattr(module, "bias", None) is not None:
        torch.nn.init.zeros_(module.bias)
    return module


def maml_init_(module: torch.nn.Module) -> torch.nn.Module:
    """The MAML code's initialisation, in place: xavier-uniform ``weight``, zero ``bias``.

    Args:
        module: a layer with a ``weight`` of at least 2 dimensions and a ``bias``.

    Returns:
        ``module``.

    Example:
        >>> import torch
        >>> maml_init_(torch.nn.Conv2d(1, 2, 3)).bias.tolist()
        [0.0, 0.0]
    """
    torch.nn.init.xavier_uniform_(module.weight, gain=1.0)
    torch.nn.init.zeros_(module.bias)
    return module


class LinearBlock(torch.nn.Module):
    """Linear -> BatchNorm1d (eps 1e-3, momentum 0.999) -> ReLU, ``fc_init_`` weights.

    Args:
        input_size: input features.
        output_size: output features.
        track_running_stats: keyword; False (default, as learn2learn) normalises with batch
            statistics in train and eval mode.

    Input: float32 ``[N, input_size]``. Output: float32 ``[N, output_size]``.

    Example:
        >>> import torch
        >>> LinearBlock(4, 3)(torch.randn(5, 4)).shape
        torch.Size([5, 3])
    """

    def __init__(self, input_size: int, output_size: int, *, track_running_stats: bool = False):
        super().__init__()
        self.linear = fc_init_(torch.nn.Linear(input_size, output_size))
        self.normalize = torch.nn.BatchNorm1d(
            output_size,
            eps=BATCH_NORM_EPS,
            momentum=BATCH_NORM_MOMENTUM,
            affine=True,
            track_running_stats=track_running_stats,
        )
        self.relu = torch.nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.normalize(self.linear(x)))


class ConvBlock(torch.nn.Module):
    """Conv (padding 1) -> BatchNorm2d -> ReLU -> optional max-pool (learn2learn's ConvBlock).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: the convolution's kernel (int or pair; the conv4 models use 3).
        max_pool: downsample by max-pooling (True) or by the convolution's stride (False).
        max_pool_factor: the window (or stride) is ``int(2 * max_pool_factor)``.
        track_running_stats: keyword; None: False for ``"maml"``, True for ``"learn2learn"``.
        layout: keyword, ``"maml"`` (eps 1e-3, momentum 0.999) or ``"learn2learn"`` (learn2learn
            0.2.0's: torch's default BatchNorm2d, running statistics tracked).

    Input: float32 ``[N, in_channels, H, W]``. Output: float32 ``[N, out_channels, H', W']``.

    Example:
        >>> import torch
        >>> ConvBlock(1, 8, 3)(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 8, 14, 14])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        max_pool: bool = True,
        max_pool_factor: float = 1.0,
        *,
        track_running_stats: bool | None = None,
        layout: str = "maml",
    ):
        super().__init__()
        track_running_stats = resolve_layout(layout, track_running_stats)
        window = pool_window(max_pool_factor)
        if max_pool:
            self.max_pool = torch.nn.MaxPool2d(kernel_size=window, stride=window, ceil_mode=False)
            stride = 1
        else:
            self.max_pool = torch.nn.Identity()
            stride = window  # without pooling, the convolution itself downsamples
        conv = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=1)
        self.conv = maml_init_(conv)
        if layout == "learn2learn":  # learn2learn 0.2.0 leaves BatchNorm2d at torch's defaults
            self.normalize = torch.nn.BatchNorm2d(out_channels, affine=True, track_running_stats=True)
        else:
            self.normalize = torch.nn.BatchNorm2d(
                out_channels,
                eps=BATCH_NORM_EPS,
                momentum=BATCH_NORM_MOMENTUM,
                affine=True,
                track_running_stats=track_running_stats,
            )
        torch.nn.init.uniform_(self.normalize.weight)  # learn2learn: scale ~ U[0, 1)
        self.relu = torch.nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.max_pool(self.relu(self.normalize(self.conv(x))))
