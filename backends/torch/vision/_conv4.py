"""The conv4 family: ``ConvBase`` and the mini-ImageNet ``CNN4Backbone``/``CNN4`` (torch).

Re-exported by ``models``, whose docstring describes ``track_running_stats`` and ``layout``;
``OmniglotCNN`` there is built on ``ConvBase`` too.
"""

from __future__ import annotations

import torch

from ._blocks import ConvBlock, maml_init_, resolve_layout


def _with_layout(config: dict, layout: str) -> dict:
    # Only a non-default layout is named, so default configs stay as they were; the flax twins
    # take the keyword too, so a learn2learn-layout twin keeps eps 1e-5 and momentum 0.1.
    return config if layout == "maml" else {**config, "layout": layout}


class ConvBase(torch.nn.Sequential):
    """``layers`` conv blocks: 3x3 conv (padding 1) -> BatchNorm2d -> ReLU [-> MaxPool2d].

    With ``max_pool=False`` each convolution has stride ``int(2 * max_pool_factor)``; with True
    it has stride 1 and a max-pool with that window follows (floor mode). Conv weights are
    xavier-uniform with zero biases; batch-norm scales ~ U[0, 1), shifts 0, eps 1e-3, momentum
    0.999 (torch convention); with ``layout="learn2learn"`` eps 1e-5, momentum 0.1, tracked.

    Args:
        hidden: channels of every block.
        channels: input channels.
        max_pool: pool (True) or stride (False) to downsample.
        layers: number of blocks.
        max_pool_factor: the window is ``int(2 * max_pool_factor)``.
        track_running_stats: keyword; see the module docstring (None: False, True for learn2learn).
        layout: keyword, ``"maml"`` or ``"learn2learn"``; see the module docstring.

    Input: float32 ``[N, channels, H, W]``. Output: float32 ``[N, hidden, H', W']``.

    Example:
        >>> import torch
        >>> ConvBase(hidden=32, channels=1)(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 32, 2, 2])
    """

    def __init__(
        self,
        hidden: int = 64,
        channels: int = 1,
        max_pool: bool = False,
        layers: int = 4,
        max_pool_factor: float = 1.0,
        *,
        track_running_stats: bool | None = None,
        layout: str = "maml",
    ):
        if layers < 1:
            raise ValueError(f"layers={layers!r} must be at least 1")
        track_running_stats = resolve_layout(layout, track_running_stats)
        blocks = [
            ConvBlock(
                channels if i == 0 else hidden,
                hidden,
                3,
                max_pool,
                max_pool_factor,
                track_running_stats=track_running_stats,
                layout=layout,
            )
            for i in range(layers)
        ]
        super().__init__(*blocks)
        self.hidden, self.channels, self.max_pool, self.layers = hidden, channels, max_pool, layers
        self.max_pool_factor, self.track_running_stats = max_pool_factor, track_running_stats
        self.layout = layout

    def get_config(self) -> dict:
        """The constructor arguments: ``type(self)(**get_config())`` rebuilds the model, and the flax
        twin of the same class name takes them too (``l2l_multi.interop``)."""
        return _with_layout(
            dict(
                hidden=self.hidden,
                channels=self.channels,
                max_pool=self.max_pool,
                layers=self.layers,
                max_pool_factor=self.max_pool_factor,
                track_running_stats=self.track_running_stats,
            ),
            self.layout,
        )


class CNN4Backbone(ConvBase):
    """The mini-ImageNet conv4 feature extractor: ConvBase with max-pooling, then flatten.

    Args:
        hidden_size: channels of every block.
        layers: number of blocks.
        channels: input channels.
        max_pool: pool (True) or stride (False) to downsample.
        max_pool_factor: default ``4 // layers`` (so four blocks pool 2x2, two blocks 4x4).
        track_running_stats: keyword; see the module docstring (None: False, True for learn2learn).
        layout: keyword, ``"maml"`` or ``"learn2learn"`` (learn2learn's checkpoints load strictly).

    Input: float32 ``[N, channels, H, W]`` (84x84 gives 5x5 maps).
    Output: float32 ``[N, hidden_size * H' * W']``, flattened in (C, H', W') order.

    Example:
        >>> import torch
        >>> CNN4Backbone(hidden_size=32)(torch.randn(2, 3, 84, 84)).shape
        torch.Size([2, 800])
    """

    def __init__(
        self,
        hidden_size: int = 64,
        layers: int = 4,
        channels: int = 3,
        max_pool: bool = True,
        max_pool_factor: float | None = None,
        *,
        track_running_stats: bool | None = None,
        layout: str = "maml",
    ):
        if max_pool_factor is None:
            max_pool_factor = 4 // layers
        super().__init__(
            hidden=hidden_size,
            channels=channels,
            max_pool=max_pool,
            layers=layers,
            max_pool_factor=max_pool_factor,
            track_running_stats=track_running_stats,
            layout=layout,
        )
        self.hidden_size = hidden_size

    def get_config(self) -> dict:
        """The constructor arguments: ``type(self)(**get_config())`` rebuilds the model, and the flax
        twin of the same class name takes them too (``l2l_multi.interop``)."""
        return _with_layout(
            dict(
                hidden_size=self.hidden_size,
                layers=self.layers,
                channels=self.channels,
                max_pool=self.max_pool,
                max_pool_factor=self.max_pool_factor,
                track_running_stats=self.track_running_stats,
            ),
            self.layout,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return x.reshape(x.shape[0], -1)


class CNN4(torch.nn.Module):
    """The conv4 network of the MAML/ProtoNets mini-ImageNet experiments: CNN4Backbone, then a Linear.

    The classifier is xavier-uniform with a zero bias.

    Args:
        output_size: number of classes.
        hidden_size: channels of every block.
        layers: number of blocks.
        channels: input channels.
        max_pool: pool (True) or stride (False) to downsample.
        embedding_size: classifier inputs, default ``25 * hidden_size`` (84x84 inputs, 5x5 maps).
        track_running_stats: keyword; see the module docstring (None: False, True for learn2learn).
        layout: keyword, ``"maml"`` or ``"learn2learn"`` (learn2learn's checkpoints load strictly).

    Input: float32 ``[N, channels, 84, 84]``. Output: float32 logits ``[N, output_size]``.

    Attributes: ``features`` (the CNN4Backbone) and ``classifier``. Alias: ``MiniImagenetCNN``.

    Example:
        >>> import torch
        >>> CNN4(5, hidden_size=32)(torch.randn(2, 3, 84, 84)).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        output_size: int,
        hidden_size: int = 64,
        layers: int = 4,
        channels: int = 3,
        max_pool: bool = True,
        embedding_size: int | None = None,
        *,
        track_running_stats: bool | None = None,
        layout: str = "maml",
    ):
        super().__init__()
        if embedding_size is None:
            embedding_size = 25 * hidden_size
        self.features = CNN4Backbone(
            hidden_size=hidden_size,
            layers=layers,
            channels=channels,
            max_pool=max_pool,
            max_pool_factor=4 // layers,
            track_running_stats=track_running_stats,
            layout=layout,
        )
        self.classifier = maml_init_(torch.nn.Linear(embedding_size, output_size))
        self.output_size, self.hidden_size, self.layers = output_size, hidden_size, layers
        self.channels, self.max_pool, self.embedding_size = channels, max_pool, embedding_size
        self.track_running_stats, self.layout = self.features.track_running_stats, layout

    def get_config(self) -> dict:
        """The constructor arguments: ``type(self)(**get_config())`` rebuilds the model, and the flax
        twin of the same class name takes them too (``l2l_multi.interop``)."""
        return _with_layout(
            dict(
                output_size=self.output_size,
                hidden_size=self.hidden_size,
                layers=self.layers,
                channels=self.channels,
                max_pool=self.max_pool,
                embedding_size=self.embedding_size,
                track_running_stats=self.track_running_stats,
            ),
            self.layout,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MiniImagenetCNN = CNN4
