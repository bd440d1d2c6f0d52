"""l2l.vision.datasets: safe download/extract, and every dataset on fixtures in its real on-disk format.

FullOmniglot is also checked on the real archives in the test data folder (L2L_MULTI_TEST_DATA,
see tests/_helpers.py) when present.
"""

import hashlib
import io
import json
import os
import pickle
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _helpers import OMNIGLOT_ROOT
from PIL import Image

from l2l_multi.data import MetaDataset
from l2l_multi.vision import datasets
from l2l_multi.vision.datasets import _cifar, _common, _mini_imagenet, _omniglot, _tiered_imagenet

OMNIGLOT = OMNIGLOT_ROOT
# From the data folder's README (sha256 over the sorted "<png sha256>  <arcname>" lines).
OMNIGLOT_DIGESTS = {
    "images_background.zip": "deaa02f758afda524b3a045c7af40311f2d9ded3e2a39f715ece8470d474bc6a",
    "images_evaluation.zip": "3d5e035f27423c362bf9a181af649b43cda64c1008f842177ddc5203269c901e",
}
needs_omniglot = pytest.mark.skipif(
    not all((OMNIGLOT / name).is_file() for name in OMNIGLOT_DIGESTS), reason="real Omniglot zips absent"
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*") if path.name.startswith("."))


# -- download_file / verify_file ----------------------------------------------------------------
def test_download_file_from_file_url(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload" * 1000)
    target = tmp_path / "out" / "copy.bin"
    result = datasets.download_file(source.as_uri(), target, _sha256(source.read_bytes()), progress=False)
    assert result == str(target) and target.read_bytes() == source.read_bytes()
    assert _leftovers(tmp_path) == []


def test_download_file_md5(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"abc")
    target = tmp_path / "copy.bin"
    datasets.download_file(source.as_uri(), target, md5="900150983cd24fb0d6963f7d28e17f72", progress=False)
    assert target.read_bytes() == b"abc"


def test_download_file_checksum_mismatch_leaves_nothing(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"tampered")
    target = tmp_path / "copy.bin"
    expected = "0" * 64
    with pytest.raises(datasets.ChecksumError) as info:
        datasets.download_file(source.as_uri(), target, expected, progress=False)
    message = str(info.value)
    assert str(target) in message and expected in message and _sha256(b"tampered") in message
    assert not target.exists() and _leftovers(tmp_path) == []


def test_download_file_failed_transfer_leaves_nothing(tmp_path):
    target = tmp_path / "copy.bin"
    with pytest.raises(OSError):
        datasets.download_file((tmp_path / "missing.bin").as_uri(), target, "0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_file_needs_a_digest(tmp_path):
    with pytest.raises(ValueError, match="sha256= or md5="):
        datasets.download_file("file:///dev/null", tmp_path / "x", progress=False)


def test_verify_file(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("top/a.png", b"one")
    content = datasets.zip_content_digest(path, ".png")
    assert datasets.verify_file(path, _sha256(path.read_bytes()))
    assert datasets.verify_file(path, "0" * 64, content_digest=content, content_suffix=".png")
    assert not datasets.verify_file(path, "0" * 64, content_digest="1" * 64)
    assert not datasets.verify_file(tmp_path / "missing.zip", "0" * 64)
    # Recompressing the same members changes the file digest but not the content digest.
    with zipfile.ZipFile(tmp_path / "b.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("top/a.png", b"one")
    assert datasets.zip_content_digest(tmp_path / "b.zip", ".png") == content


# -- extract_archive ------------------------------------------------------------------------------
def _write_zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _write_tar(path, members, links=()):
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target, kind in links:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            archive.addfile(info)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_extract_archive(tmp_path, kind):
    archive = tmp_path / f"data.{kind}"
    members = {"top/a.txt": b"a", "top/sub/b.txt": b"b"}
    (_write_zip if kind == "zip" else _write_tar)(archive, members)
    made = datasets.extract_archive(archive, tmp_path / "out", progress=False)
    assert made == [str(tmp_path / "out" / "top")]
    assert (tmp_path / "out/top/sub/b.txt").read_bytes() == b"b"
    assert _leftovers(tmp_path / "out") == []
    with pytest.raises(FileExistsError, match="'top' already exists"):
        datasets.extract_archive(archive, tmp_path / "out", progress=False)


@pytest.mark.parametrize(
    "member",
    ["../evil.txt", "/abs/evil.txt", "top/../../evil.txt"],
    ids=["dotdot", "absolute", "nested-dotdot"],
)
@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_extract_refuses_escaping_paths(tmp_path, kind, member):
    archive = tmp_path / f"bad.{kind}"
    (_write_zip if kind == "zip" else _write_tar)(archive, {"top/ok.txt": b"ok", member: b"x"})
    destination = tmp_path / "dest" / "out"
    with pytest.raises(datasets.UnsafeArchiveError) as info:
        datasets.extract_archive(archive, destination, progress=False)
    assert repr(member) in str(info.value) and str(archive) in str(info.value)
    assert list(destination.iterdir()) == []  # nothing written, not even the harmless member
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "dest" / "evil.txt").exists()


@pytest.mark.parametrize(
    "link",
    [
        ("top/link", "../../outside", tarfile.SYMTYPE),
        ("top/link", "/etc/passwd", tarfile.SYMTYPE),
        ("top/hard", "../outside", tarfile.LNKTYPE),
    ],
    ids=["symlink-dotdot", "symlink-absolute", "hardlink-dotdot"],
)
def test_extract_refuses_escaping_links(tmp_path, link):
    archive = tmp_path / "bad.tar.gz"
    _write_tar(archive, {"top/ok.txt": b"ok"}, links=[link])
    with pytest.raises(datasets.UnsafeArchiveError, match=repr(link[0])):
        datasets.extract_archive(archive, tmp_path / "out", progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_extract_allows_links_inside(tmp_path):
    archive = tmp_path / "ok.tar.gz"
    _write_tar(archive, {"top/a.txt": b"a"}, links=[("top/link", "a.txt", tarfile.SYMTYPE)])
    datasets.extract_archive(archive, tmp_path / "out", progress=False)
    assert (tmp_path / "out/top/link").read_bytes() == b"a"


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_extract_truncated_archive(tmp_path, kind):
    archive = tmp_path / f"data.{kind}"
    rng = np.random.default_rng(0)
    members = {f"top/{i}.bin": rng.bytes(20_000) for i in range(5)}
    (_write_zip if kind == "zip" else _write_tar)(archive, members)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(datasets.CorruptArchiveError) as info:
        datasets.extract_archive(archive, tmp_path / "out", progress=False)
    assert str(archive) in str(info.value) and "delete it" in str(info.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_pickles_may_not_run_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo hacked",))

    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps({"image_data": Exploit()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        _common.load_pickle(str(path))


# -- FullOmniglot ----------------------------------------------------------------------------------
def _tiny_omniglot(root: Path, native: bool = False) -> list[np.ndarray]:
    """Two alphabets per archive, 2 characters x 3 drawings, random 1-bit images; returns them."""
    rng = np.random.default_rng(1)
    drawn = []
    for top in ("images_background", "images_evaluation"):
        with zipfile.ZipFile(root / f"{top}.zip", "w") as archive:
            for alphabet in (f"{top[7:]}_B", f"{top[7:]}_A"):  # written out of order on purpose
                for character in ("character02", "character01"):
                    for drawing in range(1, 4):
                        paper = rng.random((105, 105)) > 0.1
                        buffer = io.BytesIO()
                        Image.fromarray(paper).convert("1").save(buffer, "PNG")
                        archive.writestr(
                            f"{top}/{alphabet}/{character}/0001_{drawing:02d}.png", buffer.getvalue()
                        )
                        drawn.append((f"{alphabet}/{character}", drawing, paper))
    order = sorted(drawn[:12], key=lambda x: x[:2]) + sorted(drawn[12:], key=lambda x: x[:2])
    return [paper for _, _, paper in order]


def test_omniglot_native_size_fixture(tmp_path):
    papers = _tiny_omniglot(tmp_path)
    data = datasets.FullOmniglot(tmp_path, cache_dir=tmp_path / "cache")
    assert data.class_names == [
        "background_A/character01",
        "background_A/character02",
        "background_B/character01",
        "background_B/character02",
        "evaluation_A/character01",
        "evaluation_A/character02",
        "evaluation_B/character01",
        "evaluation_B/character02",
    ]
    assert data.targets.tolist() == np.repeat(np.arange(8), 3).tolist() and data.background_classes == 4
    expected = np.where(np.stack(papers), 0, 255).astype(np.uint8)  # ink (False = black) becomes 255
    np.testing.assert_array_equal(data.inputs, expected)
    # The packed-bit cache gives back the same images.
    again = datasets.FullOmniglot(tmp_path, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.inputs, expected)
    cached = sorted(os.listdir(tmp_path / "cache"))  # the cache and the digest that vouches for it
    assert len(cached) == 2 and cached[1] == cached[0] + ".digest.json"


def test_omniglot_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        datasets.FullOmniglot(tmp_path)
    with pytest.raises(ValueError, match="image_size must be"):
        datasets.FullOmniglot(tmp_path, image_size=0)
    _tiny_omniglot(tmp_path)
    with pytest.raises(ValueError, match="delete it and pass download=True"):
        datasets.FullOmniglot(tmp_path, download=True)


def test_omniglot_transforms_and_meta_dataset(tmp_path):
    _tiny_omniglot(tmp_path)
    data = datasets.FullOmniglot(
        tmp_path, image_size=28, transform=lambda image: image.sum(), target_transform=str
    )
    assert not data.supports_batches and data[5][1] == "1"
    plain = datasets.FullOmniglot(tmp_path, image_size=28)
    assert plain.supports_batches and plain.get_batch(np.array([0, 3]))[1].tolist() == [0, 1]
    meta = MetaDataset(plain)
    assert meta.labels == list(range(8)) and meta.labels_to_indices[2] == [6, 7, 8]


@pytest.fixture(scope="module")
def omniglot28(tmp_path_factory):
    cache = tmp_path_factory.mktemp("omniglot-cache")
    start = time.perf_counter()
    data = datasets.FullOmniglot(OMNIGLOT, image_size=28, cache_dir=cache)
    return data, cache, time.perf_counter() - start


@needs_omniglot
def test_real_omniglot_counts_and_labels(omniglot28):
    data, _, _ = omniglot28
    assert len(data) == 32460 and data.inputs.shape == (32460, 28, 28) and data.inputs.dtype == np.uint8
    assert data.targets.dtype == np.int64 and len(data.class_names) == 1623
    assert np.bincount(data.targets).tolist() == [20] * 1623
    assert np.all(np.diff(data.targets) >= 0) and data.background_classes == 964
    assert data.class_names[0] == "Alphabet_of_the_Magi/character01"
    assert data.class_names[963] == "Tifinagh/character55"
    assert data.class_names[964] == "Angelic/character01"
    assert data.class_names[-1] == "ULOG/character26"
    # Every character of the Vinyals split files exists under that name.
    vinyals = Path(_omniglot.__file__).parents[1] / "splits" / "omniglot" / "vinyals" / "trainval.txt"
    if vinyals.is_file():
        names = {line.rsplit("/", 1)[0] for line in vinyals.read_text().split()}
        assert names <= set(data.class_names)
    # Ink is about 8% of the page and strokes are bright.
    assert 0.05 < data.inputs.mean() / 255 < 0.12 and data.inputs[:, 0, 0].max() < 64


@needs_omniglot
def test_real_omniglot_image_matches_direct_decoding(omniglot28):
    data, _, _ = omniglot28
    name = "images_evaluation/Angelic/character01/0965_01.png"
    with zipfile.ZipFile(OMNIGLOT / "images_evaluation.zip") as archive:
        image = Image.open(io.BytesIO(archive.read(name)))
        assert image.size == (105, 105) and image.mode == "1"
        grey = image.convert("L").resize((28, 28), Image.Resampling.LANCZOS)
    index = 964 * 20  # first drawing of the first evaluation character
    np.testing.assert_array_equal(data[index][0], 255 - np.asarray(grey))
    assert data[index][1] == 964
    assert len(np.unique(data[index][0])) > 2  # antialiased, not a nearest-neighbour resize


@needs_omniglot
def test_real_omniglot_cache_is_reused_and_fast(omniglot28):
    data, cache, first = omniglot28
    assert len(list(cache.glob("omniglot-28px-*.npy"))) == 1
    start = time.perf_counter()
    again = datasets.FullOmniglot(OMNIGLOT, image_size=28, cache_dir=cache)
    cached = time.perf_counter() - start
    np.testing.assert_array_equal(again.inputs, data.inputs)
    assert cached < 3.0, f"cached load took {cached:.2f}s (first {first:.2f}s)"


@needs_omniglot
@pytest.mark.parametrize("name", sorted(OMNIGLOT_DIGESTS))
def test_real_omniglot_content_digest(name):
    assert datasets.omniglot_content_digest(OMNIGLOT / name) == OMNIGLOT_DIGESTS[name]


@needs_omniglot
def test_real_omniglot_download(omniglot28, tmp_path, monkeypatch):
    """download=True fetches missing zips (md5-checked) and accepts a repackaged present zip."""
    _, cache, _ = omniglot28
    md5s = {name: hashlib.md5((OMNIGLOT / name).read_bytes()).hexdigest() for name in OMNIGLOT_DIGESTS}
    monkeypatch.setattr(
        _omniglot,
        "_SHA256",
        {
            **_omniglot._SHA256,
            "images_evaluation": _sha256((OMNIGLOT / "images_evaluation.zip").read_bytes()),
        },
    )
    # Serve the evaluation zip "remotely"; the background zip is already in root (a repackaged copy
    # whose md5 differs from Lake's: accepted through its content digest).
    monkeypatch.setattr(_omniglot, "_URL", OMNIGLOT.as_uri() + "/{}.zip")
    monkeypatch.setattr(
        _omniglot,
        "_ARCHIVES",
        tuple(
            (stem, md5s[f"{stem}.zip"] if stem == "images_evaluation" else original_md5, digest)
            for stem, original_md5, digest in _omniglot._ARCHIVES
        ),
    )
    (tmp_path / "images_background.zip").write_bytes((OMNIGLOT / "images_background.zip").read_bytes())
    data = datasets.FullOmniglot(tmp_path, image_size=28, download=True, cache_dir=cache)
    fetched = (tmp_path / "images_evaluation.zip").read_bytes()
    assert fetched == (OMNIGLOT / "images_evaluation.zip").read_bytes()
    assert len(data) == 32460 and _leftovers(tmp_path) == []


# -- mini-ImageNet ---------------------------------------------------------------------------------
def _mini_pickle(root: Path, mode: str) -> np.ndarray:
    images = np.random.default_rng(2).integers(0, 256, (12, 84, 84, 3), dtype=np.uint8)
    class_dict = {"n03": list(range(0, 4)), "n01": list(range(4, 8)), "n02": list(range(8, 12))}
    with open(root / f"mini-imagenet-cache-{mode}.pkl", "wb") as file:
        pickle.dump({"image_data": images, "class_dict": class_dict}, file, protocol=4)
    return images


@pytest.mark.parametrize("mode,stored", [("train", "train"), ("val", "validation"), ("test", "test")])
def test_mini_imagenet_pickle(tmp_path, mode, stored):
    images = _mini_pickle(tmp_path, stored)
    data = datasets.MiniImagenet(tmp_path, mode=mode)
    np.testing.assert_array_equal(data.inputs, images)
    assert data.targets.tolist() == [2] * 4 + [0] * 4 + [1] * 4 and data.class_names == ["n01", "n02", "n03"]
    assert data.data.shape == (12, 84, 84, 3) and data[4][1] == 0


def test_mini_imagenet_jpeg_folders(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    (tmp_path / "images").mkdir()
    rows, pixels = [], []
    for wnid in ("n09", "n05"):
        for index in range(1, 4):
            filename = f"{wnid}{index:08d}.jpg"
            array = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
            Image.fromarray(array).save(tmp_path / "images" / filename, quality=95)
            rows.append(f"{filename},{wnid}")
            with Image.open(tmp_path / "images" / filename) as image:
                pixels.append(np.asarray(image.convert("RGB").resize((84, 84), Image.Resampling.LANCZOS)))
    (tmp_path / "test.csv").write_text("filename,label\n" + "\n".join(rows) + "\n")
    data = datasets.MiniImagenet(tmp_path, mode="test", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(data.inputs, np.stack(pixels))
    assert data.targets.tolist() == [1, 1, 1, 0, 0, 0] and data.class_names == ["n05", "n09"]
    # A second construction reads the cache and decodes nothing.
    monkeypatch.setattr(_mini_imagenet, "_decode_jpeg", lambda path: pytest.fail("decoded again"))
    again = datasets.MiniImagenet(tmp_path, mode="test", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.inputs, data.inputs)


def test_mini_imagenet_errors(tmp_path):
    with pytest.raises(ValueError, match="mode must be one of"):
        datasets.MiniImagenet(tmp_path, mode="training")
    with pytest.raises(FileNotFoundError, match="mini-imagenet-cache-train.pkl"):
        datasets.MiniImagenet(tmp_path)
    (tmp_path / "images").mkdir()  # the packaged split lists 12,000 test images, none present
    with pytest.raises(FileNotFoundError, match="12000 images of the test split are missing"):
        datasets.MiniImagenet(tmp_path, mode="test")


# -- tiered-ImageNet -------------------------------------------------------------------------------
def test_tiered_imagenet(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (5, 84, 84, 3), dtype=np.uint8)
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        encoded.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))  # as the release stores them
    labels = {
        "label_specific": np.array([2, 0, 1, 2, 0]),
        "label_general": np.array([1, 0, 0, 1, 0]),
        "label_specific_str": ["n01", "n02", "n03"],
        "label_general_str": ["animal", "object"],
    }
    for name, value in (("val_images_png.pkl", encoded), ("val_labels.pkl", labels)):
        with open(tmp_path / name, "wb") as file:
            pickle.dump(value, file, protocol=2)
    data = datasets.TieredImagenet(tmp_path, mode="validation", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(data.inputs, images)
    assert data.targets.tolist() == [2, 0, 1, 2, 0] and data.coarse_targets.tolist() == [1, 0, 0, 1, 0]
    assert data.class_names == ["n01", "n02", "n03"] and data.coarse_class_names == ["animal", "object"]

    monkeypatch.setattr(_tiered_imagenet, "_decode_png", lambda item: pytest.fail("decoded again"))
    again = datasets.TieredImagenet(tmp_path, mode="val", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.inputs, images)


# -- CIFAR-FS and FC100 ----------------------------------------------------------------------------
def _all_cifar_classes() -> list[tuple[str, str]]:
    return [tuple(pair) for mode in ("train", "val", "test") for pair in _cifar.read_split("cifar-fs", mode)]


def _write_cifar100(root: Path, train_per_class: int = 2, test_per_class: int = 1) -> list[str]:
    """CIFAR-100's python format; pixel (0, 0) of image = (fine label, set, copy) for checking."""
    pairs = _all_cifar_classes()
    fine_names = sorted(name for _, name in pairs)  # CIFAR-100's meta lists both in sorted order
    coarse_names = sorted({coarse for coarse, _ in pairs})
    coarse_of = {name: coarse_names.index(coarse) for coarse, name in pairs}
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for part, per_class, marker in (("train", train_per_class, 0), ("test", test_per_class, 1)):
        data, fine, coarse = [], [], []
        for copy in range(per_class):
            for label, name in enumerate(fine_names):
                image = np.zeros((3, 32, 32), dtype=np.uint8)  # CHW, flattened as CIFAR stores it
                image[:, 0, 0] = (label, marker, copy)
                data.append(image.ravel())
                fine.append(label)
                coarse.append(coarse_of[name])
        with open(folder / part, "wb") as file:
            pickle.dump(
                {
                    "data": np.stack(data),
                    "fine_labels": fine,
                    "coarse_labels": coarse,
                    "filenames": [f"{i}.png" for i in range(len(fine))],
                },
                file,
                protocol=2,
            )
    with open(folder / "meta", "wb") as file:
        pickle.dump({"fine_label_names": fine_names, "coarse_label_names": coarse_names}, file, protocol=2)
    return fine_names


@pytest.mark.parametrize("mode,classes", [("train", 64), ("val", 16), ("validation", 16), ("test", 20)])
def test_cifar_fs(tmp_path, mode, classes):
    fine_names = _write_cifar100(tmp_path)
    data = datasets.CIFARFS(tmp_path, mode=mode)
    expected = sorted(name for _, name in _cifar.read_split("cifar-fs", mode))
    assert data.class_names == expected and len(data) == classes * 3
    assert data.inputs.shape == (classes * 3, 32, 32, 3) and data.inputs.dtype == np.uint8
    assert data.targets.tolist() == np.repeat(np.arange(classes), 3).tolist()
    # HWC pixel (0, 0) encodes (CIFAR label, train/test, copy): class-major, train rows before test.
    corner = data.inputs[:3, 0, 0]
    assert corner.tolist() == [
        [fine_names.index(expected[0]), 0, 0],
        [fine_names.index(expected[0]), 0, 1],
        [fine_names.index(expected[0]), 1, 0],
    ]
    assert all(
        fine_names[pixel[0]] == data.class_names[label]
        for pixel, label in zip(data.inputs[:, 0, 0], data.targets)
    )


def test_cifar_splits_are_disjoint_and_complete():
    modes = ("train", "val", "test")
    names = [sorted(name for _, name in _cifar.read_split("cifar-fs", mode)) for mode in modes]
    assert sum(map(len, names)) == 100 and len(set().union(*names)) == 100
    supers = [_cifar.read_split("fc100", mode) for mode in modes]
    assert [len(s) for s in supers] == [12, 4, 4] and len(set().union(*supers)) == 20


@pytest.mark.parametrize("mode,classes", [("train", 60), ("val", 20), ("test", 20)])
def test_fc100(tmp_path, mode, classes):
    fine_names = _write_cifar100(tmp_path, train_per_class=1, test_per_class=1)
    data = datasets.FC100(tmp_path, mode=mode)
    supers = set(_cifar.read_split("fc100", mode))
    expected = sorted(name for coarse, name in _all_cifar_classes() if coarse in supers)
    assert len(expected) == classes and data.class_names == expected and len(data) == classes * 2
    assert sorted(data.coarse_class_names) == sorted(supers)
    assert all(
        fine_names[pixel[0]] == data.class_names[label]
        for pixel, label in zip(data.inputs[:, 0, 0], data.targets)
    )


def test_cifar_download(tmp_path, monkeypatch):
    source = tmp_path / "source"
    _write_cifar100(source, train_per_class=1, test_per_class=1)
    archive = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-100-python", arcname="cifar-100-python")
    monkeypatch.setattr(_cifar, "CIFAR100_URL", archive.as_uri())
    monkeypatch.setattr(_cifar, "CIFAR100_SHA256", _sha256(archive.read_bytes()))
    root = tmp_path / "root"
    with pytest.raises(FileNotFoundError, match="download=True"):
        datasets.CIFARFS(root)
    data = datasets.CIFARFS(root, mode="test", download=True)
    assert len(data) == 40 and (root / "cifar-100-python" / "meta").is_file()
    assert _leftovers(root) == []
    assert json.loads(json.dumps(data.class_names)) == data.class_names
