"""``l2l.vision.datasets``: few-shot image datasets as numpy arrays (no framework needed)."""

from ._aircraft import FGVCAircraft as FGVCAircraft
from ._cifar import CIFARFS as CIFARFS
from ._cifar import FC100 as FC100
from ._cifar import load_cifar100 as load_cifar100
from ._common import ImageArrayDataset as ImageArrayDataset
from ._cub import CUBirds200 as CUBirds200
from ._download import ChecksumError as ChecksumError
from ._download import CorruptArchiveError as CorruptArchiveError
from ._download import UnsafeArchiveError as UnsafeArchiveError
from ._download import download_file as download_file
from ._download import extract_archive as extract_archive
from ._download import verify_file as verify_file
from ._download import zip_content_digest as zip_content_digest
from ._dtd import DescribableTextures as DescribableTextures
from ._fine_grained import meta_dataset_split as meta_dataset_split
from ._fungi import FGVCFungi as FGVCFungi
from ._mini_imagenet import MiniImagenet as MiniImagenet
from ._omniglot import FullOmniglot as FullOmniglot
from ._omniglot import omniglot_content_digest as omniglot_content_digest
from ._quickdraw import Quickdraw as Quickdraw
from ._tiered_imagenet import TieredImagenet as TieredImagenet
from ._vgg_flower import VGGFlower102 as VGGFlower102

__all__ = [
    "CIFARFS",
    "FC100",
    "load_cifar100",
    "ImageArrayDataset",
    "ChecksumError",
    "CorruptArchiveError",
    "UnsafeArchiveError",
    "download_file",
    "extract_archive",
    "verify_file",
    "zip_content_digest",
    "MiniImagenet",
    "FullOmniglot",
    "omniglot_content_digest",
    "TieredImagenet",
    "CUBirds200",
    "DescribableTextures",
    "FGVCAircraft",
    "FGVCFungi",
    "Quickdraw",
    "VGGFlower102",
    "meta_dataset_split",
]
