"""What a loader's ``download=True`` fetches: a file as its publisher serves it
(:class:`PublishedFile`) and the fetch-verify-extract step the fine-grained loaders share
(:func:`fetch_and_extract`), on top of ``_download``'s verified transfer and checked extraction."""

from __future__ import annotations

import dataclasses
import os

from ._download import download_file, extract_archive


@dataclasses.dataclass(frozen=True)
class PublishedFile:
    """A file as its publisher serves it: ``url``, the ``name`` it is saved under, its published
    ``sha256`` or ``md5`` hex digest (one is required) and ``size`` in bytes (None: unpublished)."""

    url: str
    name: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None

    def fetch(self, folder: str | os.PathLike) -> str:
        """``download_file`` to ``folder/name`` (verified; a verified copy already there is kept);
        returns that path (str)."""
        path = os.path.join(os.fspath(folder), self.name)
        return download_file(self.url, path, self.sha256, md5=self.md5, size=self.size)


def fetch_and_extract(archive: PublishedFile, root: str | os.PathLike, present: str) -> None:
    """Unless ``root/present`` (a path relative to ``root``, the archive's content) exists:
    ``archive.fetch(root)``, then ``extract_archive`` into ``root`` (members checked, all or
    nothing). The loaders' ``download=True``."""
    root = os.fspath(root)
    if not os.path.exists(os.path.join(root, present)):
        extract_archive(archive.fetch(root), root)
