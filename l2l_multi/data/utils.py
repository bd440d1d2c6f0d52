"""``l2l.data.utils``: learn2learn's path to its data helpers.

``download_file`` is our verified downloader (a checksum is required; learn2learn's takes none).
learn2learn's Google Drive helpers are not provided: every loader here downloads from a stated
URL and checks the archive's digest.
"""

from ..vision.datasets._download import download_file as download_file
from ._datasets import OnDeviceDataset as OnDeviceDataset
from ._utils import InfiniteIterator as InfiniteIterator
from ._utils import partition_task as partition_task

__all__ = ["InfiniteIterator", "OnDeviceDataset", "download_file", "partition_task"]
