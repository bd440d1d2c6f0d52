"""``l2l.algorithms.lightning``: learn2learn's module path to the Lightning modules.

Torch backend only, and needs the ``lightning`` extra (``pip install 'l2l_multi[lightning]'``);
importing this module imports torch and Lightning. The classes live in
``l2l_multi.backends.torch.lightning``.
"""

from ...backends.torch.lightning import LightningANIL as LightningANIL
from ...backends.torch.lightning import LightningEpisodicModule as LightningEpisodicModule
from ...backends.torch.lightning import LightningMAML as LightningMAML
from ...backends.torch.lightning import LightningMetaOptNet as LightningMetaOptNet
from ...backends.torch.lightning import LightningPrototypicalNetworks as LightningPrototypicalNetworks

__all__ = [
    "LightningANIL",
    "LightningEpisodicModule",
    "LightningMAML",
    "LightningMetaOptNet",
    "LightningPrototypicalNetworks",
]
