"""Issue 15, the data layer's silent cases: seeds, transforms bound to another dataset, foreign
stream states, duplicate archive members, unverified caches, cache file modes and stale temps."""

import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from l2l_multi.data import (
    ArrayDataset,
    FilteredMetaDataset,
    MetaDataset,
    TaskDataset,
    UnionMetaDataset,
    _kernels_py,
    compiled_available,
    synthetic_classification,
)
from l2l_multi.data._files import STALE_AFTER_SECONDS, file_mode
from l2l_multi.data.transforms import (
    ConsecutiveLabels,
    FusedNWaysKShots,
    KShots,
    LoadData,
    NWays,
    RemapLabels,
)
from l2l_multi.vision import benchmarks, datasets
from l2l_multi.vision.datasets import _common, _omniglot

MASK = (1 << 64) - 1
GOLDEN, MIX1, MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def small(offset=0.0, labels=None):
    labels = np.arange(40) % 8 if labels is None else labels
    return MetaDataset(ArrayDataset(np.arange(40.0).reshape(40, 1) + offset, labels))


def chain(data, ways=3, shots=2):
    return [NWays(data, ways), KShots(data, shots), LoadData(data)]


# -- 1. seeds ------------------------------------------------------------------------------------
def _finalize(z):
    z = ((z ^ (z >> 30)) * MIX1) & MASK
    z = ((z ^ (z >> 27)) * MIX2) & MASK
    return z ^ (z >> 31)


def _reference_task(seed, task, data, ways, shots):
    """Dataset indices of task ``task`` of [NWays, KShots, LoadData], written from the documented
    algorithm (SplitMix64 task streams, partial Fisher-Yates draws), not from the library."""

    def mix(value):
        return _finalize((value + GOLDEN) & MASK)

    state = mix(mix(seed) ^ task)

    def next_seed():
        nonlocal state
        state = (state + GOLDEN) & MASK
        return mix(state)

    def partial_shuffle(stream, population, n):
        values = list(range(population))
        for i in range(n):
            stream = (stream + GOLDEN) & MASK
            j = i + (((_finalize(stream) >> 32) * (population - i)) >> 32)
            values[i], values[j] = values[j], values[i]
        return values[:n]

    classes = partial_shuffle(next_seed(), len(data.labels), ways)
    stream, indices = next_seed(), []
    for c in classes:
        members = np.flatnonzero(data.label_ids == c)
        values = list(range(len(members)))
        for i in range(shots):
            stream = (stream + GOLDEN) & MASK
            j = i + (((_finalize(stream) >> 32) * (len(members) - i)) >> 32)
            values[i], values[j] = values[j], values[i]
        indices.extend(members[values[:shots]].tolist())
    return indices


@pytest.mark.parametrize(
    "seed",
    [0, 7, 2**63 + 5, 2**64 - 1, np.uint64(2**64 - 1), np.int64(7)],
    ids=["0", "7", "2**63+5", "2**64-1", "np.uint64-max", "np.int64"],
)
def test_in_range_seeds_keep_their_stream(seed, kernel_mode):
    data = small()
    tasks = TaskDataset(data, chain(data), seed=seed, backend="numpy")
    for index in (0, 5):
        assert tasks.build(index).indices.tolist() == _reference_task(int(seed), index, data, 3, 2)


@pytest.mark.parametrize(
    "seed, message",
    [
        (2**64, r"seed must be an int in \[0, 2\*\*64\), got 18446744073709551616"),
        (2**70, r"seed must be an int in \[0, 2\*\*64\)"),
        (-1, r"seed must be an int in \[0, 2\*\*64\), got -1"),
        (True, r"seed must be an int or None, got True"),
        (np.True_, r"seed must be an int or None, got np.True_"),
        (1.0, r"seed must be an int or None, got 1.0"),
        ("3", r"seed must be an int or None, got '3'"),
    ],
    ids=["2**64", "2**70", "negative", "bool", "numpy-bool", "float", "str"],
)
def test_task_dataset_refuses_seeds_that_would_alias(seed, message):
    data = small()
    with pytest.raises(ValueError, match=message):
        TaskDataset(data, chain(data), seed=seed, backend="numpy")


def test_get_tasksets_checks_all_three_seeds_before_reading_data(tmp_path):
    missing = str(tmp_path / "no-such-folder")
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*64 - 3\] \(it seeds 3 streams\)"):
        benchmarks.get_tasksets("omniglot", root=missing, seed=2**64 - 2)
    with pytest.raises(ValueError, match=r"got -1"):
        benchmarks.get_tasksets("omniglot", root=missing, seed=-1)
    with pytest.raises(FileNotFoundError):  # the largest allowed seed gets as far as the data
        benchmarks.get_tasksets("omniglot", root=missing, seed=2**64 - 3)


KERNELS = ["python"] + (["compiled"] if compiled_available() else [])


@pytest.mark.parametrize("module", KERNELS)
@pytest.mark.parametrize("seed", [-1, 2**64], ids=["negative", "2**64"])
def test_kernels_refuse_seeds_outside_64_bits_in_both_modes(module, seed):
    if module == "python":
        kernels = _kernels_py
    else:
        from l2l_multi.data import _kernels as kernels
    offsets, members = _kernels_py.group_by_label(np.arange(20) % 4, 4)
    classes = np.arange(2, dtype=np.int64)
    calls = {
        "choose": lambda: kernels.choose(10, 3, seed),
        "sample_shots": lambda: kernels.sample_shots(offsets, members, classes, 2, False, seed),
        "fused_ways_shots": lambda: kernels.fused_ways_shots(offsets, members, classes, 2, 2, False, seed),
        "plan_tasks": lambda: kernels.plan_tasks(
            offsets, members, classes, 2, 2, False, False, 0, False, seed, np.arange(2)
        ),
        "mix64": lambda: kernels.mix64(seed),
    }
    for name, call in calls.items():
        with pytest.raises(OverflowError):
            call()
            pytest.fail(f"{module} {name} accepted seed {seed}")


def test_numpy_seeded_datasets_refuse_negative_and_bool_seeds():
    for bad in (-1, True, 2.0):
        with pytest.raises(ValueError, match=f"seed must be a non-negative int, got {bad!r}"):
            synthetic_classification(num_classes=2, seed=bad)

    # numpy's SeedSequence takes every bit of a large seed: 2**64 is not seed 0 there
    def inputs(seed):
        return synthetic_classification(num_classes=2, samples_per_class=1, seed=seed).inputs

    assert not np.array_equal(inputs(2**64), inputs(0))


# -- 2. transforms built on another dataset --------------------------------------------------------
def test_transforms_on_another_meta_dataset_are_refused():
    data, other = small(), small(offset=1000.0)
    with pytest.raises(ValueError) as info:
        TaskDataset(data, [NWays(data, 3), KShots(other, 2), LoadData(data)], backend="numpy")
    message = str(info.value)
    assert "task_transforms[1] (KShots(k=2, replacement=False))" in message
    assert f"id {id(other):#x}" in message and f"id {id(data):#x}" in message
    assert "MetaDataset(40 samples, 8 labels)" in message


@pytest.mark.parametrize("wrap", ["union", "filtered", "second-wrapper"])
def test_a_view_of_the_same_data_is_another_dataset(wrap):
    data = small()
    view = {
        "union": lambda: UnionMetaDataset([data]),
        "filtered": lambda: FilteredMetaDataset(data, list(range(8))),
        "second-wrapper": lambda: MetaDataset(data.dataset),
    }[wrap]()
    with pytest.raises(ValueError, match=r"task_transforms\[0\] \(NWays\(n=3\)\) was built on"):
        TaskDataset(view, chain(data), backend="numpy")


def test_raw_dataset_adopts_the_transforms_wrapper_and_keeps_the_fast_path(kernel_mode):
    raw = ArrayDataset(np.arange(40.0).reshape(40, 1), np.arange(40) % 8)
    data = MetaDataset(raw)
    adopted = TaskDataset(raw, chain(data) + [RemapLabels(data)], seed=3, backend="numpy")
    assert adopted.dataset is data and adopted._plan is not None
    direct = TaskDataset(data, chain(data) + [RemapLabels(data)], seed=3, backend="numpy")
    np.testing.assert_array_equal(adopted.sample_batch(4)[0], direct.sample_batch(4)[0])
    # plain callables carry no dataset and are not checked
    TaskDataset(small(), [lambda task: task], backend="numpy")


# -- 3. state fingerprints ------------------------------------------------------------------------
def fused(data, ways=3, shots=2, shuffle=True):
    return [
        FusedNWaysKShots(data, ways, shots),
        LoadData(data),
        RemapLabels(data, shuffle),
        ConsecutiveLabels(data),
    ]


def test_state_is_json_and_resumes_a_rebuilt_pipeline(kernel_mode):
    data = small()
    tasks = TaskDataset(data, fused(data), num_tasks=50, seed=4, backend="numpy")
    tasks.sample_batch(3)
    state = json.loads(json.dumps(tasks.state_dict()))
    assert all(isinstance(value, (int, str)) for value in state.values())
    assert "0x" not in state["transforms"]
    expected = tasks.sample_batch(5)
    again_data = small()  # a fresh process would rebuild every object: same fingerprint
    again = TaskDataset(again_data, fused(again_data), num_tasks=50, seed=4, backend="numpy")
    again.load_state_dict(state)
    for a, b in zip(again.sample_batch(5), expected):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(seed=5), r"seed: saved 4, this one 5"),
        (dict(num_tasks=60), r"num_tasks: saved 50, this one 60"),
        (
            dict(ways=4),
            r"task_transforms\[0\]: saved 'FusedNWaysKShots\(n=3, k=2, .*"
            r"this one 'FusedNWaysKShots\(n=4",
        ),
        (
            dict(shuffle=False),
            r"task_transforms\[2\]: saved 'RemapLabels\(shuffle=True\)', this one "
            r"'RemapLabels\(shuffle=False\)'",
        ),
        (
            dict(labels=(np.arange(40) + 1) % 8),
            r"dataset: saved '40 samples, 8 labels, labels sha256 \w+', "
            r"this one '40 samples, 8 labels, labels sha256 \w+'",
        ),
        (dict(extra=True), r"task_transforms: saved .* this one .*<lambda>"),
    ],
    ids=["seed", "num-tasks", "ways", "remap-shuffle", "same-size-other-labels", "added-transform"],
)
def test_state_of_another_pipeline_is_refused(change, message):
    data = small()
    tasks = TaskDataset(data, fused(data), num_tasks=50, seed=4, backend="numpy")
    tasks.sample()
    state = tasks.state_dict()
    other_data = small(labels=change.get("labels"))
    transforms = fused(other_data, ways=change.get("ways", 3), shuffle=change.get("shuffle", True))
    if change.get("extra"):
        transforms.append(lambda task: task)
    other = TaskDataset(
        other_data,
        transforms,
        num_tasks=change.get("num_tasks", 50),
        seed=change.get("seed", 4),
        backend="numpy",
    )
    position = other.state_dict()
    with pytest.raises(ValueError, match="saved from another task pipeline; it differs in " + message):
        other.load_state_dict(state)
    assert other.state_dict() == position  # nothing was restored


def test_legacy_state_loads_with_a_warning_and_a_seed_check():
    data = small()
    tasks = TaskDataset(data, chain(data), num_tasks=20, seed=9, backend="numpy")
    tasks.sample()
    legacy = {key: tasks.state_dict()[key] for key in ("seed", "next_task", "sampler")}
    expected = tasks.sample()[0]
    fresh = TaskDataset(data, chain(data), num_tasks=20, seed=9, backend="numpy")
    with pytest.warns(UserWarning, match="saved without a pipeline fingerprint"):
        fresh.load_state_dict(legacy)
    np.testing.assert_array_equal(fresh.sample()[0], expected)
    with pytest.raises(ValueError, match="seed 9, this one has seed 10"):
        TaskDataset(data, chain(data), num_tasks=20, seed=10, backend="numpy").load_state_dict(legacy)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda s: s.pop("dataset"), r"state must be a dict from TaskDataset.state_dict\(\) with the keys"),
        (lambda s: s.update(next_task="3"), r"state\['next_task'\] must be an int, got '3'"),
        (lambda s: s.update(seed=True), r"state\['seed'\] must be an int, got True"),
        (lambda s: s.update(sampler=2**64), r"impossible position: .*sampler=18446744073709551616"),
        (lambda s: s.update(next_task=-1), r"impossible position: next_task=-1"),
    ],
    ids=["missing-key", "str-position", "bool-seed", "sampler-out-of-range", "negative-next-task"],
)
def test_malformed_states_are_refused(damage, message):
    data = small()
    tasks = TaskDataset(data, chain(data), seed=1, backend="numpy")
    state = tasks.state_dict()
    damage(state)
    with pytest.raises(ValueError, match=message):
        tasks.load_state_dict(state)


# -- 4. duplicate archive members ---------------------------------------------------------------
def _png():
    buffer = io.BytesIO()
    Image.new("1", (105, 105), 1).save(buffer, "PNG")
    return buffer.getvalue()


def _omniglot_zips(root: Path, duplicate_in=None):
    """Lake's layout, one character of two drawings per archive; optionally one member twice."""
    png = _png()
    for top in ("images_background", "images_evaluation"):
        names = [f"{top}/{top[7:]}/character01/0001_{drawing:02d}.png" for drawing in (1, 2)]
        if top == duplicate_in:
            names.append(names[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile warns "Duplicate name"
            with zipfile.ZipFile(root / f"{top}.zip", "w") as archive:
                for name in names:
                    archive.writestr(name, png)


def test_omniglot_refuses_a_duplicate_member(tmp_path):
    _omniglot_zips(tmp_path, duplicate_in="images_evaluation")
    path = tmp_path / "images_evaluation.zip"
    member = "images_evaluation/evaluation/character01/0001_01.png"
    with pytest.raises(datasets.CorruptArchiveError, match=f"{path}: member '{member}' appears more than"):
        datasets.FullOmniglot(tmp_path, image_size=28, cache_dir=tmp_path / "cache")
    with pytest.raises(datasets.CorruptArchiveError, match="appears more than once"):
        datasets.zip_content_digest(path)
    assert not datasets.verify_file(path, content_digest="0" * 64)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_extract_archive_refuses_duplicate_files(tmp_path, kind):
    archive = tmp_path / f"data.{kind}"
    if kind == "zip":
        with warnings.catch_warnings(), zipfile.ZipFile(archive, "w") as out:
            warnings.simplefilter("ignore", UserWarning)
            out.writestr("top/a.txt", b"first")
            out.writestr("top/./a.txt", b"second")  # the same path once normalised
    else:
        with tarfile.open(archive, "w") as out:
            for data in (b"first", b"second"):
                info = tarfile.TarInfo("top/a.txt")
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
    with pytest.raises(datasets.CorruptArchiveError, match=r"data\.(zip|tar): member 'top/a.txt' appears"):
        datasets.extract_archive(archive, tmp_path / "out", progress=False)
    assert os.listdir(tmp_path / "out") == []


def test_extract_archive_allows_a_repeated_folder_entry(tmp_path):
    archive = tmp_path / "data.tar"
    with tarfile.open(archive, "w") as out:
        for _ in range(2):  # e.g. `tar cf data.tar top top/sub` lists top/sub twice
            folder = tarfile.TarInfo("top/sub")
            folder.type = tarfile.DIRTYPE
            out.addfile(folder)
        info = tarfile.TarInfo("top/sub/a.txt")
        info.size = 1
        out.addfile(info, io.BytesIO(b"a"))
    datasets.extract_archive(archive, tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "top" / "sub" / "a.txt").read_bytes() == b"a"


# -- 5. cache content checks ----------------------------------------------------------------------
@pytest.fixture
def omniglot_root(tmp_path, monkeypatch):
    """Tiny Omniglot zips, a cache folder, and a counter of decoded images."""
    _omniglot_zips(tmp_path)
    decoded = []
    real = _omniglot._decode
    monkeypatch.setattr(_omniglot, "_decode", lambda *a: decoded.append(1) or real(*a))
    return tmp_path, tmp_path / "cache", decoded


def _build(root, cache):
    return datasets.FullOmniglot(root, image_size=28, cache_dir=cache)


def _only_cache(cache: Path) -> Path:
    (path,) = cache.glob("omniglot-28px-*.npy")
    return path


@pytest.mark.parametrize(
    "damage, warning",
    [
        ("same-shape-other-pixels", "does not match its digest"),
        ("truncated", "unreadable cache file"),
        ("digest-missing", "has no digest file"),
        ("digest-garbled", "unreadable digest file"),
    ],
    ids=["same-shape-other-pixels", "truncated", "digest-missing", "digest-garbled"],
)
def test_a_damaged_cache_is_rebuilt_never_used(omniglot_root, damage, warning):
    root, cache, decoded = omniglot_root
    expected = _build(root, cache).inputs
    assert len(decoded) == 4
    path = _only_cache(cache)
    digest = Path(str(path) + ".digest.json")
    if damage == "same-shape-other-pixels":
        np.save(path, np.full_like(expected, 7))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "digest-missing":
        digest.unlink()
    else:
        digest.write_text("{not json")
    with pytest.warns(UserWarning, match=warning):
        rebuilt = _build(root, cache).inputs
    np.testing.assert_array_equal(rebuilt, expected)
    assert len(decoded) == 8  # decoded again
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten cache verifies: no warning, no decoding
        np.testing.assert_array_equal(_build(root, cache).inputs, expected)
    assert len(decoded) == 8


def test_digest_file_records_the_cache_contents(omniglot_root):
    import hashlib

    root, cache, _ = omniglot_root
    data = _build(root, cache)
    record = json.loads(Path(str(_only_cache(cache)) + ".digest.json").read_text())
    assert record == {
        "sha256": hashlib.sha256(data.inputs.tobytes()).hexdigest(),
        "shape": list(data.inputs.shape),
        "dtype": "|u1",
    }


def test_an_unverified_cache_is_skipped_for_a_verified_copy_in_a_later_folder(tmp_path):
    root, user = tmp_path / "root", tmp_path / "user"  # e.g. a read-only root, then ~/.cache
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    _common.save_cached([str(user)], "x.npy", array)
    root.mkdir()
    np.save(root / "x.npy", np.zeros_like(array))  # left by an older version: no digest
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the copy that verifies is used, quietly
        np.testing.assert_array_equal(_common.load_cached([str(root), str(user)], "x.npy"), array)
    (user / "x.npy.digest.json").unlink()
    with pytest.warns(UserWarning, match=r"root/x.npy has no digest.*user/x.npy has no digest.*rebuilding"):
        assert _common.load_cached([str(root), str(user)], "x.npy") is None


@pytest.mark.parametrize("damage", ["label-ids-changed", "no-digest"])
def test_bookkeeping_cache_is_verified(tmp_path, damage):
    path = tmp_path / "bookkeeping.npz"
    raw = ArrayDataset(np.zeros((6, 1)), np.array([0, 1, 2, 0, 1, 2]))
    MetaDataset(raw, bookkeeping_path=path)
    with np.load(path) as stored:
        arrays = dict(stored)
    if damage == "label-ids-changed":
        arrays["label_ids"] = np.array([2, 1, 0, 2, 1, 0])
    else:
        del arrays["digest"]
    np.savez(path, **arrays)
    expected = "has no digest" if damage == "no-digest" else "fails its digest check"
    with pytest.warns(UserWarning, match=expected):
        rebuilt = MetaDataset(raw, bookkeeping_path=path)
    assert rebuilt.label_ids.tolist() == [0, 1, 2, 0, 1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert MetaDataset(raw, bookkeeping_path=path).label_ids.tolist() == [0, 1, 2, 0, 1, 2]


# -- 6. file modes and stale temporaries ---------------------------------------------------------
@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield 0o640
    os.umask(previous)


def test_file_mode_follows_the_umask(umask_027):
    assert file_mode() == umask_027


def test_cache_files_get_the_umask_mode(omniglot_root, umask_027, tmp_path):
    root, cache, _ = omniglot_root
    _build(root, cache)
    written = sorted(cache.iterdir())
    assert len(written) == 2
    assert all(stat.S_IMODE(path.stat().st_mode) == umask_027 for path in written)
    MetaDataset(ArrayDataset(np.zeros(2), np.array([0, 1])), bookkeeping_path=tmp_path / "b.npz")
    assert stat.S_IMODE((tmp_path / "b.npz").stat().st_mode) == umask_027
    source = tmp_path / "source.bin"
    source.write_bytes(b"abc")
    target = datasets.download_file(
        source.as_uri(), tmp_path / "copy.bin", md5="900150983cd24fb0d6963f7d28e17f72", progress=False
    )
    assert stat.S_IMODE(os.stat(target).st_mode) == umask_027


def _age(path, seconds):
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_stale_temporaries_are_removed_when_the_cache_folder_is_next_used(omniglot_root):
    root, cache, _ = omniglot_root
    cache.mkdir()
    old, young = cache / ".omniglot-28px-x.npy.old1.part", cache / ".omniglot-28px-x.npy.new1.part"
    other = cache / ".notes.txt.abc.part"  # not a cache temporary: left alone
    for path in (old, young, other):
        path.write_bytes(b"partial")
    _age(old, STALE_AFTER_SECONDS + 5)
    _age(other, STALE_AFTER_SECONDS + 5)
    _build(root, cache)
    assert not old.exists() and young.exists() and other.exists()


WRITER = """
import sys, time
import numpy as np
from l2l_multi.vision.datasets import _common

def stalled_save(file, array, allow_pickle=False):
    file.write(b"half an array"); file.flush()
    print("writing", flush=True)
    time.sleep(120)

np.save = stalled_save
_common.save_cached([sys.argv[1]], "omniglot-28px-k.npy", np.zeros(3, np.uint8))
"""


def test_a_killed_cache_write_is_cleaned_up_but_a_live_one_is_not(tmp_path):
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "writing"
        (temporary,) = tmp_path.glob(".omniglot-28px-k.npy.*.part")
        _age(temporary, STALE_AFTER_SECONDS + 5)  # old, but its writer holds the lock
        assert _common.load_cached([str(tmp_path)], "omniglot-28px-k.npy") is None
        assert temporary.exists()
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    _age(temporary, STALE_AFTER_SECONDS + 5)
    assert _common.load_cached([str(tmp_path)], "omniglot-28px-k.npy") is None  # next use cleans
    assert list(tmp_path.iterdir()) == []
