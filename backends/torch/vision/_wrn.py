"""WideResNet-28-10 (as in learn2learn's ``WRN28``/``WRN28Backbone``, from S2M2/FEAT) as torch modules.

Submodule names follow learn2learn (``features.layer1.0.bn1.weight``, ``features.bn1``, ...), so its
checkpoints load. Every layer keeps torch's default initialisation, as learn2learn's does (its
``conv_init`` is never applied). Batch norm has running statistics; the final one has
momentum 0.9 in torch's convention (running = 0.1 * running + 0.9 * batch), as in learn2learn.

One difference: the final pooling averages over the whole map. On 84x84 inputs (21x21 maps) this
is learn2learn's ``avg_pool2d(out, 21)``; 80x80 inputs (20x20 maps), which fail there, work too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["WRN28", "WRN28Backbone"]

DEPTH, WIDEN_FACTOR = 28, 10
BLOCKS_PER_GROUP = (DEPTH - 4) // 6  # 4
STEM_CHANNELS = 16
GROUP_CHANNELS = (16 * WIDEN_FACTOR, 32 * WIDEN_FACTOR, 64 * WIDEN_FACTOR)  # 160, 320, 640
GROUP_STRIDES = (1, 2, 2)
FINAL_BATCH_NORM_MOMENTUM = 0.9  # learn2learn's (a TensorFlow-style value read with torch's meaning)


class _WideBasic(torch.nn.Module):
    """Pre-activation wide block: BN -> ReLU -> 3x3 conv -> dropout -> BN -> ReLU -> 3x3 conv (strided),
    plus the input (through a strided 1x1 convolution when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float, stride: int):
        super().__init__()
        self.bn1 = torch.nn.BatchNorm2d(in_channels)
        self.conv1 = torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.dropout = torch.nn.Dropout(p=dropout)
        self.bn2 = torch.nn.BatchNorm2d(out_channels)
        self.conv2 = torch.nn.Conv2d(out_channels, out_channels, 3, stride=stride, padding=1)
        self.shortcut = torch.nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = torch.nn.Sequential(torch.nn.Conv2d(in_channels, out_channels, 1, stride=stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.conv1(F.relu(self.bn1(x))))
        out = self.conv2(F.relu(self.bn2(out)))
        # learn2learn's shortcut takes the block's input before its batch norm
        return out + self.shortcut(x)


class WRN28Backbone(torch.nn.Module):
    """The WideResNet-28-10 feature extractor (learn2learn's ``WRN28Backbone``).

    A 3x3 convolution to 16 channels, three groups of four wide blocks (160, 320 and 640 channels;
    stride 1, 2, 2), BatchNorm -> ReLU, global average pooling. Each wide block is pre-activation:
    BN -> ReLU -> 3x3 conv -> dropout -> BN -> ReLU -> 3x3 conv, plus a 1x1 convolution shortcut
    where the shape changes. All convolutions have biases; all layers keep torch's default
    initialisation (as learn2learn's).

    Args:
        dropout: dropout rate between the two convolutions of every block (train mode only), in [0, 1).

    Input: float32 ``[N, 3, H, W]`` (84x84 or 80x80 for mini-ImageNet). Output: float32 ``[N, 640]``.

    Attributes: ``conv1``, ``layer1``, ``layer2``, ``layer3`` (Sequentials of four blocks), ``bn1``.

    Example:
        >>> import torch
        >>> WRN28Backbone().eval()(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 640])
    """

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r} must be a dropout rate in [0, 1)")
        self.conv1 = torch.nn.Conv2d(3, STEM_CHANNELS, 3, padding=1)
        in_channels = STEM_CHANNELS
        for group, (channels, stride) in enumerate(zip(GROUP_CHANNELS, GROUP_STRIDES)):
            blocks = []
            for i in range(BLOCKS_PER_GROUP):
                blocks.append(_WideBasic(in_channels, channels, dropout, stride if i == 0 else 1))
                in_channels = channels
            self.add_module(f"layer{group + 1}", torch.nn.Sequential(*blocks))
        self.bn1 = torch.nn.BatchNorm2d(in_channels, momentum=FINAL_BATCH_NORM_MOMENTUM)
        self.dropout = dropout

    def get_config(self) -> dict:
        """The constructor arguments: ``type(self)(**get_config())`` rebuilds the model, and the flax
        twin of the same class name takes them too (``l2l_multi.interop``)."""
        return {"dropout": self.dropout}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return F.relu(self.bn1(x)).mean(dim=(2, 3))


class WRN28(torch.nn.Module):
    """WideResNet-28-10 with a linear classifier (learn2learn's ``WRN28``; Dhillon et al. 2020).

    Args:
        output_size: number of classes.
        hidden_size: classifier inputs (640, the backbone's embedding).
        dropout: as in ``WRN28Backbone``.

    Input: float32 ``[N, 3, H, W]``. Output: float32 logits ``[N, output_size]``.

    Attributes: ``features`` (the WRN28Backbone) and ``classifier`` (torch's default init).

    Example:
        >>> import torch
        >>> WRN28(5).eval()(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 5])
    """

    def __init__(self, output_size: int, hidden_size: int = 640, dropout: float = 0.0):
        super().__init__()
        self.features = WRN28Backbone(dropout=dropout)
        self.classifier = torch.nn.Linear(hidden_size, output_size)
        self.output_size, self.hidden_size, self.dropout = output_size, hidden_size, dropout

    def get_config(self) -> dict:
        """The constructor arguments: ``type(self)(**get_config())`` rebuilds the model, and the flax
        twin of the same class name takes them too (``l2l_multi.interop``)."""
        return dict(output_size=self.output_size, hidden_size=self.hidden_size, dropout=self.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
