"""Downloads over real HTTP (a local server on 127.0.0.1, no network): checksums refused, caching,
interrupted transfers, and the Fungi and Quickdraw loaders end to end in their published formats."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from l2l_multi.data._files import STALE_AFTER_SECONDS
from l2l_multi.vision import datasets
from l2l_multi.vision.datasets import _aircraft, _cub, _dtd, _fungi, _quickdraw, _vgg_flower


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Server:
    """Serves ``files`` (name -> bytes) over HTTP; records each GET. A name in ``stall`` gets its
    full Content-Length but only half its bytes, then the connection hangs until ``release``."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.stall: set[str] = set()
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                name = urllib.parse.unquote(self.path.lstrip("/"))
                server.requests.append(name)
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in server.stall:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    server.release.wait(30)
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    serving = _Server()
    yield serving
    serving.close()


def _leftovers(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


def test_good_download_is_cached_and_not_fetched_again(server, tmp_path):
    payload = os.urandom(3 << 20)  # several 1 MiB chunks
    server.files["a.bin"] = payload
    target = tmp_path / "a.bin"
    assert datasets.download_file(
        server.url("a.bin"), target, _sha256(payload), size=len(payload), progress=False
    ) == str(target)
    assert target.read_bytes() == payload
    datasets.download_file(server.url("a.bin"), target, _sha256(payload), progress=False)
    assert server.requests == ["a.bin"] and _leftovers(tmp_path) == []


@pytest.mark.parametrize("digest", ["sha256", "md5", "size"])
def test_checksum_mismatch_is_refused_and_leaves_nothing(server, tmp_path, digest):
    server.files["a.bin"] = b"tampered bytes"
    published = b"published bytes"
    target = tmp_path / "a.bin"
    expected = {
        "sha256": {"sha256": _sha256(published)},
        "md5": {"md5": hashlib.md5(published).hexdigest()},
        "size": {"sha256": _sha256(b"tampered bytes"), "size": 99},
    }[digest]
    with pytest.raises(datasets.ChecksumError) as info:
        datasets.download_file(server.url("a.bin"), target, progress=False, **expected)
    message = str(info.value)
    assert server.url("a.bin") in message and str(target) in message and "deleted" in message
    assert ("99" in message) if digest == "size" else (next(iter(expected.values())) in message)
    assert os.listdir(tmp_path) == []


def test_wrong_file_in_place_is_not_trusted(server, tmp_path):
    payload = b"the published file"
    server.files["a.bin"] = payload
    target = tmp_path / "a.bin"
    target.write_bytes(payload[:5])  # e.g. a copy cut short
    datasets.download_file(server.url("a.bin"), target, _sha256(payload), progress=False)
    assert target.read_bytes() == payload and server.requests == ["a.bin"]


def test_interrupted_transfer_leaves_no_file(server, tmp_path):
    server.files["a.bin"] = os.urandom(1 << 16)
    server.stall.add("a.bin")
    target = tmp_path / "a.bin"
    threading.Timer(0.5, server.release.set).start()  # the server then closes the connection early
    with pytest.raises(Exception) as info:  # requests' ChunkedEncodingError (an IOError)
        datasets.download_file(server.url("a.bin"), target, "0" * 64, progress=False)
    assert isinstance(info.value, OSError), repr(info.value)
    assert os.listdir(tmp_path) == []


def test_killed_download_is_cleaned_up_and_never_trusted(server, tmp_path):
    payload = os.urandom(3 << 20)  # half of it (past the downloader's 1 MiB chunk) reaches the disk
    server.files["a.bin"] = payload
    server.stall.add("a.bin")
    target = tmp_path / "a.bin"
    code = (
        "import sys; from l2l_multi.vision.datasets import download_file\n"
        "download_file(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, server.url("a.bin"), str(target), _sha256(payload)])
    try:
        deadline = time.monotonic() + 60
        while not any(os.path.getsize(tmp_path / name) for name in _leftovers(tmp_path)):
            assert time.monotonic() < deadline and child.poll() is None, "the child never started writing"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    (partial,) = _leftovers(tmp_path)
    assert partial.startswith(".a.bin.") and partial.endswith(".part") and not target.exists()
    aged = time.time() - STALE_AFTER_SECONDS - 5
    os.utime(tmp_path / partial, (aged, aged))
    server.stall.clear()
    datasets.download_file(server.url("a.bin"), target, _sha256(payload), progress=False)
    assert target.read_bytes() == payload and _leftovers(tmp_path) == []


# -- the loaders whose downloads were unverified before: published formats, served over HTTP --------
def _tgz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _jpeg(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), (value, 0, 0)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_fungi_download_end_to_end(server, tmp_path, monkeypatch):
    species = ["Amanita muscaria", "Boletus edulis", "Cantharellus cibarius"]
    images = {f"images/{name}/{index}.jpg": _jpeg(40 * index) for index, name in enumerate(species)}
    listing = {
        "images": [{"id": index, "file_name": path} for index, path in enumerate(images)],
        "annotations": [{"image_id": index, "category_id": 10 + index} for index in range(3)],
        "categories": [{"id": 10 + index, "name": name} for index, name in enumerate(species)],
    }
    half = {key: value[:2] if key != "categories" else value for key, value in listing.items()}
    rest = {key: value[2:] if key != "categories" else value for key, value in listing.items()}
    archives = {
        "fungi_train_val.tgz": _tgz(images),
        "train_val_annotations.tgz": _tgz(
            {"train.json": json.dumps(half).encode(), "val.json": json.dumps(rest).encode()}
        ),
    }
    server.files.update(archives)

    def served(published, md5):  # the published file as the local server serves it
        return dataclasses.replace(published, url=server.url(published.name), md5=md5)

    monkeypatch.setattr(
        _fungi, "_DATA", served(_fungi._DATA, hashlib.md5(archives["fungi_train_val.tgz"]).hexdigest())
    )
    changed = served(_fungi._ANNOTATIONS, "0" * 32)  # a changed upstream file
    monkeypatch.setattr(_fungi, "_ANNOTATIONS", changed)
    root = tmp_path / "fungi"
    with pytest.raises(datasets.ChecksumError, match="train_val_annotations.tgz has md5"):
        datasets.FGVCFungi(root, mode="all", download=True, image_size=8, cache_dir=tmp_path / "cache")
    assert sorted(os.listdir(root)) == ["fungi_train_val.tgz", "images"]  # the verified one only
    monkeypatch.setattr(
        _fungi,
        "_ANNOTATIONS",
        served(_fungi._ANNOTATIONS, hashlib.md5(archives["train_val_annotations.tgz"]).hexdigest()),
    )
    data = datasets.FGVCFungi(root, mode="all", download=True, image_size=8, cache_dir=tmp_path / "cache")
    assert data.class_names == [f"{10 + index:04d}.{name}" for index, name in enumerate(species)]
    assert data.inputs.shape == (3, 8, 8, 3) and data.targets.tolist() == [0, 1, 2]
    assert server.requests == [
        "fungi_train_val.tgz",
        "train_val_annotations.tgz",
        "train_val_annotations.tgz",
    ]


# the loaders that fetch one archive: (name in LOADERS of test_vision_datasets_more, module,
# attribute holding the archive, where its content goes below the root)
ARCHIVE_LOADERS = {
    "aircraft": (_aircraft, "_ARCHIVE", "fgvc-aircraft-2013b"),
    "cub": (_cub, "_ARCHIVE", "CUB_200_2011"),
    "dtd": (_dtd, "_ARCHIVE", "dtd"),
    "vgg-flower": (_vgg_flower, "_IMAGES", "jpg"),
}


@pytest.mark.parametrize("name", sorted(ARCHIVE_LOADERS))
def test_a_loaders_archive_is_verified_then_extracted(name, server, tmp_path, monkeypatch):
    """``download=True`` on an empty root: the archive (built from the loader test's files in
    the published layout, its sha256 or md5 given) is fetched, verified and extracted, and the
    loader reads it; a changed upstream archive is refused with nothing extracted."""
    from test_vision_datasets_more import CLASSES, LOADERS, PER_CLASS

    module, attribute, content = ARCHIVE_LOADERS[name]
    loader, write = LOADERS[name]
    staging = tmp_path / "staging"
    write(staging)
    members = {}
    for folder, _, files in os.walk(staging):
        for file in files:
            path = os.path.join(folder, file)
            with open(path, "rb") as stream:
                members[os.path.relpath(path, staging)] = stream.read()
    published = getattr(module, attribute)
    archive = _tgz({member: data for member, data in members.items() if member.startswith(content)})
    server.files[published.name] = archive
    digest = {"md5": hashlib.md5(archive).hexdigest()} if published.md5 else {"sha256": _sha256(archive)}
    served = dataclasses.replace(published, url=server.url(published.name), size=len(archive), **digest)
    root = tmp_path / "root"
    for member, data in members.items():  # the files beside the archive (VGG's label file)
        if not member.startswith(content):
            (root / member).parent.mkdir(parents=True, exist_ok=True)
            (root / member).write_bytes(data)
    wrong = "0" * len(published.md5 or published.sha256)
    monkeypatch.setattr(module, attribute, dataclasses.replace(served, **{next(iter(digest)): wrong}))
    with pytest.raises(datasets.ChecksumError):
        loader(root, mode="all", download=True, image_size=8, cache_dir=tmp_path / "cache")
    assert not os.path.exists(root / content) and not os.path.exists(root / published.name)
    monkeypatch.setattr(module, attribute, served)
    data = loader(root, mode="all", download=True, image_size=8, cache_dir=tmp_path / "cache")
    assert data.inputs.shape == (CLASSES * PER_CLASS, 8, 8, 3) and len(data.class_names) == CLASSES
    assert (root / published.name).is_file() and server.requests == [published.name, published.name]
    loader(root, mode="all", download=True, image_size=8, cache_dir=tmp_path / "cache")  # extracted
    assert server.requests == [published.name, published.name]  # nothing fetched again


def test_quickdraw_download_checks_the_manifest(server, tmp_path, monkeypatch):
    published = _quickdraw.published_files()
    assert len(published) == 345 and all(len(sha) == 64 for _, sha in published.values())
    names = ["The Eiffel Tower", "cat", "zigzag"]
    rng = np.random.default_rng(0)
    files = {}
    for index, name in enumerate(names):
        buffer = io.BytesIO()
        np.save(buffer, rng.integers(0, 256, (4 + index, 784), dtype=np.uint8))
        files[name] = buffer.getvalue()
        server.files[f"{name}.npy"] = files[name]
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text(
        "# test manifest\n"
        + "".join(
            f"{name}\t{len(data)}\t{_sha256(data if name != 'cat' else b'other')}\n"
            for name, data in files.items()
        )
    )
    monkeypatch.setattr(_quickdraw, "_MANIFEST", str(manifest))
    monkeypatch.setattr(_quickdraw, "_BITMAP_URL", server.url("{}.npy"))
    root = tmp_path / "quickdraw"
    with pytest.raises(datasets.ChecksumError, match="cat.npy has sha256"):
        datasets.Quickdraw(root, mode="all", download=True)
    assert sorted(os.listdir(root)) == ["The Eiffel Tower.npy"]
    manifest.write_text("".join(f"{name}\t{len(data)}\t{_sha256(data)}\n" for name, data in files.items()))
    data = datasets.Quickdraw(root, mode="all", download=True)
    assert data.class_names == names and len(data) == 4 + 5 + 6
    assert server.requests == ["The Eiffel Tower.npy", "cat.npy", "cat.npy", "zigzag.npy"]
    image, label = data[4]
    assert image.shape == (28, 28) and label == 1
