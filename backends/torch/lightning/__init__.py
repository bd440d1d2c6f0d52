"""Lightning modules for episodic few-shot learning (learn2learn 0.2.0's
``learn2learn.algorithms.lightning`` and ``learn2learn.utils.lightning``), torch backend.

Needs the ``lightning`` extra (``pip install 'l2l_multi[lightning]'``).
"""

from ._batcher import EpisodicBatcher as EpisodicBatcher
from ._batcher import Epochifier as Epochifier
from ._callbacks import NoLeaveProgressBar as NoLeaveProgressBar
from ._callbacks import TrackTestAccuracyCallback as TrackTestAccuracyCallback
from ._episodic import LightningEpisodicModule as LightningEpisodicModule
from ._episodic import split_episode as split_episode
from ._gradient_based import LightningANIL as LightningANIL
from ._gradient_based import LightningMAML as LightningMAML
from ._metric import LightningMetaOptNet as LightningMetaOptNet
from ._metric import LightningPrototypicalNetworks as LightningPrototypicalNetworks

__all__ = [
    "EpisodicBatcher",
    "Epochifier",
    "LightningANIL",
    "LightningEpisodicModule",
    "LightningMAML",
    "LightningMetaOptNet",
    "LightningPrototypicalNetworks",
    "NoLeaveProgressBar",
    "TrackTestAccuracyCallback",
    "split_episode",
]
