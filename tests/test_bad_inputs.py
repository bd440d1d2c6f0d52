"""A catalogue of wrong inputs across the public API.

Every case calls one public entry point with one wrong argument (an unknown name, a wrong shape or
dtype, more ways than classes, more shots than samples, a torch tensor where jax arrays go and back,
a NaN loss, a missing or damaged data file) and checks the exception type *and* that the message
names the offending argument, so that a user can fix the call from the message alone.

Organised by area; most areas are tables of ``pytest.param(call, exception, match)``. Cases that
need torch or jax are skipped when the framework is missing. Everything runs on tiny synthetic data
(``synthetic_classification``, ``Linear``/``Dense`` models, fixture files written under tmp_path).

Known gaps, where the library still accepts bad input silently or lets a framework's own error
through, are listed in ``test_known_gaps`` so that a fix shows up as a test to update.
"""

import pickle
import re
import zipfile

import numpy as np
import pytest
from _helpers import HAVE_JAX, HAVE_TORCH, run_python

import l2l_multi as l2l
from l2l_multi.data import (
    ArrayDataset,
    InfiniteIterator,
    MetaDataset,
    TaskDataset,
    UnionMetaDataset,
    partition_task,
    partition_task_batch,
    synthetic_classification,
)
from l2l_multi.data.transforms import FilterLabels, FusedNWaysKShots, KShots, LoadData, NWays, RemapLabels

needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
needs_jax = pytest.mark.skipif(not HAVE_JAX, reason="jax not installed")
needs_both = pytest.mark.skipif(not (HAVE_TORCH and HAVE_JAX), reason="needs torch and jax")


def case(call, exception, match, *, id, marks=()):
    """One row of a table: ``call()`` must raise ``exception`` with a message matching ``match``."""
    return pytest.param(call, exception, match, id=id, marks=marks)


def check(call, exception, match):
    with pytest.raises(exception, match=match):
        call()


# Tables run on both backends fill each row's ``match`` with the backend's own words from WORDS,
# so a mistake has one wording whatever the backend.
WORDS = {
    "torch": {
        "backend": "torch",
        "other": "jax",
        "other_kind": "jax array",
        "module": r"a torch\.nn\.Module",
        "float32": r"torch\.float32",
        "arrays": "a torch tensor",
        "transform": r"a callable transform factory \(e\.g\. l2l\.optim\.ModuleTransform\(\.\.\.\)\)",
    },
    "jax": {
        "backend": "jax",
        "other": "torch",
        "other_kind": r"torch\.Tensor",
        "module": r"a flax\.linen\.Module or a function f\(variables, x\)",
        "float32": "float32",
        "arrays": "a jax/numpy array",
        "transform": r"a GradientTransformation \(init, update\)",
    },
}
NEEDS = {"torch": needs_torch, "jax": needs_jax}


def over_backends(rows, gaps=None, covered=None):
    """Each row of ``rows`` once per backend, its ``match`` filled in with that backend's WORDS.

    ``gaps``: ``{(row id, backend): reason}`` for rows a backend does not meet yet; they run as
    strict xfails, so the day the backend learns to refuse the input the test fails and the mark
    must go (the rule of ``test_known_gaps``). ``covered``: ``{(row id, backend): where}`` for
    rows left out on a backend because another row or file checks the same code at less cost.
    """
    gaps, covered = gaps or {}, covered or {}
    params = []
    for row in rows:
        call, exception, match = row.values
        for backend in ("torch", "jax"):
            if (row.id, backend) in covered:
                continue
            marks = [NEEDS[backend], *row.marks]
            if (row.id, backend) in gaps:
                marks.append(pytest.mark.xfail(strict=True, reason=gaps[(row.id, backend)]))
            filled = match.format(**WORDS[backend])
            params.append(
                pytest.param(backend, call, exception, filled, id=f"{backend}-{row.id}", marks=marks)
            )
    return params


def _dataset(classes=4, samples=3, shape=(2,)):
    return MetaDataset(synthetic_classification(num_classes=classes, samples_per_class=samples, shape=shape))


# ------------------------------------------------------------------------------------------------
# backend selection


@pytest.mark.parametrize(
    "entry, bad",
    [
        (entry, bad)
        for entry in ("set_backend", "use_backend", "load_backend")
        for bad in ("tensorflow", "Torch", "numpy", "", None, 3)
        if not (entry == "load_backend" and bad is None)  # load_backend(None): the current backend
    ],
)
def test_unknown_backend_names(entry, bad):
    def call():
        if entry == "use_backend":
            with l2l.use_backend(bad):
                pass
        else:
            getattr(l2l, entry)(bad)

    check(
        call,
        ValueError,
        rf"name={re.escape(repr(bad))} is not a known backend; available backends: "
        r"'torch', 'jax'",
    )


def test_unknown_backend_in_environment_variable():
    result = run_python("import l2l_multi as l2l; l2l.get_backend()", env={"L2L_BACKEND": "tensorflow"})
    assert result.returncode != 0
    assert "ValueError: L2L_BACKEND='tensorflow' is not a known backend" in result.stderr


def test_missing_framework_names_the_pip_extra():
    code = "import sys; sys.modules['jax'] = None\nimport l2l_multi as l2l\nl2l.set_backend('jax')"
    result = run_python(code)
    assert result.returncode != 0
    assert "ImportError: the 'jax' backend needs 'jax'" in result.stderr
    assert "pip install 'l2l_multi[jax]'" in result.stderr


# ------------------------------------------------------------------------------------------------
# l2l.MetaLearner: these are checked before a framework is imported

METALEARNER_CASES = [
    case(
        lambda: l2l.MetaLearner("mamll"),
        ValueError,
        r"algorithm='mamll' is not one of 'maml', 'metasgd'",
        id="unknown-algorithm",
    ),
    case(
        lambda: l2l.MetaLearner("maml", "resnet"),
        ValueError,
        r"model='resnet' is not one of 'omniglot-cnn'",
        id="unknown-model",
    ),
    case(
        lambda: l2l.MetaLearner("maml", "omniglot-fc", 1),
        ValueError,
        r"ways=1 must be an int >= 2",
        id="one-way",
    ),
    case(
        lambda: l2l.MetaLearner("maml", "omniglot-fc", 3.0),
        ValueError,
        r"ways=3.0 must be an int",
        id="float-ways",
    ),
    case(
        lambda: l2l.MetaLearner("maml", "omniglot-fc", 3, adaptation_steps=-1),
        ValueError,
        r"adaptation_steps=-1 must be a non-negative int",
        id="negative-steps",
    ),
    case(
        lambda: l2l.MetaLearner("maml", "omniglot-fc", 3, meta_lr=-1.0),
        ValueError,
        r"meta_lr=-1.0 must be >= 0 and finite",
        id="negative-meta-lr",
    ),
    case(
        lambda: l2l.MetaLearner("maml", "omniglot-fc", 3, meta_lr="fast"),
        TypeError,
        r"meta_lr='fast' must be a float >= 0",
        id="string-meta-lr",
    ),
    case(
        lambda: l2l.MetaLearner("maml", "omniglot-fc", 3, dtype="float16"),
        ValueError,
        r"dtype='float16' is not one of 'float32', 'float64'",
        id="unknown-dtype",
    ),
    case(
        lambda: l2l.MetaLearner("maml", "omniglot-fc", 3, path="fast"),
        ValueError,
        r"path='fast' is not one of 'auto', 'loop', 'vmap'",
        id="unknown-path",
    ),
    case(
        lambda: l2l.MetaLearner("maml", "omniglot-fc", 3, task_map="pmap"),
        ValueError,
        r"task_map='pmap' is not one of 'auto', 'vmap', 'sequential'",
        id="unknown-task-map",
    ),
    case(
        lambda: l2l.MetaLearner("maml", "omniglot-fc", 3, backend="tensorflow"),
        ValueError,
        r"backend='tensorflow' is not a known backend",
        id="unknown-backend",
    ),
]


@pytest.mark.parametrize("call, exception, match", METALEARNER_CASES)
def test_metalearner_arguments(call, exception, match):
    check(call, exception, match)


@needs_torch
def test_metalearner_torch_only_options():
    check(
        lambda: l2l.MetaLearner("maml", "omniglot-fc", 3, backend="torch", conv="xla"),
        TypeError,
        r"unexpected keyword argument 'conv'",
    )


@needs_jax
def test_metalearner_jax_only_options():
    check(
        lambda: l2l.MetaLearner("maml", "omniglot-fc", 3, backend="jax", path="loop"),
        TypeError,
        r"unexpected keyword argument 'path'",
    )


_METALEARNERS = {}
_X = np.random.default_rng(0).random((2, 6, 784), dtype=np.float32)
_Y = np.tile(np.arange(3), (2, 2))


def _metalearner(backend):
    """One MAML MetaLearner per backend for the module: every row below leaves it unchanged."""
    if backend not in _METALEARNERS:
        _METALEARNERS[backend] = l2l.MetaLearner("maml", "omniglot-fc", 3, backend=backend)
    return _METALEARNERS[backend]


# (backend) -> a MetaLearner call with one wrong argument; match filled in from WORDS
METALEARNER_BACKEND_CASES = [
    case(
        lambda be: l2l.MetaLearner("metaoptnet", "omniglot-fc", 3, backend=be, head="knn"),
        ValueError,
        r"head must be one of 'svm', 'ridge', got 'knn'",
        id="unknown-head",
    ),
    case(
        lambda be: _metalearner(be).train_step(_X[:, :3, :100], _Y[:, :3], _X[:, 3:, :100], _Y[:, 3:]),
        ValueError,
        r"expected 784 features per sample \(input_size\)",
        id="feature-count",
    ),
    case(
        lambda be: _metalearner(be).train_step(_X[0, :3], _Y[0, :3], _X[0, 3:], _Y[0, 3:]),
        ValueError,
        r"support_y must have shape \[B, samples, ...\] with the same B as support_x \(3\)",
        id="unbatched",
    ),
    case(
        lambda be: _metalearner(be).train_step(_X[:, :3], _Y[:, :3].astype(np.float32), _X[:, 3:], _Y[:, 3:]),
        TypeError,
        r"support_y has dtype {float32}; loss=cross_entropy needs integer class labels",
        id="float-labels",
    ),
    case(
        lambda be: _metalearner(be).evaluate(_X[:, :3], _Y[:, :3], _X[:, 3:], _Y[:, 3:], adaptation_steps=-1),
        ValueError,
        r"adaptation_steps=-1 must be a non-negative int",
        id="negative-steps",
    ),
    case(
        lambda be: _metalearner(be).evaluate(_X[:, :3], _Y[:, :3], _X[:, 3:], _Y[:, 3:], ways=5),
        ValueError,
        r"ways=5: maml has a 3-way output layer",
        id="ways",
    ),
    case(
        lambda be: _metalearner(be).train_step(_X[:, :3] * np.nan, _Y[:, :3], _X[:, 3:], _Y[:, 3:]),
        FloatingPointError,
        r"non-finite meta-update at iteration 1: .*support_x contains NaN/inf\. The update was skipped",
        id="nan-inputs",
    ),
]


@pytest.mark.parametrize(
    "backend, call, exception, match",
    over_backends(
        METALEARNER_BACKEND_CASES,
        # compiling the jax meta-step costs ~10 s here; its guard is tested in test_faults_numeric.py
        covered={("nan-inputs", "jax"): "tests/test_faults_numeric.py"},
    ),
)
def test_metalearner_batches_and_options(backend, call, exception, match):
    check(lambda: call(backend), exception, match)


# ------------------------------------------------------------------------------------------------
# the data pipeline: datasets, task transforms, task streams, partitions

DATA = _dataset()  # 4 classes x 3 samples, 2 features
ARRAYS = synthetic_classification(num_classes=4, samples_per_class=3, shape=(2,))
X, Y = np.zeros((6, 2)), np.array([0, 0, 0, 1, 1, 1])


def _sample(transforms, **options):
    return TaskDataset(DATA, transforms, backend="numpy", **options).sample()


DATA_CASES = [
    # ways > classes, shots > samples
    case(
        lambda: NWays(DATA, 5),
        ValueError,
        r"n=5 is larger than the number of classes in the dataset \(4\)",
        id="nways-more-than-classes",
    ),
    case(
        lambda: FusedNWaysKShots(DATA, n=5, k=1),
        ValueError,
        r"n=5 is larger than the number of classes available \(4\)",
        id="fused-more-ways-than-classes",
    ),
    case(
        lambda: _sample([NWays(DATA, 2), KShots(DATA, 4), LoadData(DATA)]),
        ValueError,
        r"k=4 is larger than the 3 samples of label \d+; lower k or pass replacement=True",
        id="kshots-more-than-samples",
    ),
    case(
        lambda: FusedNWaysKShots(DATA, n=2, k=4),
        ValueError,
        r"k=4 is larger than the 3 samples",
        id="fused-more-shots-than-samples",
    ),
    case(
        lambda: _sample([FilterLabels(DATA, [0, 1]), NWays(DATA, 3), LoadData(DATA)]),
        ValueError,
        r"n=3 is larger than the number of classes in the task \(2\)",
        id="nways-more-than-filtered",
    ),
    # counts that are not positive ints
    case(lambda: NWays(DATA, 0), ValueError, r"n must be a positive integer, got 0", id="nways-zero"),
    case(lambda: NWays(DATA, 2.5), ValueError, r"n must be a positive integer, got 2.5", id="nways-float"),
    case(lambda: KShots(DATA, -1), ValueError, r"k must be a positive integer, got -1", id="kshots-negative"),
    case(lambda: KShots(DATA, True), ValueError, r"k must be a positive integer, got True", id="kshots-bool"),
    # wrong objects where a MetaDataset or a task description goes
    case(
        lambda: NWays(5, 2),
        TypeError,
        r"dataset must be a MetaDataset or a map-style dataset .* got int",
        id="transform-on-int",
    ),
    case(
        lambda: RemapLabels([1, 2]),
        TypeError,
        r"a MetaDataset's samples must be \(x, y\) pairs; dataset\[0\] is a int",
        id="remap-on-list",
    ),
    case(
        lambda: _sample([LoadData(DATA), KShots(DATA, 1)]),
        TypeError,
        r"KShots works on task descriptions; it received a TaskBatch. Place it before LoadData",
        id="kshots-after-loaddata",
    ),
    case(
        lambda: FilterLabels(DATA, [99]),
        ValueError,
        r"labels contains 99, which is not a label",
        id="filter-unknown-label",
    ),
    case(lambda: FilterLabels(DATA, []), ValueError, r"labels is empty", id="filter-no-labels"),
    # TaskDataset
    case(
        lambda: TaskDataset(DATA, [NWays(DATA, 2), 3]),
        TypeError,
        r"task_transforms\[1\] is a int",
        id="taskdataset-transform-not-callable",
    ),
    case(
        lambda: TaskDataset(DATA, num_tasks=0),
        ValueError,
        r"num_tasks must be -1 \(endless stream\)",
        id="taskdataset-zero-tasks",
    ),
    case(
        lambda: TaskDataset(DATA, seed="abc"),
        ValueError,
        r"seed must be an int or None, got 'abc'",
        id="taskdataset-string-seed",
    ),
    case(
        lambda: TaskDataset(DATA, backend="tensorflow"),
        ValueError,
        r"backend='tensorflow' is not a known backend; available: 'torch', 'jax', 'numpy'",
        id="taskdataset-unknown-backend",
    ),
    case(
        lambda: TaskDataset(5),
        TypeError,
        r"dataset must be a map-style dataset .* got int",
        id="taskdataset-not-a-dataset",
    ),
    case(
        lambda: TaskDataset(DATA, backend="numpy").sample_batch(0),
        ValueError,
        r"n must be a positive integer, got 0",
        id="sample-batch-zero",
    ),
    case(
        lambda: TaskDataset(DATA, num_tasks=5, backend="numpy")[10],
        IndexError,
        r"task index 10 is out of range for num_tasks=5",
        id="task-index-out-of-range",
    ),
    case(
        lambda: TaskDataset(DATA, backend="numpy")["a"],
        TypeError,
        r"task index must be an int, got str",
        id="task-index-string",
    ),
    # datasets
    case(lambda: MetaDataset(5), TypeError, r"dataset must be a map-style dataset", id="metadataset-int"),
    case(lambda: MetaDataset([]), ValueError, r"dataset is empty", id="metadataset-empty"),
    case(
        lambda: MetaDataset([(1, [0]), (2, [1])]),
        ValueError,
        r"labels must be hashable; the label of sample 0 is a list",
        id="metadataset-unhashable-labels",
    ),
    case(
        lambda: MetaDataset(ARRAYS, indices_to_labels={0: 0}),
        ValueError,
        r"indices_to_labels has no label for 11 of 12 indices",
        id="metadataset-partial-labels",
    ),
    case(lambda: UnionMetaDataset([]), ValueError, r"datasets is empty", id="union-empty"),
    case(
        lambda: ArrayDataset(np.zeros((3, 2)), np.zeros(4)),
        ValueError,
        r"inputs has 3 samples but targets has 4",
        id="arraydataset-length-mismatch",
    ),
    case(
        lambda: ArrayDataset(np.zeros((3, 2)), np.zeros((3, 1))),
        ValueError,
        r"targets must be 1-d; got shapes \(3, 2\) and \(3, 1\)",
        id="arraydataset-2d-targets",
    ),
    case(
        lambda: synthetic_classification(num_classes=0),
        ValueError,
        r"num_classes must be a positive int",
        id="synthetic-zero-classes",
    ),
    case(
        lambda: synthetic_classification(samples_per_class="5"),
        ValueError,
        r"samples_per_class must be a positive int, got '5'",
        id="synthetic-string-samples",
    ),
    case(
        lambda: synthetic_classification(shape=(-1,)),
        ValueError,
        r"shape must be a tuple of positive ints, got \(-1,\)",
        id="synthetic-negative-shape",
    ),
    case(
        lambda: synthetic_classification(noise=-1.0),
        ValueError,
        r"noise must be a float >= 0, got -1.0",
        id="synthetic-negative-noise",
    ),
    # partition_task / partition_task_batch: shots, shapes, types
    case(
        lambda: partition_task(X, Y, shots=-1),
        ValueError,
        r"shots must be a non-negative integer, got -1",
        id="partition-negative-shots",
    ),
    case(
        lambda: partition_task(X, Y, shots=4),
        ValueError,
        r"shots=4 but label 0 has only 3 samples",
        id="partition-more-shots-than-samples",
    ),
    case(
        lambda: partition_task(X, Y[:5]),
        ValueError,
        r"labels must have shape \[6\] to match data; got \(5,\)",
        id="partition-short-labels",
    ),
    case(
        lambda: partition_task(X, Y[:, None]),
        ValueError,
        r"labels must have shape \[6\]",
        id="partition-2d-labels",
    ),
    case(
        lambda: partition_task(list(range(6)), Y),
        TypeError,
        r"data must be an array \[m, ...\].* got list",
        id="partition-list-data",
    ),
    case(
        lambda: partition_task(np.float32(1.0), Y),
        ValueError,
        r"data must have shape \[m, ...\], got \(\)",
        id="partition-scalar-data",
    ),
    case(
        lambda: partition_task_batch(X, Y),
        ValueError,
        r"labels must have shape \[B, m\] = \(6, 2\) to match data; got \(6,\)",
        id="batch-unbatched",
    ),
    case(
        lambda: partition_task_batch(X[:, 0], Y[None]),
        ValueError,
        r"data must have shape \[B, m, ...\], got \(6,\)",
        id="batch-1d-data",
    ),
    case(
        lambda: partition_task_batch(X[None], Y[None, :5]),
        ValueError,
        r"labels must have shape \[B, m\] = \(1, 6\) to match data; got \(1, 5\)",
        id="batch-short-labels",
    ),
    case(
        lambda: partition_task_batch(X[None], Y[None], shots=4),
        ValueError,
        r"shots=4 but label 0 has only 3 samples",
        id="batch-more-shots-than-samples",
    ),
    case(
        lambda: partition_task_batch(np.zeros((2, 6)), np.array([Y, [0, 1, 1, 1, 1, 1]]), shots=2),
        ValueError,
        r"shots=2 but label 0 has only 1 samples",
        id="batch-uneven-tasks",
    ),
    case(
        lambda: partition_task_batch([[1, 2, 3, 4, 5, 6]], [list(Y)]),
        TypeError,
        r"data must be an array \[B, m, ...\].* got list",
        id="batch-list-data",
    ),
    case(
        lambda: partition_task_batch(X[None], Y[None], shots=True),
        ValueError,
        r"shots must be a non-negative integer, got True",
        id="batch-bool-shots",
    ),
    # helpers
    case(lambda: next(InfiniteIterator([])), ValueError, r"iterable is empty", id="infinite-iterator-empty"),
    case(
        lambda: l2l.data.set_kernel_mode("fast"),
        ValueError,
        r"mode='fast' is not one of",
        id="unknown-kernel-mode",
    ),
]


@pytest.mark.parametrize("call, exception, match", DATA_CASES)
def test_data_pipeline(call, exception, match):
    check(call, exception, match)


def _framework_arrays(framework, data, labels):
    if framework == "torch":
        import torch

        return torch.as_tensor(data), torch.as_tensor(labels)
    import jax.numpy as jnp

    return jnp.asarray(data), jnp.asarray(labels)


@pytest.mark.parametrize(
    "framework", [pytest.param("torch", marks=needs_torch), pytest.param("jax", marks=needs_jax)]
)
def test_partition_framework_arrays(framework):
    data, labels = _framework_arrays(framework, np.zeros((2, 6, 3), np.float32), np.stack([Y, Y]))
    check(lambda: partition_task(data[0], labels[0], shots=4), ValueError, r"shots=4 but label 0 has only 3")
    check(lambda: partition_task(data[0], labels[0, :5]), ValueError, r"labels must have shape \[6\]")
    check(lambda: partition_task_batch(data[0], labels[0]), ValueError, r"labels must have shape \[B, m\]")
    check(lambda: partition_task_batch(data, labels[:, :4]), ValueError, r"labels must have shape \[B, m\]")


# ------------------------------------------------------------------------------------------------
# l2l_multi.transforms: the backend-neutral gradient transforms


def _transforms_cases():
    from l2l_multi import transforms as t

    return [
        case(lambda: t.sgd(-0.1), ValueError, r"learning_rate=-0.1 must be >= 0", id="sgd-negative"),
        case(
            lambda: t.sgd("0.1"),
            TypeError,
            r"learning_rate='0.1' must be a float or a scalar array",
            id="sgd-string",
        ),
        case(lambda: t.sgd(None), TypeError, r"learning_rate=None must be a float", id="sgd-none"),
        case(
            lambda: t.scale("x"),
            TypeError,
            r"step_size='x' must be a float or a scalar array",
            id="scale-string",
        ),
        case(
            lambda: t.per_parameter_sgd([0.1]).update([1.0, 2.0], t.EmptyState()),
            ValueError,
            r"tree structures differ: length 2",
            id="per-parameter-lengths",
        ),
        case(
            lambda: t.per_parameter_sgd({"a": 0.1}).update({"b": 1.0}, t.EmptyState()),
            ValueError,
            r"tree structures differ: keys \['b'\]",
            id="per-parameter-keys",
        ),
        case(
            lambda: t.chain(t.sgd(0.1), "adam"),
            TypeError,
            r"transforms\[1\]='adam' is not a GradientTransformation",
            id="chain-not-a-transform",
        ),
        case(
            lambda: t.kronecker(layout="nchw"),
            ValueError,
            r"layout='nchw' is not one of \('torch', 'flax'\)",
            id="kronecker-layout",
        ),
        case(
            lambda: t.meta_curvature(layout="x"),
            ValueError,
            r"layout='x' is not one of",
            id="meta-curvature-layout",
        ),
        case(
            lambda: t.hypergradient_sgd(0.0, 0.01),
            ValueError,
            r"learning_rate=0.0 must be > 0",
            id="hypergradient-zero-lr",
        ),
        case(
            lambda: t.apply_updates([1.0], [1.0, 2.0]),
            ValueError,
            r"updates has 2 entries but params has 1",
            id="apply-updates-lengths",
        ),
        case(
            lambda: t.apply_updates({"w": 1.0}, {"w": 1.0, "b": 2.0}),
            ValueError,
            r"updates has keys \['b'\] that params does not have",
            id="apply-updates-keys",
        ),
    ]


@pytest.mark.parametrize("call, exception, match", _transforms_cases())
def test_gradient_transforms(call, exception, match):
    check(call, exception, match)


# ------------------------------------------------------------------------------------------------
# l2l_multi.interop: mixed torch and jax, wrong trees


@needs_both
def test_interop_wrong_types():
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import torch

    from l2l_multi import interop

    check(lambda: interop.to_jax({"a": "x"}), TypeError, r"to_jax: the leaf at \['a'\] is a str")
    check(lambda: interop.to_jax(None), TypeError, r"to_jax: the leaf at the argument itself is a NoneType")
    check(lambda: interop.to_torch([1, object()]), TypeError, r"to_torch: the leaf at \[1\] is a object")
    check(
        lambda: jax.jit(interop.to_torch)(jnp.ones(2)),
        TypeError,
        r"to_torch: the leaf at the argument itself is a traced jax value",
    )
    check(lambda: interop.torch_to_flax(jnp.ones(2)), TypeError, r"torch_module must be a torch.nn.Module")
    conv_then_linear = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2, 3)
    )
    check(lambda: interop.torch_to_flax(conv_then_linear), ValueError, r"input_shape=None: the input shape")
    linear = torch.nn.Linear(2, 3)
    variables = nn.Dense(4).init(jax.random.PRNGKey(0), jnp.ones((1, 2)))
    check(lambda: interop.flax_to_torch([1], linear), TypeError, r"variables must be a mapping")
    check(lambda: interop.flax_to_torch(linear, variables), TypeError, r"variables must be a mapping")
    check(
        lambda: interop.flax_to_torch(variables, nn.Dense(4)),
        TypeError,
        r"torch_module must be a torch.nn.Module, got Dense",
    )
    check(
        lambda: interop.flax_to_torch({"params": {}, "cache": {}}, linear),
        ValueError,
        r"variables has collections \['cache'\]",
    )
    check(
        lambda: interop.flax_to_torch(variables, linear),
        ValueError,
        r"variables params/kernel gives shape \(4, 2\) "
        r"in torch layout, but torch 'weight' has shape \(3, 2\)",
    )


# ------------------------------------------------------------------------------------------------
# learners on both backends: one table per family of mistakes, each row run on torch and on jax
# with one wording; the words that name a backend's own types come from WORDS


class Backend:
    """What a row needs from one backend: its algorithms, a tiny model, array conversions."""

    def __init__(self, name):
        import importlib

        self.name = name
        self.algorithms = importlib.import_module(f"l2l_multi.backends.{name}.algorithms")
        self.ways = () if name == "torch" else (3,)  # jax metric learners take ways=

    def model(self, outputs=3, inputs=4):
        if self.name == "torch":
            import torch

            return torch.nn.Linear(inputs, outputs)
        import flax.linen as nn

        return nn.Dense(outputs)

    def meta_parameters(self, learner):
        if self.name == "torch":
            return learner.meta_parameters()
        import jax
        import jax.numpy as jnp

        return learner.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))

    def array(self, value):
        return _to_framework(self.name, np.asarray(value))

    def foreign(self, value):
        return _to_framework(WORDS[self.name]["other"], _numpy(value))

    def float32(self, value):
        return self.array(_numpy(value).astype(np.float32))


def _numpy(value):
    return (
        value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else np.asarray(value)
    )


def _to_framework(framework, array):
    if framework == "torch":
        import torch

        return torch.from_numpy(np.array(array))  # a writable copy: jax hands out read-only views
    import jax.numpy as jnp

    return jnp.asarray(array)


_BATCHES = {}


@pytest.fixture
def learner_batch(request):
    """``(Backend, MAML over Linear(4, 3) / Dense(3), its meta-parameters, a 2-task batch)`` for
    the backend named by the test's ``backend`` parameter, built once per module (same seeded
    numbers on both backends)."""
    backend = request.getfixturevalue("backend")
    if backend not in _BATCHES:
        be = Backend(backend)
        if backend == "torch":
            import torch

            torch.manual_seed(0)
        maml = be.algorithms.MAML(be.model(), lr=0.5)
        rng = np.random.default_rng(0)
        batch = {
            "support_x": be.array(rng.normal(size=(2, 3, 4)).astype(np.float32)),
            "support_y": be.array(np.tile(np.arange(3), (2, 1))),
            "query_x": be.array(rng.normal(size=(2, 6, 4)).astype(np.float32)),
            "query_y": be.array(np.tile(np.arange(3), (2, 2))),
        }
        _BATCHES[backend] = (be, maml, be.meta_parameters(maml), batch)
    return _BATCHES[backend]


NAN = (
    r"is non-finite \(.*nan.*\); the inner-loop learning rate may be too large or the inputs contain NaN/inf"
)

# (batch, Backend) -> arguments replaced in meta_batch_loss(algorithm, meta_params, **batch)
META_BATCH_CASES = [
    case(
        lambda b, be: {"support_x": be.foreign(b["support_x"])},
        TypeError,
        r"support_x is a {other_kind}; the {backend} backend takes {backend} or numpy arrays: convert it "
        r"with l2l_multi\.interop\.to_{backend}",
        id="foreign-support-x",
        marks=needs_both,
    ),
    case(
        lambda b, be: {"query_y": be.foreign(b["query_y"])},
        TypeError,
        r"query_y is a {other_kind}; the {backend} backend takes",
        id="foreign-query-y",
        marks=needs_both,
    ),
    case(
        lambda b, be: {"support_x": b["support_x"].tolist()},  # numpy arrays are accepted (the contract)
        TypeError,
        r"support_x must be a {backend} or numpy array, got list",
        id="list-support-x",
    ),
    case(
        lambda b, be: {"meta_params": b["support_x"]},
        TypeError,
        r"meta_batch_loss got an array \(.*\) where meta_params belongs; the call is "
        r"meta_batch_loss\(algorithm, meta_params, support_x, support_y, query_x, query_y\)",
        id="old-call-form",
    ),
    case(
        lambda b, be: {k: v[0] for k, v in b.items()},
        ValueError,
        r"support_y must have shape \[B, samples, ...\] with the same B as support_x \(3\) \(stacked "
        r"tasks\); got \(3,\)",
        id="unbatched",
    ),
    case(
        lambda b, be: {"query_x": b["query_x"][:1], "query_y": b["query_y"][:1]},
        ValueError,
        r"query_x must have shape \[B, samples, ...\] with the same B as support_x \(2\)",
        id="batch-size-mismatch",
    ),
    case(
        lambda b, be: {"support_y": b["support_y"][:, :2]},
        ValueError,
        r"support_y must hold one label per sample of support_x: support_x has shape \(2, 3, 4\), "
        r"support_y \(2, 2\)",
        id="label-count-mismatch",
    ),
    case(
        lambda b, be: {"query_x": b["query_x"][:, :0], "query_y": b["query_y"][:, :0]},
        ValueError,
        r"query_x has no samples \(shape \(2, 0, 4\)\)",
        id="empty-query",
    ),
    case(
        lambda b, be: {"support_y": be.float32(b["support_y"])},
        TypeError,
        r"support_y has dtype {float32}; loss=cross_entropy needs integer class labels",
        id="float-labels",
    ),
    case(
        lambda b, be: {"support_y": b["support_y"] - 1},
        ValueError,
        r"support_y holds the label -1; class labels must lie in \[0,",
        id="negative-label",
    ),
    case(
        lambda b, be: {"steps": -1},
        ValueError,
        r"steps=-1 must be a non-negative int",
        id="negative-steps",
    ),
    case(
        lambda b, be: {"adaptation_steps": -1},
        ValueError,
        r"steps=-1 must be a non-negative int",
        id="negative-steps-old-spelling",
    ),
    case(lambda b, be: {"steps": 1.5}, ValueError, r"steps=1.5 must be a non-negative int", id="float-steps"),
    case(
        lambda b, be: {"task_map": "fast"},
        ValueError,
        r"task_map='fast' is not one of \('auto', 'vmap', 'sequential'\)",
        id="unknown-task-map",
    ),
    case(
        lambda b, be: {"pathh": "loop"},
        TypeError,
        r"meta_batch_loss got unexpected keyword arguments \['pathh'\]; the {backend} backend takes loss, "
        r"steps, train, task_map",
        id="unknown-keyword",
    ),
    case(
        lambda b, be: {"support_x": b["support_x"] * float("nan"), "task_map": "sequential"},
        FloatingPointError,
        NAN,
        id="nan-sequential",
    ),
    case(
        lambda b, be: {"support_x": b["support_x"] * float("nan"), "task_map": "vmap"},
        FloatingPointError,
        NAN,
        id="nan-vmap",
    ),
    case(
        lambda b, be: {"algorithm": be.model()},
        TypeError,
        r"algorithm must be an l2l learner \(MAML, MetaSGD, ANIL, ...\), got (Linear|Dense)",
        id="not-a-learner",
    ),
]


@pytest.mark.parametrize(
    "backend, call, exception, match",
    over_backends(
        META_BATCH_CASES,
        # jax checks the task losses after mapping, whatever task_map: one NaN row covers both (the
        # vmap one, whose compilation test_known_gaps_jax reuses)
        covered={("nan-sequential", "jax"): "nan-vmap"},
    ),
)
def test_meta_batch_loss(learner_batch, backend, call, exception, match):
    be, maml, meta, batch = learner_batch
    arguments = {"algorithm": maml, "meta_params": meta, **batch}
    arguments.update(call(batch, be))
    algorithm, meta_params = arguments.pop("algorithm"), arguments.pop("meta_params")
    check(lambda: be.algorithms.meta_batch_loss(algorithm, meta_params, **arguments), exception, match)


# the functional adapt(meta_params, x, y, steps=...) of the contract, on every gradient-based learner
ADAPT_CASES = [
    case(
        lambda a, be: {"x": be.foreign(a["x"])},
        TypeError,
        r"x is a {other_kind}; the {backend} backend takes {backend} or numpy arrays",
        id="foreign-x",
        marks=needs_both,
    ),
    case(
        lambda a, be: {"y": be.foreign(a["y"])},
        TypeError,
        r"y is a {other_kind}",
        id="foreign-y",
        marks=needs_both,
    ),
    case(
        lambda a, be: {"y": a["y"][:5]},
        ValueError,
        r"y must hold one label per sample of x: x has shape \(6, 4\), y \(5,\)",
        id="label-count-mismatch",
    ),
    case(
        lambda a, be: {"y": be.float32(a["y"])},
        TypeError,
        r"y has dtype {float32}; loss=cross_entropy needs integer class labels",
        id="float-labels",
    ),
    case(
        lambda a, be: {"steps": -1}, ValueError, r"steps=-1 must be a non-negative int", id="negative-steps"
    ),
    case(lambda a, be: {"steps": 1.5}, ValueError, r"steps=1.5 must be a non-negative int", id="float-steps"),
    case(
        lambda a, be: {"meta_params": a["meta_params"]["model"]},
        ValueError,
        r"meta_params must be the dict from algorithm.init / from_variables \(with a 'model' entry\)",
        id="variables-instead-of-meta-params",
    ),
    case(
        lambda a, be: {"x": a["x"] * float("nan")},
        FloatingPointError,
        r"adapt: the support loss " + NAN,
        id="nan-support-loss",
    ),
]


def _learner(be, algorithm):
    from l2l_multi import transforms

    if algorithm == "ANIL":
        return be.algorithms.ANIL(be.model(5), be.model(3, inputs=5), lr=0.5)
    if algorithm == "GBML":
        if be.name == "torch":
            from l2l_multi.backends.torch import nn, optim

            return be.algorithms.GBML(be.model(), optim.ModuleTransform(nn.Scale), lr=0.5)
        return be.algorithms.GBML(be.model(), transforms.elementwise_scale(), lr=0.5)
    return getattr(be.algorithms, algorithm)(be.model(), lr=0.5)


@pytest.mark.parametrize("backend, call, exception, match", over_backends(ADAPT_CASES))
@pytest.mark.parametrize("algorithm", ["MAML", "MetaSGD", "ANIL", "GBML", "Reptile"])
def test_adapt(learner_batch, algorithm, backend, call, exception, match):
    be, maml, meta, batch = learner_batch
    learner = maml if algorithm == "MAML" else _learner(be, algorithm)
    meta = meta if algorithm == "MAML" else be.meta_parameters(learner)
    arguments = {"meta_params": meta, "x": batch["query_x"][0], "y": batch["query_y"][0], "steps": 1}
    arguments.update(call(arguments, be))
    check(lambda: learner.adapt(**arguments), exception, match)


TASK_LOSS_CASES = [
    case(
        lambda t, be: {"query_y": t["query_y"][:4]},
        ValueError,
        r"query_y must hold one label per sample of query_x",
        id="query-label-count",
    ),
    case(
        lambda t, be: {"support_y": be.float32(t["support_y"])},
        TypeError,
        r"support_y has dtype {float32}",
        id="float-support-labels",
    ),
    case(
        lambda t, be: {"support_x": t["support_x"] * float("nan")},
        FloatingPointError,
        r"adapt: the support loss is non-finite",
        id="nan-support",
    ),
]


@pytest.mark.parametrize(
    "backend, call, exception, match",
    over_backends(TASK_LOSS_CASES),
)
def test_task_loss_names_support_and_query(learner_batch, backend, call, exception, match):
    be, maml, meta, batch = learner_batch
    task = {k: v[0] for k, v in batch.items()}
    task.update(call(task, be))
    check(lambda: maml.task_loss(meta, **task), exception, match)


# (Backend) -> a learner constructed with one wrong argument
LEARNER_CASES = [
    case(
        lambda be: be.algorithms.MAML(be.model(), lr=-1.0),
        ValueError,
        r"lr=-1.0 must be >= 0",
        id="maml-negative-lr",
    ),
    case(
        lambda be: be.algorithms.MAML(be.model(), lr="0.5"),
        TypeError,
        r"lr='0.5' must be a float >= 0 or {arrays}",
        id="maml-string-lr",
    ),
    case(
        lambda be: be.algorithms.MAML(be.model()),
        TypeError,
        r"MAML: lr=None must be a float >= 0, or pass inner=",
        id="maml-no-lr-no-inner",
    ),
    case(
        lambda be: be.algorithms.MAML(be.model(), lr=0.1, inner=l2l.transforms.sgd(0.1)),
        ValueError,
        r"MAML got both lr=0.1 and inner=",
        id="maml-lr-and-inner",
    ),
    case(
        lambda be: be.algorithms.MAML(be.model(), inner="adam"),
        TypeError,
        r"inner='adam' must be a GradientTransformation \(init, update\)",
        id="maml-inner-string",
    ),
    case(
        lambda be: be.algorithms.MetaSGD(be.model(), lr=None),
        TypeError,
        r"lr=None must be a float",
        id="metasgd-none-lr",
    ),
    case(
        lambda be: be.algorithms.Reptile(be.model(), -0.1),
        ValueError,
        r"lr=-0.1 must be >= 0",
        id="reptile-negative-lr",
    ),
    case(
        lambda be: be.algorithms.MAML(3, lr=0.5),
        TypeError,
        r"model must be {module}, got int",
        id="maml-not-a-model",
    ),
    case(
        lambda be: be.algorithms.ANIL(be.model(), "head", lr=0.1),
        TypeError,
        r"head must be {module}, got str",
        id="anil-head-not-a-model",
    ),
    case(
        lambda be: be.algorithms.ANIL("features", be.model(), lr=0.1),
        TypeError,
        r"features must be {module}, got str",
        id="anil-features-not-a-model",
    ),
    case(
        lambda be: be.algorithms.ProtoNet("features", *be.ways),
        TypeError,
        r"features must be {module}, got str",
        id="protonet-not-a-model",
    ),
    case(
        lambda be: be.algorithms.GBML(be.model(), "scale", lr=0.1),
        TypeError,
        r"transform must be {transform}, got",
        id="gbml-transform-string",
    ),
    case(
        lambda be: be.algorithms.MetaOptNet(be.model(), *be.ways, head="knn"),
        ValueError,
        r"head must be one of 'svm', 'ridge', got 'knn'",
        id="metaoptnet-unknown-head",
    ),
]


@pytest.mark.parametrize("backend, call, exception, match", over_backends(LEARNER_CASES))
def test_learners(backend, call, exception, match):
    check(lambda: call(Backend(backend)), exception, match)


# ------------------------------------------------------------------------------------------------
# torch backend only: the learn2learn stateful API (clone/adapt(loss)), heads, dtypes


@needs_torch
def test_torch_meta_batch_loss_only_checks():
    import torch
    from l2l_multi.backends.torch.algorithms import MAML, ProtoNet, meta_batch_loss

    torch.manual_seed(0)
    maml = MAML(torch.nn.Linear(4, 3), lr=0.1)
    sx, sy = torch.randn(2, 3, 4), torch.arange(3).repeat(2, 1)
    check(
        lambda: meta_batch_loss(maml, maml.meta_parameters(), sx.double(), sy, sx.double(), sy),
        TypeError,
        r"support_x has dtype torch.float64 but the model's parameters are torch.float32",
    )
    check(
        lambda: meta_batch_loss(ProtoNet(torch.nn.Linear(4, 8)), {}, sx, sy, sx, sy),
        TypeError,
        r"algorithm must be an l2l learner .* got ProtoNet",
    )


def _torch_learner_cases():
    if not HAVE_TORCH:
        return [pytest.param(None, None, None, marks=needs_torch, id="torch-missing")]
    import torch
    from l2l_multi.backends.torch import algorithms, nn, optim

    linear = torch.nn.Linear(4, 3)
    return [
        case(
            lambda: algorithms.MAML(lambda x: x, lr=0.1),
            TypeError,
            r"model must be a torch.nn.Module, got function",
            id="maml-function",
        ),
        case(
            lambda: algorithms.MetaSGD(linear, lrs=[torch.ones(3)]),
            ValueError,
            r"lrs must hold one tensor per model parameter",
            id="metasgd-wrong-lrs",
        ),
        case(
            lambda: algorithms.GBML(linear, optim.ModuleTransform(nn.Scale), lr=-1.0),
            ValueError,
            r"lr=-1.0 must be >= 0",
            id="gbml-negative-lr",
        ),
        case(
            lambda: algorithms.ProtoNet(linear)(
                torch.randn(2, 3, 4), torch.zeros(2, 3), torch.randn(2, 6, 4)
            ),
            TypeError,
            r"labels must have an integer dtype, got torch.float32",
            id="protonet-float-labels",
        ),
        case(
            lambda: algorithms.ProtoNet(linear)(
                torch.randn(2, 3, 4), torch.zeros(2, 2).long(), torch.randn(2, 6, 4)
            ),
            ValueError,
            r"support must have shape \[2, 2, ...\] to match support_labels",
            id="protonet-mismatch",
        ),
    ]


@pytest.mark.parametrize("call, exception, match", _torch_learner_cases())
def test_torch_learners(call, exception, match):
    check(call, exception, match)


@needs_jax
@needs_torch
def test_torch_protonet_refuses_jax_arrays():
    import jax.numpy as jnp
    import torch
    from l2l_multi.backends.torch.algorithms import ProtoNet

    protonet = ProtoNet(torch.nn.Linear(4, 8))
    check(
        lambda: protonet(jnp.ones((2, 3, 4)), torch.arange(3).repeat(2, 1), torch.randn(2, 6, 4)),
        TypeError,
        r"support must be a torch.Tensor, got ArrayImpl",
    )


def _cross_entropy(learner, x, y, **options):
    import torch

    return torch.nn.functional.cross_entropy(learner(x), y, **options)


def _jax_copy(tensor):
    import jax.numpy as jnp

    return jnp.asarray(tensor.numpy())


# learn2learn's clone().adapt(loss): (loss(learner, x, y) -> what is passed to adapt, exception, match)
STATEFUL_ADAPT_CASES = [
    case(
        lambda learner, x, y: _cross_entropy(learner, x, y, reduction="none"),
        ValueError,
        r"loss must be a scalar tensor, got shape \(6,\); reduce it",
        id="vector-loss",
    ),
    case(
        lambda learner, x, y: 1.0,
        TypeError,
        r"\w+\.adapt got float as its first argument\. The call forms are adapt\(meta_params, x, y, .*\) "
        r"\(functional.*\) and learner\.adapt\(loss\)",
        id="float-loss",
    ),
    case(
        lambda learner, x, y: _jax_copy(_cross_entropy(learner, x, y).detach()),
        TypeError,
        r"\w+\.adapt got ArrayImpl as its first argument",
        id="jax-loss",
        marks=needs_jax,
    ),
    case(
        lambda learner, x, y: _cross_entropy(learner, x, y).detach(),
        RuntimeError,
        r"loss does not require grad",
        id="detached-loss",
    ),
    case(
        lambda learner, x, y: _cross_entropy(learner, x, y) * float("nan"),
        FloatingPointError,
        r"adapt: the support loss is non-finite \(nan\); the inner-loop learning rate",
        id="nan-loss",
    ),
    case(
        lambda learner, x, y: _cross_entropy(learner, x, y) + float("inf"),
        FloatingPointError,
        r"is non-finite \(inf\)",
        id="inf-loss",
    ),
]


@needs_torch
@pytest.mark.parametrize("make_loss, exception, match", STATEFUL_ADAPT_CASES)
@pytest.mark.parametrize("algorithm", ["MAML", "MetaSGD", "ANIL"])
def test_torch_stateful_adapt(algorithm, make_loss, exception, match):
    import torch
    from l2l_multi.backends.torch import algorithms

    torch.manual_seed(0)
    if algorithm == "ANIL":
        learner = algorithms.ANIL(torch.nn.Linear(4, 5), torch.nn.Linear(5, 3), lr=0.1).clone()
    else:
        learner = getattr(algorithms, algorithm)(torch.nn.Linear(4, 3), lr=0.1).clone()
    x, y = torch.randn(6, 4), torch.arange(6) % 3
    loss = make_loss(learner, x, y)
    check(lambda: learner.adapt(loss), exception, match)


# ------------------------------------------------------------------------------------------------
# jax backend only: constructors with jax-only arguments, the compiled step


def _jax_algorithm_cases():
    if not HAVE_JAX:
        return [pytest.param(None, None, None, marks=needs_jax, id="jax-missing")]
    import flax.linen as nn
    from l2l_multi.backends.jax import algorithms

    from l2l_multi import transforms

    dense = nn.Dense(3)
    return [
        case(
            lambda: algorithms.MAML(dense, lr=0.5).from_variables({"weights": 1}),
            ValueError,
            r"variables must hold a 'params' collection; got keys \['weights'\]",
            id="from-variables-no-params",
        ),
        case(
            lambda: algorithms.GBML(dense, transforms.elementwise_scale(), lr=None),
            TypeError,
            r"GBML: lr=None must be a float >= 0, or pass inner=",
            id="gbml-none-lr",
        ),
        case(
            lambda: algorithms.ANIL(dense, dense, 0.1).from_variables({"params": {}}),
            ValueError,
            r"ANIL.from_variables needs both the features' and the head's variables",
            id="anil-no-head",
        ),
        case(
            lambda: algorithms.ProtoNet(dense, 0),
            ValueError,
            r"ways=0 must be an int >= 2",
            id="protonet-ways",
        ),
        case(
            lambda: algorithms.prototype_logits(None, None, None, 2, distance="manhattan"),
            ValueError,
            r"distance='manhattan' is not one of",
            id="prototype-distance",
        ),
    ]


@pytest.mark.parametrize("call, exception, match", _jax_algorithm_cases())
def test_jax_algorithms(call, exception, match):
    check(call, exception, match)


@needs_jax
@pytest.mark.parametrize("backend", ["jax"])
def test_jax_compiled_step_arguments_and_nan(learner_batch, backend):
    import jax
    import optax
    from l2l_multi.backends.jax.algorithms import make_evaluate, make_meta_train_step

    be, maml, meta, batch = learner_batch
    optimizer = optax.sgd(0.1)
    check(
        lambda: make_meta_train_step(maml, optimizer, adaptation_steps=1.5),
        ValueError,
        r"adaptation_steps=1.5 must be a non-negative int",
    )
    check(
        lambda: make_meta_train_step(maml, optimizer, adaptation_steps=True),
        ValueError,
        r"adaptation_steps=True must be a non-negative int",
    )
    check(
        lambda: make_meta_train_step(maml, optimizer, task_map="pmap"),
        ValueError,
        r"task_map='pmap' is not one of",
    )
    check(
        lambda: make_meta_train_step(maml, "adam"),
        TypeError,
        r"optimizer must be an optax GradientTransformation \(init, update\), got 'adam'",
    )
    check(
        lambda: make_meta_train_step("maml", optimizer),
        TypeError,
        r"algorithm must be an l2l learner \(MAML, MetaSGD, ANIL, ...\), got str",
    )
    check(lambda: make_evaluate(maml, adaptation_steps=-2), ValueError, r"adaptation_steps=-2 must be")
    step = make_meta_train_step(maml, optimizer)
    state = optimizer.init(meta)
    if HAVE_TORCH:
        check(
            lambda: step(meta, state, **{**batch, "support_x": be.foreign(batch["support_x"])}),
            TypeError,
            r"support_x is a torch",
        )
    check(
        lambda: step(meta, state, **{**batch, "query_y": batch["query_y"].astype("float32")}),
        TypeError,
        r"query_y has dtype float32; loss=cross_entropy needs integer class labels",
    )
    # The compiled step does not check for NaN (it would have to wait for every step): a NaN inner loss
    # silently gives NaN metrics and parameters. jax.debug_nans turns it into a FloatingPointError.
    poisoned = {**batch, "support_x": batch["support_x"] * np.nan}
    new_meta, _, metrics = step(meta, state, **poisoned)
    assert np.isnan(float(metrics.loss))
    assert np.isnan(np.asarray(new_meta["model"]["params"]["kernel"])).all()
    with jax.debug_nans(True):
        check(lambda: step(meta, state, **poisoned), FloatingPointError, r"nan")


# ------------------------------------------------------------------------------------------------
# vision: benchmarks and datasets with missing, damaged or too small data files


def _mini_imagenet(root, classes=3, per_class=2):
    rng = np.random.default_rng(0)
    for mode in ("train", "validation", "test"):
        images = rng.integers(0, 256, (classes * per_class, 84, 84, 3), dtype=np.uint8)
        class_dict = {f"n{mode}{c}": list(range(c * per_class, (c + 1) * per_class)) for c in range(classes)}
        with open(root / f"mini-imagenet-cache-{mode}.pkl", "wb") as file:
            pickle.dump({"image_data": images, "class_dict": class_dict}, file)
    return root


def test_get_tasksets_arguments():
    from l2l_multi.vision.benchmarks import get_tasksets

    check(
        lambda: get_tasksets("imagenet"),
        ValueError,
        r"name='imagenet' is not a known benchmark; available: omniglot, mini-imagenet",
    )
    for argument in ("train_ways", "train_samples", "test_ways", "test_samples"):
        check(
            lambda argument=argument: get_tasksets("omniglot", **{argument: 0}),
            ValueError,
            rf"{argument}=0 must be a positive int",
        )
    check(
        lambda: get_tasksets("mini-imagenet", test_samples="5"),
        ValueError,
        r"test_samples='5' must be a positive int",
    )
    check(
        lambda: get_tasksets("mini-imagenet", data_augmentation="strong"),
        ValueError,
        r"data_augmentation='strong' is not one of \(None, 'normal', 'lee2019'\)",
    )
    check(
        lambda: get_tasksets("omniglot", data_augmentation="normal"),
        ValueError,
        r"data_augmentation is not used for omniglot",
    )
    for bad in (("validation",), ("train", "test"), ()):
        check(
            lambda bad=bad: get_tasksets("omniglot", train_splits=bad),
            ValueError,
            r"train_splits=.* is not one of \(\('train',\), \('train', 'validation'\)\)",
        )


@pytest.mark.parametrize(
    "name, expected",
    [
        ("omniglot", "images_background.zip"),
        ("mini-imagenet", "mini-imagenet-cache-train.pkl"),
        ("tiered-imagenet", "train_images_png.pkl"),
        ("cifarfs", "cifar-100-python"),
        ("fc100", "cifar-100-python"),
    ],
)
def test_get_tasksets_missing_files(tmp_path, name, expected):
    from l2l_multi.vision.benchmarks import get_tasksets

    check(
        lambda: get_tasksets(name, root=str(tmp_path / "empty")),
        FileNotFoundError,
        re.escape(str(tmp_path / "empty")) + ".*" + re.escape(expected),
    )


def test_get_tasksets_more_ways_or_samples_than_the_split_has(tmp_path):
    from l2l_multi.vision.benchmarks import get_tasksets

    root = str(_mini_imagenet(tmp_path))  # 3 classes of 2 images per split
    small = {"train_ways": 2, "train_samples": 1, "test_ways": 2, "test_samples": 1}
    check(
        lambda: get_tasksets("mini-imagenet", root=root, **{**small, "train_ways": 5}),
        ValueError,
        r"train_ways=5 but the train split of mini-imagenet has 3 classes",
    )
    check(
        lambda: get_tasksets("mini-imagenet", root=root, **{**small, "test_ways": 4}),
        ValueError,
        r"test_ways=4 but the validation split of mini-imagenet has 3 classes",
    )
    check(
        lambda: get_tasksets("mini-imagenet", root=root, **{**small, "train_samples": 3}),
        ValueError,
        r"train_samples=3 but class 0 of the train split of mini-imagenet has only 2 samples",
    )
    check(
        lambda: get_tasksets("mini-imagenet", root=root, **{**small, "test_samples": 3}),
        ValueError,
        r"test_samples=3 but class 0 of the validation split of mini-imagenet has only 2 samples",
    )
    check(
        lambda: get_tasksets("mini-imagenet", root=root, num_tasks=0, **small),
        ValueError,
        r"num_tasks must be -1 \(endless stream\) or a positive integer, got 0",
    )
    check(
        lambda: get_tasksets("mini-imagenet", root=root, colour=True, **small),
        TypeError,
        r"unexpected keyword argument 'colour'",
    )


def _omniglot_zips(root, member_bytes):
    for top in ("images_background", "images_evaluation"):
        with zipfile.ZipFile(root / f"{top}.zip", "w") as archive:
            archive.writestr(f"{top}/Alphabet/character01/0001_01.png", member_bytes)


def test_omniglot_missing_and_damaged_archives(tmp_path):
    from l2l_multi.vision.datasets import CorruptArchiveError, FullOmniglot

    cache = tmp_path / "cache"
    check(
        lambda: FullOmniglot(tmp_path, download=False, cache_dir=cache),
        FileNotFoundError,
        re.escape(str(tmp_path / "images_background.zip")) + r" not found; pass download=True",
    )
    check(
        lambda: FullOmniglot(tmp_path, image_size=0), ValueError, r"image_size must be None or a positive int"
    )
    (tmp_path / "images_background.zip").write_bytes(b"not a zip at all")
    (tmp_path / "images_evaluation.zip").write_bytes(b"not a zip at all")
    check(
        lambda: FullOmniglot(tmp_path, cache_dir=cache),
        CorruptArchiveError,
        re.escape(str(tmp_path / "images_background.zip")) + r" is corrupt or not a zip file",
    )
    _omniglot_zips(tmp_path, b"these bytes are no PNG")
    check(
        lambda: FullOmniglot(tmp_path, image_size=28, cache_dir=cache),
        CorruptArchiveError,
        r"images_background.zip: member 'images_background/Alphabet/character01/0001_01.png' "
        r"cannot be read",
    )
    check(
        lambda: FullOmniglot(tmp_path, download=True, cache_dir=cache),
        ValueError,
        r"delete it and pass download=True",
    )


def test_mini_imagenet_missing_and_damaged_files(tmp_path):
    from l2l_multi.vision.datasets import MiniImagenet

    check(
        lambda: MiniImagenet(tmp_path, mode="training"), ValueError, r"mode must be one of .* got 'training'"
    )
    check(lambda: MiniImagenet(tmp_path, download=True), ValueError, r"download=True is not supported")
    check(lambda: MiniImagenet(tmp_path), FileNotFoundError, r"mini-imagenet-cache-train.pkl")
    path = tmp_path / "mini-imagenet-cache-train.pkl"
    payload = pickle.dumps({"image_data": np.zeros((2, 84, 84, 3), np.uint8), "class_dict": {"n0": [0, 1]}})
    path.write_bytes(payload[: len(payload) // 2])
    check(
        lambda: MiniImagenet(tmp_path),
        pickle.UnpicklingError,
        re.escape(str(path)) + r" is corrupt or truncated",
    )
    path.write_bytes(pickle.dumps([1, 2]))
    check(lambda: MiniImagenet(tmp_path), ValueError, r"expected a dict with 'image_data' and 'class_dict'")
    path.write_bytes(
        pickle.dumps({"image_data": np.zeros((2, 84, 84, 3), np.uint8), "class_dict": {"n0": [0]}})
    )
    check(lambda: MiniImagenet(tmp_path), ValueError, r"class_dict gives no class to image row 1")


def test_archives_and_downloads(tmp_path):
    from l2l_multi.vision import datasets

    check(
        lambda: datasets.extract_archive(tmp_path / "missing.zip", tmp_path / "out"),
        FileNotFoundError,
        r"archive .*missing.zip' does not exist",
    )
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"x" * 100)
    check(
        lambda: datasets.extract_archive(garbage, tmp_path / "out", progress=False),
        datasets.CorruptArchiveError,
        re.escape(str(garbage)) + r" is corrupt or truncated",
    )
    check(
        lambda: datasets.download_file("file:///dev/null", tmp_path / "x", progress=False),
        ValueError,
        r"sha256= or md5=",
    )
    check(
        lambda: datasets.verify_file(garbage),
        ValueError,
        r"needs at least one of sha256, md5 or content_digest",
    )


# ------------------------------------------------------------------------------------------------
# l2l_multi.experiment: run folders, statistics, the evaluation protocol


def test_run_folder_resume(tmp_path):
    from l2l_multi.experiment import RunFolder

    check(
        lambda: RunFolder(tmp_path / "run", {"seed": 0}, resume=True),
        FileNotFoundError,
        r"resume: .*config.json does not exist; start the run without --resume",
    )
    with RunFolder(tmp_path / "run", {"seed": 0, "iterations": 5}) as run:
        run.save_checkpoint({"iteration": 2})
        check(
            lambda: RunFolder(tmp_path / "run", {"seed": 0, "iterations": 5}, resume=True),
            ValueError,
            r"run is in use: another process .* holds it",
        )
    check(
        lambda: RunFolder(tmp_path / "run", {"seed": 0, "iterations": 5}),
        FileExistsError,
        r"already holds a run; pass resume=True",
    )
    check(
        lambda: RunFolder(tmp_path / "run", {"seed": 1, "iterations": 5}, resume=True),
        ValueError,
        r"resume: the configuration differs .* in \['seed'\]; only \['iterations'\] may change",
    )
    with RunFolder(tmp_path / "run", {"seed": 0, "iterations": 9}, resume=True) as extended:
        assert extended.load_checkpoint() == {"iteration": 2}
    check(
        lambda: RunFolder(tmp_path / "run", {"seed": 0, "iterations": 1}, resume=True),
        ValueError,
        r"--iterations 1 is below the iteration of the checkpoint",
    )


@pytest.mark.parametrize(
    "values, options, match",
    [
        pytest.param(
            [0.5], {}, r"values must be a 1-D sequence of at least 2 numbers, got shape \(1,\)", id="one"
        ),
        pytest.param([], {}, r"values must be a 1-D sequence .* got shape \(0,\)", id="empty"),
        pytest.param([[0.5, 0.6]], {}, r"values must be a 1-D sequence .* got shape \(1, 2\)", id="2d"),
        pytest.param(0.5, {}, r"values must be a 1-D sequence .* got shape \(\)", id="scalar"),
        pytest.param([0.5, float("nan")], {}, r"values holds NaN or infinity", id="nan"),
        pytest.param([0.5, float("inf")], {}, r"values holds NaN or infinity", id="inf"),
        pytest.param(
            [0.5, 0.6], {"confidence": 0.9}, r"confidence=0.9 is not supported; only 0.95", id="confidence"
        ),
    ],
)
def test_mean_confidence_interval(values, options, match):
    from l2l_multi.experiment import mean_confidence_interval

    check(lambda: mean_confidence_interval(values, **options), ValueError, match)


def test_evaluate_tasks_arguments():
    from l2l_multi.experiment import evaluate_tasks

    tasks = TaskDataset(DATA, [NWays(DATA, 2), KShots(DATA, 2), LoadData(DATA)], num_tasks=4, backend="numpy")
    check(
        lambda: evaluate_tasks(None, tasks, shots=1, num_tasks=1),
        ValueError,
        r"num_tasks must be an int >= 2, got 1",
    )
    check(
        lambda: evaluate_tasks(None, tasks, shots=0, num_tasks=2),
        ValueError,
        r"shots must be a positive integer, got 0",
    )
    check(
        lambda: evaluate_tasks(None, tasks, shots=3, num_tasks=2),
        ValueError,
        r"shots=3 but label \d+ has only 2 samples",
    )


# ------------------------------------------------------------------------------------------------
# l2l_multi.gym: meta-environments and the vector environment


def test_gym_tasks_and_vector_arguments():
    pytest.importorskip("gymnasium")
    import l2l_multi.gym as l2l_gym

    env = l2l_gym.Particles2DEnv()
    check(lambda: env.set_task({"goal": [1.0]}), ValueError, r"task\['goal'\] must be .*\(2,\), got \[1.0\]")
    check(lambda: env.set_task([0.0, 1.0]), ValueError, r"task must be a dict with a 'goal'")
    check(lambda: env.sample_tasks(0), ValueError, r"num_tasks must be a positive int, got 0")
    check(
        lambda: env.sample_tasks(2, seed="zero"),
        TypeError,
        r"seed must be None, an int or a numpy Generator, got 'zero'",
    )
    check(lambda: l2l_gym.AsyncVectorEnv([]), ValueError, r"env_fns must hold at least one environment")
    check(
        lambda: l2l_gym.AsyncVectorEnv([l2l_gym.Particles2DEnv], liveness_interval=0),
        ValueError,
        r"liveness_interval must be None or positive seconds, got 0",
    )


def test_gym_vector_set_task_needs_one_task_per_worker():
    pytest.importorskip("gymnasium")
    import l2l_multi.gym as l2l_gym

    envs = l2l_gym.AsyncVectorEnv([l2l_gym.Particles2DEnv])
    try:
        tasks = envs.sample_tasks(3, seed=0)
        check(
            lambda: envs.set_task(tasks),
            ValueError,
            r"task as a list must hold one task per worker \(1\), got 3",
        )
    finally:
        envs.close()


# ------------------------------------------------------------------------------------------------
# known gaps: wrong input that is still accepted silently or reported by a framework's own error.
# Each assertion documents today's behaviour; when the library learns to refuse the input, move the
# case to its area above.


class _ConstantLearner:
    def evaluate(self, support_x, support_y, query_x, query_y, adaptation_steps=None, ways=None):
        return {"loss": 0.0, "task_accuracies": np.full(len(support_x), 0.5)}


def test_experiment_errors(tmp_path):
    from l2l_multi.experiment import RunFolder, evaluate_tasks, mean_confidence_interval

    check(
        lambda: mean_confidence_interval(["a", "b"]), ValueError, r"values must be a 1-D sequence of numbers"
    )
    check(
        lambda: RunFolder(tmp_path / "run", {"model": object()}),
        TypeError,
        r"config must be JSON-serialisable",
    )
    assert not (tmp_path / "run").exists()  # refused before anything is written
    # scoring more tasks than a fixed TaskDataset holds would count repeated tasks as new ones
    tasks = TaskDataset(DATA, [NWays(DATA, 2), KShots(DATA, 2), LoadData(DATA)], num_tasks=2, backend="numpy")
    check(
        lambda: evaluate_tasks(_ConstantLearner(), tasks, shots=1, num_tasks=4),
        ValueError,
        r"num_tasks=4 is more",
    )
    assert evaluate_tasks(_ConstantLearner(), tasks, shots=1, num_tasks=2)["num_tasks"] == 2


@needs_torch
def test_known_gaps_torch():
    import torch
    from l2l_multi.backends.torch.algorithms import MAML, meta_batch_loss

    maml = MAML(torch.nn.Linear(4, 3), lr=0.1)
    meta = maml.meta_parameters()
    sx, sy = torch.randn(2, 3, 5), torch.arange(3).repeat(2, 1)
    # an input feature size the model does not take: torch's own message, no argument name
    check(lambda: meta_batch_loss(maml, meta, sx, sy, sx, sy), RuntimeError, r"shapes cannot be multiplied")
    # labels >= the number of outputs: torch's own message (a device-side assert on CUDA); the jax
    # backend refuses them in eager calls (test_known_gaps_jax)
    check(
        lambda: meta_batch_loss(maml, meta, sx[..., :4], sy + 3, sx[..., :4], sy),
        IndexError,
        r"out of bounds",
    )
    if HAVE_JAX:  # a learner called on a jax array: torch's message names its own argument, `input`
        check(lambda: maml.clone()(_jax_copy(sx[0, :, :4])), TypeError, r"argument 'input' .* must be Tensor")


@needs_jax
@pytest.mark.parametrize("backend", ["jax"])
def test_known_gaps_jax(learner_batch, backend):
    from l2l_multi.backends.jax.algorithms import meta_batch_loss

    _, maml, meta, batch = learner_batch
    # closed: labels >= the number of outputs are refused in eager calls (traced code: documented)
    check(
        lambda: meta_batch_loss(maml, meta, **{**batch, "support_y": batch["support_y"] + 3}),
        ValueError,
        r"support_y holds the label 5; class labels must lie in \[0, 3\)",
    )
    # numpy inputs are converted without complaint (intended); so is a torch tensor given to init
    if HAVE_TORCH:
        import jax
        import torch

        assert "model" in maml.init(jax.random.PRNGKey(0), torch.ones(1, 4))
