"""ResNet-12 (MetaOptNet's, as in learn2learn's ``ResNet12``/``ResNet12Backbone``) as torch modules.

Submodule names follow learn2learn (``features.layer1.0.conv1.weight``, ...), so its checkpoints
load. Batch norm is torch's default (running statistics, momentum 0.1, eps 1e-5).

Two differences from learn2learn, both only where learn2learn fails or counts oddly:

- ``avg_pool=True`` averages over the whole feature map. On 84x84 or 80x80 inputs (5x5 maps) this
  is learn2learn's ``AvgPool2d(5, stride=1)``; on smaller inputs (32x32 CIFAR-FS gives 2x2 maps)
  learn2learn's pooling fails, this one still gives a ``[N, 640]`` embedding.
- DropBlock's block is clipped to the feature map (a 5x5 block on a 4x4 map fails in
  learn2learn), and its linear warm-up (the drop rate grows from 0 to ``dropblock_dropout`` over
  40000 steps) counts training-mode forward passes only; learn2learn counts evaluation calls too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ResNet12", "ResNet12Backbone"]

# MetaOptNet's DropBlock warm-up: the drop rate grows linearly to its target over this many steps.
DROPBLOCK_WARMUP_STEPS = 40000
WIDER_CHANNELS = (64, 160, 320, 640)  # MetaOptNet's
NARROWER_CHANNELS = (64, 128, 256, 512)  # TADAM's


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}={value!r} must be a dropout rate in [0, 1)")


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive int")


def _dropblock_gamma(drop_rate: float, block_size: int, height: int, width: int) -> float:
    """The probability that a position seeds a dropped block (Ghiasi et al. 2018, as in MetaOptNet).

    Chosen so that about ``drop_rate`` of the ``height x width`` map is dropped: each seed drops
    ``block_size ** 2`` positions, and seeds may only fall where a whole block fits.

    Example:
        >>> round(_dropblock_gamma(0.1, 5, 10, 10), 4)
        0.0111
    """
    seeds = (height - block_size + 1) * (width - block_size + 1)
    return min(1.0, drop_rate / block_size**2 * (height * width) / seeds)


class _DropBlock(torch.nn.Module):
    """Zero random ``block_size x block_size`` squares of every channel, rescaling the rest (train only).

    The rescaling divides by the kept fraction of the whole batch (as MetaOptNet does), not per sample.
    """

    def __init__(self, block_size: int):
        super().__init__()
        self.block_size = block_size

    def forward(self, x: torch.Tensor, drop_rate: float) -> torch.Tensor:
        if not self.training or drop_rate == 0.0:
            return x
        batch, channels, height, width = x.shape
        size = min(self.block_size, height, width)
        gamma = _dropblock_gamma(drop_rate, size, height, width)
        seeds = torch.bernoulli(
            torch.full(
                (batch, channels, height - size + 1, width - size + 1), gamma, dtype=x.dtype, device=x.device
            )
        )
        # A seed at (i, j) drops rows i..i+size-1 and columns j..j+size-1: a max over the size x size
        # window ending at each position of the zero-padded seed map.
        covered = F.max_pool2d(F.pad(seeds, (size - 1,) * 4), size, stride=1)
        keep = 1.0 - covered
        return x * keep * (keep.numel() / keep.sum().clamp_min(1.0))


class _ResNet12Block(torch.nn.Module):
    """Three 3x3 conv -> BatchNorm (LeakyReLU 0.1 between), a 1x1 conv + BatchNorm shortcut, LeakyReLU,
    2x2 max-pool, then dropout (``drop_block=False``) or DropBlock (True) in training mode."""

    def __init__(
        self, in_channels: int, out_channels: int, drop_rate: float, drop_block: bool, block_size: int
    ):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(out_channels)
        self.relu = torch.nn.LeakyReLU(0.1)
        self.conv2 = torch.nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(out_channels)
        self.conv3 = torch.nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn3 = torch.nn.BatchNorm2d(out_channels)
        self.maxpool = torch.nn.MaxPool2d(2)
        # every block changes the channel count and pools, so every block has a projection shortcut
        self.downsample = torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, out_channels, 1, bias=False), torch.nn.BatchNorm2d(out_channels)
        )
        self.dropblock = _DropBlock(block_size)
        self.drop_rate, self.drop_block, self.block_size = drop_rate, drop_block, block_size
        self.training_steps = 0  # a plain attribute, not a buffer: learn2learn checkpoints have none

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        # the shortcut runs after the main path, as in learn2learn: interop pairs layers in call order
        out = self.maxpool(self.relu(out + self.downsample(x)))
        if not self.training or self.drop_rate == 0.0:
            return out
        if not self.drop_block:
            return F.dropout(out, p=self.drop_rate, training=True)
        self.training_steps += 1
        drop_rate = min(self.drop_rate, self.drop_rate * self.training_steps / DROPBLOCK_WARMUP_STEPS)
        return self.dropblock(out, drop_rate)


class ResNet12Backbone(torch.nn.Module):
    """The ResNet-12 feature extractor of MetaOptNet (Lee et al. 2019), learn2learn's ``ResNet12Backbone``.

    Four residual blocks, each: three 3x3 convolutions (no bias) with BatchNorm and LeakyReLU(0.1),
    a 1x1 convolution + BatchNorm shortcut, LeakyReLU, 2x2 max-pool. In training mode the first two
    blocks end with dropout, the last two with DropBlock, both at rate ``dropblock_dropout`` (DropBlock
    warms up linearly over its first 40000 training steps). Then optional global average pooling,
    flattening and dropout with rate ``embedding_dropout``. Convolutions are kaiming-normal (fan_out,
    leaky_relu with slope 0), batch-norm scales 1 and shifts 0. See the module docstring for the two
    places where this differs from learn2learn.

    Args:
        avg_pool: average the final maps (``[N, 640]``); False flattens them (``[N, 640 * 5 * 5]``
            for 84x84 inputs, MetaOptNet's 16000-d embedding).
        wider: channels (64, 160, 320, 640) as MetaOptNet; False gives (64, 128, 256, 512) as TADAM.
        embedding_dropout: dropout rate on the embedding, in [0, 1).
        dropblock_dropout: dropout / DropBlock rate of the residual blocks, in [0, 1).
        dropblock_size: side of the dropped squares (clipped to the feature map).
        channels: input channels.

    Input: float32 ``[N, channels, H, W]`` (84x84 for mini-ImageNet; each block halves H and W).
    Output: float32 ``[N, C]``, or ``[N, C * H/16 * W/16]`` with ``avg_pool=False`` (``C`` = 640 or 512).

    Attributes: ``layer1`` ... ``layer4`` (each a Sequential of one block), ``avgpool``, ``flatten``,
    ``dropout``.

    Example:
        >>> import torch
        >>> model = ResNet12Backbone(wider=False)
        >>> model(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 512])
    """

    def __init__(
        self,
        avg_pool: bool = True,
        wider: bool = True,
        embedding_dropout: float = 0.0,
        dropblock_dropout: float = 0.1,
        dropblock_size: int = 5,
        channels: int = 3,
    ):
        super().__init__()
        _check_rate("embedding_dropout", embedding_dropout)
        _check_rate("dropblock_dropout", dropblock_dropout)
        _check_positive("dropblock_size", dropblock_size)
        _check_positive("channels", channels)
        widths = WIDER_CHANNELS if wider else NARROWER_CHANNELS
        inputs = (channels, *widths[:-1])
        for i, (width_in, width_out) in enumerate(zip(inputs, widths)):
            block = _ResNet12Block(
                width_in, width_out, dropblock_dropout, drop_block=i >= 2, block_size=dropblock_size
            )
            self.add_module(f"layer{i + 1}", torch.nn.Sequential(block))
        # learn2learn's AvgPool2d(5, stride=1) on the 5x5 maps of 84x84 inputs; global on any size
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1) if avg_pool else torch.nn.Identity()
        self.flatten = torch.nn.Flatten()
        self.dropout = torch.nn.Dropout(p=embedding_dropout)
        for module in self.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(module, torch.nn.BatchNorm2d):
                torch.nn.init.ones_(module.weight)
                torch.nn.init.zeros_(module.bias)
        self.avg_pool, self.wider, self.embedding_dropout = avg_pool, wider, embedding_dropout
        self.dropblock_dropout, self.dropblock_size = dropblock_dropout, dropblock_size
        self.channels = channels

    def get_config(self) -> dict:
        """The constructor arguments: ``type(self)(**get_config())`` rebuilds the model, and the flax
        twin of the same class name takes them too (``l2l_multi.interop``)."""
        return dict(
            avg_pool=self.avg_pool,
            wider=self.wider,
            embedding_dropout=self.embedding_dropout,
            dropblock_dropout=self.dropblock_dropout,
            dropblock_size=self.dropblock_size,
            channels=self.channels,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.dropout(self.flatten(self.avgpool(x)))


class ResNet12(torch.nn.Module):
    """MetaOptNet's ResNet-12 with a linear classifier (learn2learn's ``ResNet12``).

    The classifier is ``torch.nn.Linear(hidden_size, output_size)`` with torch's default
    initialisation.

    Args:
        output_size: number of classes.
        hidden_size: classifier inputs: 640 (``wider``) or 512 with ``avg_pool``; without it
            ``C * H/16 * W/16`` (16000 for 84x84 inputs).
        avg_pool: as in ``ResNet12Backbone``.
        wider: as in ``ResNet12Backbone``.
        embedding_dropout: as in ``ResNet12Backbone``.
        dropblock_dropout: as in ``ResNet12Backbone``.
        dropblock_size: as in ``ResNet12Backbone``.
        channels: as in ``ResNet12Backbone``.

    Input: float32 ``[N, channels, H, W]``. Output: float32 logits ``[N, output_size]``.

    Attributes: ``features`` (the ResNet12Backbone) and ``classifier``.

    Example:
        >>> import torch
        >>> model = ResNet12(5, hidden_size=512, wider=False).eval()
        >>> model(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        output_size: int,
        hidden_size: int = 640,
        avg_pool: bool = True,
        wider: bool = True,
        embedding_dropout: float = 0.0,
        dropblock_dropout: float = 0.1,
        dropblock_size: int = 5,
        channels: int = 3,
    ):
        super().__init__()
        self.features = ResNet12Backbone(
            avg_pool=avg_pool,
            wider=wider,
            embedding_dropout=embedding_dropout,
            dropblock_dropout=dropblock_dropout,
            dropblock_size=dropblock_size,
            channels=channels,
        )
        self.classifier = torch.nn.Linear(hidden_size, output_size)
        self.output_size, self.hidden_size = output_size, hidden_size

    def get_config(self) -> dict:
        """The constructor arguments: ``type(self)(**get_config())`` rebuilds the model, and the flax
        twin of the same class name takes them too (``l2l_multi.interop``)."""
        return dict(output_size=self.output_size, hidden_size=self.hidden_size, **self.features.get_config())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
