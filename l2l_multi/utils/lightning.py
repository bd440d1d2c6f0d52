"""``l2l.utils.lightning``: learn2learn's module path to ``EpisodicBatcher``.

Torch backend only, and needs the ``lightning`` extra (``pip install 'l2l_multi[lightning]'``);
importing this module imports torch and Lightning.
"""

from ..backends.torch.lightning import EpisodicBatcher as EpisodicBatcher
from ..backends.torch.lightning import Epochifier as Epochifier
from ..backends.torch.lightning import NoLeaveProgressBar as NoLeaveProgressBar
from ..backends.torch.lightning import TrackTestAccuracyCallback as TrackTestAccuracyCallback

__all__ = ["EpisodicBatcher", "Epochifier", "NoLeaveProgressBar", "TrackTestAccuracyCallback"]
