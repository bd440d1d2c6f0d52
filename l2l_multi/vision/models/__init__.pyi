# Type stub for ``l2l.vision.models``, whose names are resolved in the current backend at access:
# torch.nn.Modules on torch, flax.linen Modules on jax, with the same constructor arguments (flax
# adds its own, such as ``parent``/``name``, and ``implementation``: hence ``**kwargs``). Then the
# names of one backend only. tests/test_stubs.py checks this file against both backends.
from collections.abc import Sequence
from typing import Any, Literal

class _Model:
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...  # torch: forward; flax: inside apply
    def __getattr__(self, name: str) -> Any: ...

class CNN4(_Model):
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
        layout: Literal["maml", "learn2learn"] = "maml",
        **kwargs: Any,
    ) -> None: ...

class MiniImagenetCNN(CNN4): ...

class CNN4Backbone(_Model):
    def __init__(
        self,
        hidden_size: int = 64,
        layers: int = 4,
        channels: int = 3,
        max_pool: bool = True,
        max_pool_factor: float | None = None,
        *,
        track_running_stats: bool | None = None,
        layout: Literal["maml", "learn2learn"] = "maml",
        **kwargs: Any,
    ) -> None: ...

class ConvBase(_Model):
    def __init__(
        self,
        hidden: int = 64,
        channels: int = 1,
        max_pool: bool = False,
        layers: int = 4,
        max_pool_factor: float = 1.0,
        *,
        track_running_stats: bool | None = None,
        layout: Literal["maml", "learn2learn"] = "maml",
        **kwargs: Any,
    ) -> None: ...

class OmniglotCNN(_Model):
    def __init__(
        self,
        output_size: int = 5,
        hidden_size: int = 64,
        layers: int = 4,
        *,
        track_running_stats: bool | None = None,
        layout: Literal["maml", "learn2learn"] = "maml",
        **kwargs: Any,
    ) -> None: ...

class OmniglotFC(_Model):
    def __init__(
        self,
        input_size: int = 784,
        output_size: int = 5,
        sizes: Sequence[int] | None = None,
        *,
        track_running_stats: bool = False,
        **kwargs: Any,
    ) -> None: ...

class ResNet12Backbone(_Model):
    def __init__(
        self,
        avg_pool: bool = True,
        wider: bool = True,
        embedding_dropout: float = 0.0,
        dropblock_dropout: float = 0.1,
        dropblock_size: int = 5,
        channels: int = 3,
        **kwargs: Any,
    ) -> None: ...

class ResNet12(_Model):
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
        **kwargs: Any,
    ) -> None: ...

class WRN28Backbone(_Model):
    def __init__(self, dropout: float = 0.0, **kwargs: Any) -> None: ...

class WRN28(_Model):
    def __init__(
        self, output_size: int, hidden_size: int = 640, dropout: float = 0.0, **kwargs: Any
    ) -> None: ...

# torch only
class ConvBlock(_Model):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        max_pool: bool = True,
        max_pool_factor: float = 1.0,
        *,
        track_running_stats: bool | None = None,
        layout: str = "maml",
    ) -> None: ...

class LinearBlock(_Model):
    def __init__(self, input_size: int, output_size: int, *, track_running_stats: bool = False) -> None: ...

def fc_init_(module: Any) -> Any: ...
def maml_init_(module: Any) -> Any: ...
def truncated_normal_(tensor: Any, mean: float = 0.0, std: float = 1.0) -> Any: ...
def get_pretrained_backbone(
    model: str, dataset: str, spec: str = "default", root: str = "~/data", download: bool = False
) -> Any: ...

# jax only
BatchNorm: Any
Conv2d: Any
conv2d: Any
