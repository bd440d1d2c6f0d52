"""Fine-grained vision loaders, Quickdraw and NewsClassification on tiny files in the real formats."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from l2l_multi.text.datasets import NewsClassification
from l2l_multi.vision.datasets import _fine_grained
from l2l_multi.vision.datasets._aircraft import FGVCAircraft
from l2l_multi.vision.datasets._cub import CUBirds200
from l2l_multi.vision.datasets._dtd import DescribableTextures
from l2l_multi.vision.datasets._fine_grained import meta_dataset_split
from l2l_multi.vision.datasets._fungi import FGVCFungi
from l2l_multi.vision.datasets._quickdraw import Quickdraw
from l2l_multi.vision.datasets._vgg_flower import VGGFlower102

MODES = ("train", "validation", "test")
CLASSES, PER_CLASS = 4, 2


def _jpeg(path, shade, size=(40, 30)):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, (shade, 255 - shade, 7)).save(path, "JPEG")


def _write_cub(root):
    folder = root / "CUB_200_2011"
    names = [f"{index:03d}.Bird_{index}" for index in range(1, CLASSES + 1)]
    images, labels = [], []
    for index, name in enumerate(names, 1):
        for shot in range(PER_CLASS):
            relative = f"{name}/Bird_{index}_{shot:04d}.jpg"
            _jpeg(str(folder / "images" / relative), 40 * index)
            images.append(relative)
            labels.append(index)
    (folder / "classes.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(names, 1)))
    (folder / "images.txt").write_text("".join(f"{i} {p}\n" for i, p in enumerate(images, 1)))
    (folder / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(labels, 1)))
    return folder / "images.txt"


def _write_vgg(root):
    from scipy.io import savemat

    labels = np.repeat(np.arange(1, CLASSES + 1), PER_CLASS)[::-1].copy()  # not sorted, as in the release
    for number, label in enumerate(labels, 1):
        _jpeg(str(root / "jpg" / f"image_{number:05d}.jpg"), 40 * int(label))
    savemat(str(root / "imagelabels.mat"), {"labels": labels.reshape(1, -1).astype(np.uint8)})
    return root / "imagelabels.mat"


def _write_aircraft(root):
    data = root / "fgvc-aircraft-2013b" / "data"
    variants = ["A340-300", "F/A-18", "Boeing 717", "737-400"][:CLASSES]
    trainval, test = [], []
    for index, variant in enumerate(variants):
        for shot in range(PER_CLASS):
            image = f"{1000000 + 10 * index + shot}"
            _jpeg(str(data / "images" / f"{image}.jpg"), 40 * index + 20, size=(50, 60))
            (trainval if shot == 0 else test).append(f"{image} {variant}\n")
    (data / "variants.txt").write_text("".join(f"{v}\n" for v in variants))
    (data / "images_variant_trainval.txt").write_text("".join(trainval))
    (data / "images_variant_test.txt").write_text("".join(test))
    return data / "variants.txt"


def _write_fungi(root):
    image_id = 0
    for part, shots in (("train.json", range(PER_CLASS - 1)), ("val.json", range(PER_CLASS - 1, PER_CLASS))):
        content = {
            "images": [],
            "annotations": [],
            "categories": [
                {"id": c, "name": f"Fungus {c}", "supercategory": "Fungi"} for c in range(CLASSES)
            ],
        }
        for category in range(CLASSES):
            for shot in shots:
                name = f"images/{category:05d}_Fungus_{category}/F{category}_{shot}.JPG"
                _jpeg(str(root / name), 40 * category + 20)
                content["images"].append({"id": image_id, "file_name": name, "width": 40, "height": 30})
                content["annotations"].append({"id": image_id, "image_id": image_id, "category_id": category})
                image_id += 1
        (root / part).write_text(json.dumps(content))
    return root / "train.json"


def _write_dtd(root):
    for index, name in enumerate(["banded", "bumpy", "grid", "woven"][:CLASSES]):
        for shot in range(PER_CLASS):
            _jpeg(str(root / "dtd" / "images" / name / f"{name}_{shot:04d}.jpg"), 40 * index + 20)
        (root / "dtd" / "images" / name / ".directory").write_text("[Dolphin]\n")
    return root / "dtd" / "images"


LOADERS = {
    "cub": (CUBirds200, _write_cub),
    "vgg-flower": (VGGFlower102, _write_vgg),
    "aircraft": (FGVCAircraft, _write_aircraft),
    "fungi": (FGVCFungi, _write_fungi),
    "dtd": (DescribableTextures, _write_dtd),
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_fine_grained_loader(name, tmp_path, monkeypatch):
    cls, write = LOADERS[name]
    write(tmp_path)
    decoded = []
    original = _fine_grained._decode_image
    monkeypatch.setattr(_fine_grained, "_decode_image", lambda *a: decoded.append(a[0]) or original(*a))
    parts = {mode: cls(tmp_path, mode=mode, image_size=16) for mode in MODES}
    total = sum(len(part) for part in parts.values())
    assert total == CLASSES * PER_CLASS and len(decoded) == total
    names = [set(part.class_names) for part in parts.values()]
    assert all(names) and sum(map(len, names)) == CLASSES and len(set.union(*names)) == CLASSES
    for part in parts.values():
        assert part.inputs.shape == (len(part), 16, 16, 3) and part.inputs.dtype == np.uint8
        assert part.targets.dtype == np.int64
        assert sorted(set(part.targets.tolist())) == list(range(len(part.class_names)))
        assert np.bincount(part.targets).tolist() == [PER_CLASS] * len(part.class_names)
        assert part.supports_batches and part.get_batch(np.array([0]))[0].shape == (1, 16, 16, 3)
    everything = cls(tmp_path, mode="all", image_size=16, transform=lambda image: image.mean())
    assert len(everything) == total and not everything.supports_batches
    assert isinstance(everything[0][0], np.floating)
    # Second construction of every split reads the cache: nothing is decoded again.
    decoded.clear()
    again = cls(tmp_path, mode="train", image_size=16)
    assert decoded == [] and np.array_equal(again.inputs, parts["train"].inputs)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_fine_grained_missing_files(name, tmp_path):
    cls, write = LOADERS[name]
    with pytest.raises(FileNotFoundError, match="download=True"):
        cls(tmp_path)
    metadata = write(tmp_path)
    if os.path.isdir(metadata):
        return
    os.remove(metadata)
    with pytest.raises(FileNotFoundError, match=os.path.basename(str(metadata))):
        cls(tmp_path)


def test_fine_grained_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="mode must be one of"):
        CUBirds200(tmp_path, mode="training")
    with pytest.raises(ValueError, match="image_size"):
        DescribableTextures(tmp_path, image_size=0)


def test_aircraft_banner_is_cropped(tmp_path):
    from PIL import Image

    _write_aircraft(tmp_path)
    image = tmp_path / "fgvc-aircraft-2013b" / "data" / "images" / "1000000.jpg"
    pixels = np.zeros((60, 50, 3), np.uint8)
    pixels[-20:] = 255  # a white banner: gone after cropping
    Image.fromarray(pixels).save(image, format="PNG")
    data = FGVCAircraft(tmp_path, mode="all", image_size=8, cache_dir=tmp_path / "cache")
    assert data.inputs[0].max() < 40


def test_meta_dataset_splits_match_published_lists():
    cub = meta_dataset_split(140, 30, 30)
    assert (cub["test"] + 1).tolist()[:10] == [8, 9, 15, 20, 28, 30, 35, 39, 45, 46]
    assert (cub["validation"] + 1).tolist()[-3:] == [198, 199, 200]
    flowers = meta_dataset_split(71, 15, 16)
    assert (flowers["validation"] + 1).tolist() == [
        10,
        16,
        17,
        23,
        26,
        47,
        53,
        56,
        57,
        62,
        82,
        83,
        86,
        97,
        102,
    ]
    assert meta_dataset_split(33, 7, 7)["test"].tolist() == [0, 4, 8, 20, 36, 38, 44]
    assert 225 in meta_dataset_split(994, 200, 200)["train"]  # learn2learn's '0226.Cortinarius malicorius'
    for counts in ((140, 30, 30), (70, 15, 15), (241, 52, 52), (994, 200, 200)):
        split = meta_dataset_split(*counts)
        assert [len(split[mode]) for mode in MODES] == list(counts)
        assert len(np.unique(np.concatenate(list(split.values())))) == sum(counts)


def _write_quickdraw(root, counts=(5, 6, 7, 8)):
    rng = np.random.default_rng(0)
    names = ["The Eiffel Tower", "angel", "axe", "zigzag"]
    for name, count in zip(names, counts):
        np.save(root / f"{name}.npy", rng.integers(0, 256, (count, 784), dtype=np.uint8))
    return names


def test_quickdraw(tmp_path):
    _write_quickdraw(tmp_path)
    parts = {mode: Quickdraw(tmp_path, mode=mode) for mode in MODES}
    assert sum(len(part) for part in parts.values()) == 26
    names = [set(part.class_names) for part in parts.values()]
    assert len(set.union(*names)) == 4 and sum(map(len, names)) == 4
    train = parts["train"]
    assert isinstance(train._arrays[0], np.memmap)  # not loaded
    image, label = train[len(train) - 1]
    assert image.shape == (28, 28) and image.dtype == np.uint8 and label == train.num_classes - 1
    source = np.load(tmp_path / f"{train.class_names[-1]}.npy")
    assert np.array_equal(image, source[-1].reshape(28, 28))
    batch, labels = train.get_batch(np.array([0, len(train) - 1]))
    assert batch.shape == (2, 28, 28) and labels.dtype == np.int64
    assert np.array_equal(train.inputs[len(train) - 1], image)
    small = Quickdraw(tmp_path, mode="all", samples_per_class=3, seed=1)
    assert len(small) == 12 and np.bincount(small.targets).tolist() == [3, 3, 3, 3]
    with pytest.raises(ValueError, match="samples_per_class"):
        Quickdraw(tmp_path, mode="all", samples_per_class=50)


def test_quickdraw_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        Quickdraw(tmp_path / "absent")
    _write_quickdraw(tmp_path)
    np.save(tmp_path / "bad.npy", np.zeros((2, 10), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        Quickdraw(tmp_path, mode="all")


def _write_news(root, categories=6, per_category=3):
    lines = []
    for category in range(categories):
        for index in range(per_category):
            lines.append(
                json.dumps(
                    {
                        "category": f"TOPIC {category}",
                        "headline": f"Headline {category}.{index}",
                        "authors": "",
                        "link": "https://example.org",
                        "short_description": "" if index == 0 else f"About {category}",
                        "date": "2018-05-26",
                    }
                )
            )
    (root / "News_Category_Dataset_v2.json").write_text("\n".join(lines) + "\n")


def test_news_classification(tmp_path):
    _write_news(tmp_path)
    parts = {mode: NewsClassification(tmp_path, mode=mode) for mode in MODES}
    assert sum(len(part) for part in parts.values()) == 18
    names = [set(part.class_names) for part in parts.values()]
    assert len(set.union(*names)) == 6 and sum(map(len, names)) == 6
    text, label = parts["train"][1]
    assert isinstance(text, str) and text.startswith("Headline") and label.dtype == np.int64
    everything = NewsClassification(tmp_path, mode="all", transform=len)
    first = everything.class_names.index("TOPIC 0")
    assert set(everything.data[everything.targets == first]) == {
        "Headline 0.0",
        "Headline 0.1 About 0",
        "Headline 0.2 About 0",
    }
    assert isinstance(everything[0][0], int) and not everything.supports_batches


def test_news_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        NewsClassification(tmp_path)
    with pytest.raises(FileNotFoundError, match="kaggle"):
        NewsClassification(tmp_path, download=True)
    (tmp_path / "News_Category_Dataset_v2.json").write_text('{"headline": "no category"}\n')
    with pytest.raises(ValueError, match="category"):
        NewsClassification(tmp_path)
