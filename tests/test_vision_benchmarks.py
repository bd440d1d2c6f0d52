"""Standard benchmarks: real Omniglot (Vinyals split, per-class rotations, disjoint splits) on both
backends, and snippet 5 of the paper against mini-ImageNet fixture files in the real format."""

import pickle
import sys

import numpy as np
import pytest
from _helpers import FRAMEWORKS, OMNIGLOT_ROOT

import l2l_multi as l2l
from l2l_multi.vision import benchmarks

OMNIGLOT = OMNIGLOT_ROOT
needs_omniglot = pytest.mark.skipif(
    not (OMNIGLOT / "images_background.zip").exists(), reason="no Omniglot data"
)


@pytest.fixture(scope="module")
def omniglot_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("omniglot-cache")


def test_list_tasksets():
    assert benchmarks.list_tasksets()[:1] == ["omniglot"]
    assert {"omniglot", "mini-imagenet", "tiered-imagenet", "cifarfs", "fc100"} <= set(
        benchmarks.list_tasksets()
    )


@needs_omniglot
def test_omniglot_splits_are_disjoint_and_rotations_are_per_class(omniglot_cache):
    views = benchmarks._omniglot.omniglot_splits(str(OMNIGLOT), cache_dir=omniglot_cache)
    counts = {split: len(view.class_names) for split, view in views.items()}
    assert counts == {"train": 4112, "validation": 688, "test": 1692}
    names = {split: set(view.class_names) for split, view in views.items()}
    characters = {split: {n.rsplit("/", 1)[0] for n in view.class_names} for split, view in views.items()}
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not names[a] & names[b], (a, b)
        assert not characters[a] & characters[b], (a, b)  # the split is by character
    assert len(characters["train"] | characters["validation"] | characters["test"]) == 1623
    # every sample shows its class's character at its class's own rotation
    from l2l_multi.vision.datasets import FullOmniglot

    base = FullOmniglot(str(OMNIGLOT), image_size=28, cache_dir=omniglot_cache)
    view = views["train"]
    rng = np.random.default_rng(0)
    for index in rng.choice(len(view), 40, replace=False):
        image, label = view[index]
        name = view.class_names[label]
        character, rotation = name.rsplit("/", 1)
        turns = int(rotation.removeprefix("rot")) // 90
        stored = base.inputs[view.rows[index]]
        assert base.class_names[base.targets[view.rows[index]]] == character
        np.testing.assert_allclose(image[0], np.rot90(stored, turns) / 255.0, atol=1e-6)
    assert len(view) == 4112 * 20


@needs_omniglot
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_get_tasksets_omniglot(framework, omniglot_cache):
    l2l.set_backend(framework)
    tasksets = benchmarks.get_tasksets(
        "omniglot",
        train_ways=5,
        train_samples=2,
        test_ways=20,
        test_samples=2,
        root=str(OMNIGLOT),
        cache_dir=omniglot_cache,
        seed=3,
    )
    X, y = tasksets.train.sample()
    assert type(X).__module__.split(".")[0] in {"torch", "jaxlib", "jax"}
    assert tuple(X.shape) == (10, 1, 28, 28) and str(X.dtype).endswith("float32")
    assert sorted(np.asarray(y).tolist()) == sorted([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    assert 0.0 <= float(X.min()) and float(X.max()) <= 1.0 and float(X.max()) > 0.5
    Xt, _ = tasksets.test.sample()
    assert tuple(Xt.shape) == (40, 1, 28, 28)
    # the classes of a sampled task keep their own rotation: compare with a fresh build of the view
    again = benchmarks.get_tasksets(
        "omniglot",
        train_ways=5,
        train_samples=2,
        test_ways=20,
        test_samples=2,
        root=str(OMNIGLOT),
        cache_dir=omniglot_cache,
        seed=3,
    )
    np.testing.assert_array_equal(np.asarray(again.train.sample()[0]), np.asarray(X))


@needs_omniglot
@pytest.mark.parametrize("framework", FRAMEWORKS[:1])
def test_train_splits_adds_the_validation_classes_to_training(framework, omniglot_cache):
    l2l.set_backend(framework)
    both = benchmarks.get_tasksets(
        "omniglot",
        train_ways=60,
        train_samples=2,
        root=str(OMNIGLOT),
        cache_dir=omniglot_cache,
        seed=0,
        train_splits=("train", "validation"),
    )
    plain = benchmarks.get_tasksets(
        "omniglot", train_ways=60, train_samples=2, root=str(OMNIGLOT), cache_dir=omniglot_cache, seed=0
    )
    views = benchmarks._omniglot.omniglot_splits(str(OMNIGLOT), cache_dir=omniglot_cache)
    union = both.train.dataset
    # 1028 + 172 characters x 4 rotations (Snell et al.'s 4800 training classes)
    assert len(union.labels) == len(views["train"].class_names) + len(views["validation"].class_names) == 4800
    assert len(plain.train.dataset.labels) == 4112
    # validation and test streams are untouched
    assert len(both.validation.dataset.labels) == 688 and len(both.test.dataset.labels) == 1692
    # the union's batched gather returns exactly the images its parts hold, in the order asked
    rng = np.random.default_rng(0)
    indices = rng.integers(0, len(union), size=64)
    inputs, targets = union.get_batch(indices)
    for i, index in enumerate(indices):
        part = 0 if index < len(views["train"]) else 1
        local = index - (0 if part == 0 else len(views["train"]))
        x, y = (views["train"], views["validation"])[part][int(local)]
        np.testing.assert_array_equal(inputs[i], x)
        assert targets[i] == (y if part == 0 else 4112 + y)
    X, y = both.train.sample()
    assert tuple(np.asarray(X).shape) == (120, 1, 28, 28)
    assert sorted(set(np.asarray(y).tolist())) == list(range(60))


@needs_omniglot
def test_same_tasks_on_both_backends(omniglot_cache):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    tasks = {}
    for backend in ("torch", "jax"):
        with l2l.use_backend(backend):
            taskset = benchmarks.get_tasksets(
                "omniglot", root=str(OMNIGLOT), cache_dir=omniglot_cache, seed=7
            ).train
            tasks[backend] = [np.asarray(a) for a in taskset.sample_batch(4)]
    np.testing.assert_array_equal(tasks["torch"][0], tasks["jax"][0])
    np.testing.assert_array_equal(tasks["torch"][1], tasks["jax"][1])


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="name='imagenet' is not a known benchmark"):
        benchmarks.get_tasksets("imagenet")
    with pytest.raises(ValueError, match="train_ways=0 must be a positive int"):
        benchmarks.get_tasksets("omniglot", train_ways=0)
    with pytest.raises(ValueError, match="data_augmentation='strong' is not one of"):
        benchmarks.get_tasksets("mini-imagenet", data_augmentation="strong")


def _write_mini_imagenet_caches(root, classes=6, per_class=12):
    rng = np.random.default_rng(0)
    for mode, first in (("train", 0), ("validation", 100), ("test", 200)):
        wnids = [f"n{first + c:08d}" for c in range(classes)]
        images = rng.integers(0, 256, (classes * per_class, 84, 84, 3), dtype=np.uint8)
        class_dict = {w: list(range(c * per_class, (c + 1) * per_class)) for c, w in enumerate(wnids)}
        with open(root / f"mini-imagenet-cache-{mode}.pkl", "wb") as file:
            pickle.dump({"image_data": images, "class_dict": class_dict}, file)


def test_snippet_5_verbatim_on_mini_imagenet_fixture(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    (tmp_path / "data").mkdir()
    _write_mini_imagenet_caches(tmp_path / "data")
    monkeypatch.setenv("HOME", str(tmp_path))  # the snippet uses the default root, ~/data
    # --- snippet 5 of the paper, with our package name ---
    # fmt: off
    from l2l_multi.vision import benchmarks
    print(benchmarks.list_tasksets())
    # ['omniglot', 'cifar-fs', 'fc100', 'mini-imagenet', ...]
    tasksets = benchmarks.get_tasksets( # standardized pipeline
        name='mini-imagenet',
        train_samples=10,
        train_ways=5)
    task = tasksets.train.sample() # tasksets.train is a task dataset
    # fmt: on
    # ---
    X, y = task
    assert tuple(X.shape) == (50, 3, 84, 84)
    assert abs(float(X.mean())) < 0.5  # standardised
    assert "torch" in sys.modules


def test_mini_imagenet_augmentation_is_seeded(tmp_path):
    _write_mini_imagenet_caches(tmp_path)
    make = lambda: (
        benchmarks.get_tasksets(
            "mini-imagenet", root=str(tmp_path), data_augmentation="lee2019", seed=0
        ).train
    )
    a, b = make().sample(), make().sample()
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
    plain = benchmarks.get_tasksets("mini-imagenet", root=str(tmp_path), seed=0).train.sample()
    assert not np.array_equal(np.asarray(a[0]), np.asarray(plain[0]))
