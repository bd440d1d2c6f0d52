"""Task transforms (``l2l.data.transforms.NWays`` etc.); see ``_transforms.py``."""

from ._transforms import ConsecutiveLabels as ConsecutiveLabels
from ._transforms import FilterLabels as FilterLabels
from ._transforms import FusedNWaysKShots as FusedNWaysKShots
from ._transforms import KShots as KShots
from ._transforms import LoadData as LoadData
from ._transforms import NWays as NWays
from ._transforms import RemapLabels as RemapLabels
from ._transforms import TaskTransform as TaskTransform

__all__ = [
    "ConsecutiveLabels",
    "FilterLabels",
    "FusedNWaysKShots",
    "KShots",
    "LoadData",
    "NWays",
    "RemapLabels",
    "TaskTransform",
]
