"""The task pipeline shared by every backend: datasets, task transforms, task streams."""

from . import transforms as transforms
from ._datasets import ArrayDataset as ArrayDataset
from ._datasets import OnDeviceDataset as OnDeviceDataset
from ._datasets import synthetic_classification as synthetic_classification
from ._derived import FilteredMetaDataset as FilteredMetaDataset
from ._derived import UnionMetaDataset as UnionMetaDataset
from ._device_tasks import DeviceTasks as DeviceTasks
from ._kernel_mode import compiled_available as compiled_available
from ._kernel_mode import kernel_mode as kernel_mode
from ._kernel_mode import set_kernel_mode as set_kernel_mode
from ._meta_dataset import MetaDataset as MetaDataset
from ._random import task_rng as task_rng
from ._task import TaskBatch as TaskBatch
from ._task import TaskDescription as TaskDescription
from ._task_dataset import TaskDataset as TaskDataset
from ._task_dataset import Taskset as Taskset
from ._utils import InfiniteIterator as InfiniteIterator
from ._utils import partition_task as partition_task
from ._utils import partition_task_batch as partition_task_batch

__all__ = [
    "ArrayDataset",
    "DeviceTasks",
    "FilteredMetaDataset",
    "InfiniteIterator",
    "MetaDataset",
    "OnDeviceDataset",
    "TaskBatch",
    "TaskDataset",
    "TaskDescription",
    "Taskset",
    "UnionMetaDataset",
    "compiled_available",
    "kernel_mode",
    "partition_task",
    "partition_task_batch",
    "set_kernel_mode",
    "synthetic_classification",
    "task_rng",
    "transforms",
]
