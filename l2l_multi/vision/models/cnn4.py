"""``l2l.vision.models.cnn4``: learn2learn's path to its conv4 models and initialisers (torch)."""

from ..._paths import path_module

_NAMES = (
    "CNN4",
    "CNN4Backbone",
    "ConvBase",
    "ConvBlock",
    "LinearBlock",
    "MiniImagenetCNN",
    "OmniglotCNN",
    "OmniglotFC",
    "fc_init_",
    "maml_init_",
    "truncated_normal_",
)
__getattr__, __dir__ = path_module("vision.models", _NAMES, "l2l.vision.models.cnn4.")
