"""Downloading (through pooch), verifying and safely extracting dataset files.

pooch's downloaders fetch (HTTP(S) through requests with a tqdm bar, FTP, SFTP, DOI; ``file://`` is
copied here). Its ``retrieve`` and its archive processors are not used, being weaker than ours:
``retrieve`` streams into an unlocked ``tmpXXXXXXXX`` file that a killed process leaves behind for
good (ours is locked while written and checked, so a later download removes a dead one and never a
live one), and its extraction writes straight into the destination, rewrites ``..`` and absolute
member names instead of refusing them, and lets a duplicate member overwrite another.

Every writer works in a temporary file or folder beside its target and renames it into place only
once it is complete and checked, so an interrupted run leaves either nothing or the whole.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
import zlib

from tqdm.auto import tqdm

from ...data._files import remove_stale_temporaries, temporary_file

_CHUNK = 1 << 20
# Python < 3.11.4 has no extraction filters; the checks below refuse the same members anyway.
_FILTER_ERROR = getattr(tarfile, "FilterError", ())


class ChecksumError(ValueError):
    """A file's size or digest differs from the published one."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the extraction folder."""


class CorruptArchiveError(OSError):
    """An archive cannot be read to its end (truncated or damaged download), or it lists one
    member twice (which copy is meant is ambiguous: readers would add or overwrite files)."""


def _refuse_duplicates(names: list[str], archive: str | os.PathLike) -> None:
    """Raise ``CorruptArchiveError`` naming ``archive`` and the first member name listed twice."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise CorruptArchiveError(
                f"{os.fspath(archive)}: member {name!r} appears more than once; an archive with "
                "duplicate members is ambiguous (was it appended to?). Delete it and download it again"
            )
        seen.add(name)


def zip_members(archive: zipfile.ZipFile, path: str | os.PathLike) -> list[zipfile.ZipInfo]:
    """The members of an open zip (``infolist()``), refusing a zip that lists a name twice.

    Names are compared after normalisation (``a/./b`` is ``a/b``); folder entries may repeat.
    ``path`` names the archive in the error (``CorruptArchiveError``).

    Example:
        >>> import io, zipfile
        >>> buffer = io.BytesIO()
        >>> with zipfile.ZipFile(buffer, "w") as archive:
        ...     archive.writestr("a.txt", b"1")
        >>> [info.filename for info in zip_members(zipfile.ZipFile(buffer), "a.zip")]
        ['a.txt']
    """
    members = archive.infolist()
    _refuse_duplicates(
        [posixpath.normpath(info.filename.replace("\\", "/")) for info in members if not info.is_dir()], path
    )
    return members


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest (str) of a file's bytes; ``algorithm``: a ``hashlib`` name ("sha256", "md5").

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
        >>> with open(path, "wb") as file:
        ...     _ = file.write(b"abc")
        >>> file_digest(path)[:16], file_digest(path, "md5")[:8]
        ('ba7816bf8f01cfea', '90015098')
    """
    import pooch  # lazily: it imports requests (~0.15 s)

    return pooch.file_hash(os.fspath(path), alg=algorithm)


def zip_content_digest(path: str | os.PathLike, suffix: str = "") -> str:
    """sha256 over the sorted lines ``"<sha256 of member bytes>  <member name>\\n"`` of a zip's files.

    Only members whose name ends with ``suffix`` count (folders never do). Unlike the archive's
    own digest, this does not depend on how the zip was compressed or ordered.

    Example:
        >>> import os, tempfile, zipfile
        >>> path = os.path.join(tempfile.mkdtemp(), "a.zip")
        >>> with zipfile.ZipFile(path, "w") as archive:
        ...     archive.writestr("b.txt", b"2"); archive.writestr("a.txt", b"1")
        >>> len(zip_content_digest(path)), zip_content_digest(path) == zip_content_digest(path, ".txt")
        (64, True)
    """
    lines = []
    with zipfile.ZipFile(path) as archive:
        for info in zip_members(archive, path):
            if info.is_dir() or not info.filename.endswith(suffix):
                continue
            lines.append(f"{hashlib.sha256(archive.read(info)).hexdigest()}  {info.filename}\n")
    lines.sort(key=lambda line: line[66:])
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def verify_file(
    path: str | os.PathLike,
    sha256: str | None = None,
    content_digest: str | None = None,
    *,
    md5: str | None = None,
    content_suffix: str = "",
    size: int | None = None,
) -> bool:
    """Whether ``path`` exists and matches any one of the given digests.

    Args:
        path: the file.
        sha256: expected SHA-256 hex digest of the file's bytes.
        md5: expected MD5 hex digest of the file's bytes.
        content_digest: expected ``zip_content_digest(path, content_suffix)`` (for a zip whose
            members are the published ones but which was compressed differently).
        content_suffix: only zip members whose name ends with it count in ``content_digest``.
        size: expected size in bytes (int), checked first: a cheap refusal of a truncated file.

    Returns:
        True on the first digest that matches; False when none does, the size differs or the
        file is missing.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
        >>> with open(path, "wb") as file:
        ...     _ = file.write(b"abc")
        >>> verify_file(path, md5="900150983cd24fb0d6963f7d28e17f72"), verify_file(path, "0" * 64)
        (True, False)
    """
    if sha256 is None and md5 is None and content_digest is None:
        raise ValueError("verify_file needs at least one of sha256, md5 or content_digest")
    if not os.path.isfile(path) or (size is not None and os.path.getsize(path) != size):
        return False
    if sha256 is not None and file_digest(path, "sha256") == sha256.lower():
        return True
    if md5 is not None and file_digest(path, "md5") == md5.lower():
        return True
    if content_digest is not None:
        try:
            return zip_content_digest(path, content_suffix) == content_digest.lower()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError):
            return False
    return False


def _fetch(url: str, file, progress: bool) -> None:
    """Write the bytes at ``url`` to the open binary ``file``: pooch's downloader for the URL's
    scheme (http, https, ftp, sftp, doi; others raise ValueError), or a copy for ``file://``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        with open(urllib.request.url2pathname(parts.path), "rb") as source:
            shutil.copyfileobj(source, file, _CHUNK)
        return
    import pooch

    if parts.scheme in ("http", "https"):
        # 1 MiB chunks: pooch flushes after each, and its default 1 KiB is slow for GB archives.
        # Some hosts refuse requests' default user agent.
        downloader = pooch.HTTPDownloader(
            progressbar=progress, chunk_size=_CHUNK, headers={"User-Agent": "l2l_multi"}
        )
    else:
        downloader = pooch.downloaders.choose_downloader(url, progressbar=progress)
    downloader(url, file, None)


def download_file(
    url: str,
    path: str | os.PathLike,
    sha256: str | None = None,
    *,
    md5: str | None = None,
    size: int | None = None,
    progress: bool = True,
) -> str:
    """Download ``url`` to ``path`` unless ``path`` already holds the published file.

    The bytes stream into a locked temporary file in ``path``'s folder (pooch's downloader, with a
    tqdm bar) whose size and digest are checked before it is renamed into place; a mismatch or any
    error (Ctrl-C included) deletes it, so ``path`` is either absent or complete and verified.

    Args:
        url: http(s), ftp, sftp, doi or file URL.
        path: where the file goes (its folder is created).
        sha256: the published SHA-256 hex digest (this or ``md5`` is required; it wins over ``md5``).
        md5: the published MD5 hex digest.
        size: the published size in bytes (int), or None.
        progress: show a progress bar.

    Returns:
        ``path`` as a string. A file already there that verifies is kept: nothing is fetched.

    Raises:
        ChecksumError: the downloaded bytes have another size or digest (message: file, expected,
            actual).

    Example:
        >>> import os, pathlib, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> source = pathlib.Path(folder, "source.txt"); _ = source.write_bytes(b"abc")
        >>> target = download_file(source.as_uri(), os.path.join(folder, "copy.txt"),
        ...                        md5="900150983cd24fb0d6963f7d28e17f72", progress=False)
        >>> open(target, "rb").read()
        b'abc'
    """
    if sha256 is None and md5 is None:
        raise ValueError(f"download_file({url!r}) needs sha256= or md5= to verify what it downloads")
    path = os.fspath(path)
    if verify_file(path, sha256, md5=md5, size=size):
        return path
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(folder, f".{name}.*.part")  # left by killed downloads of this file
    algorithm, expected = ("sha256", sha256) if sha256 is not None else ("md5", md5)
    handle, temporary = temporary_file(folder, name)
    try:
        with os.fdopen(handle, "w+b") as file:  # keeps the lock until the bytes are verified
            _fetch(url, file, progress)
            file.flush()
            received = os.fstat(file.fileno()).st_size
            if size is not None and received != size:
                raise ChecksumError(
                    f"downloaded {url} for {path} has {received} bytes, expected {size} "
                    "(truncated?); the download was deleted (retry)"
                )
            actual = file_digest(temporary, algorithm)
            if actual != expected.lower():
                raise ChecksumError(
                    f"downloaded {url} for {path} has {algorithm} {actual}, expected {expected}; "
                    "the download was deleted (retry, or check the URL)"
                )
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def _member_target(name: str, archive: str) -> str:
    """The normalised relative path of a member, refusing any that leaves the extraction folder."""
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    normal = posixpath.normpath(cleaned)
    if normal == ".." or normal.startswith("../") or "/../" in f"/{cleaned}/":
        raise UnsafeArchiveError(f"{archive}: member {name!r} uses '..'; refusing to extract")
    return normal


def _check_link(name: str, link: str, archive: str, hard: bool) -> None:
    """Refuse a link whose target resolves outside the extraction folder."""
    if link.startswith("/") or (len(link) > 1 and link[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} links to absolute path {link!r}; refusing")
    # A symlink resolves from its own folder; a tar hard link names a path from the archive root.
    base = "" if hard else posixpath.dirname(posixpath.normpath(name))
    resolved = posixpath.normpath(posixpath.join(base, link))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} links outside the archive ({link!r}); refusing")


def _corrupt(archive: str, error: BaseException) -> CorruptArchiveError:
    return CorruptArchiveError(
        f"{archive} is corrupt or truncated ({type(error).__name__}: {error}); delete it and download "
        "it again"
    )


def _extract_zip(archive: str, folder: str, progress: bool) -> None:
    with zipfile.ZipFile(archive) as source:
        members = zip_members(source, archive)
        for info in members:
            _member_target(info.filename, archive)
            if stat.S_ISLNK(info.external_attr >> 16):
                # zipfile writes a link as a file holding its target; still refuse escaping ones.
                _check_link(info.filename, source.read(info).decode("utf-8", "replace"), archive, False)
        for info in tqdm(
            members, desc=f"extracting {os.path.basename(archive)}", unit="file", disable=not progress
        ):
            source.extract(info, folder)


def _extract_tar(archive: str, folder: str, progress: bool) -> None:
    with tarfile.open(archive) as source:
        members = source.getmembers()  # reads to the end, so truncation shows up before writing
        # tar lets a later member silently replace an earlier one of the same name
        _refuse_duplicates(
            [posixpath.normpath(member.name) for member in members if not member.isdir()], archive
        )
        for member in members:
            _member_target(member.name, archive)
            if member.issym() or member.islnk():
                _check_link(member.name, member.linkname, archive, member.islnk())
            elif not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(
                    f"{archive}: member {member.name!r} is a device or fifo; refusing to extract"
                )
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        for member in tqdm(
            members, desc=f"extracting {os.path.basename(archive)}", unit="file", disable=not progress
        ):
            source.extract(member, folder, **safe)


def extract_archive(
    archive: str | os.PathLike, destination: str | os.PathLike, progress: bool = True
) -> list[str]:
    """Extract a zip or tar (optionally gzip/bz2/xz compressed) archive into ``destination``.

    Every member is checked before anything is written: absolute paths, ``..`` and links that
    point outside are refused (``UnsafeArchiveError`` naming the member). Members are extracted
    into a hidden temporary folder inside ``destination``; only when all succeeded are the
    archive's top-level entries renamed into ``destination``.

    Args:
        archive: the ``.zip`` / ``.tar`` / ``.tar.gz`` / ``.tgz`` file.
        destination: the folder receiving the archive's top-level entries (created if missing).
        progress: show a tqdm bar over members.

    Returns:
        The paths of the top-level entries created in ``destination``.

    Raises:
        FileExistsError: a top-level entry already exists in ``destination`` (nothing is changed).
        CorruptArchiveError: the archive is truncated or damaged (nothing is left behind).

    Example:
        >>> import os, tempfile, zipfile
        >>> folder = tempfile.mkdtemp()
        >>> with zipfile.ZipFile(os.path.join(folder, "a.zip"), "w") as archive:
        ...     archive.writestr("top/b.txt", b"hi")
        >>> made = extract_archive(os.path.join(folder, "a.zip"), os.path.join(folder, "out"), progress=False)
        >>> [os.path.relpath(path, folder) for path in made], sorted(os.listdir(os.path.join(folder, "out")))
        (['out/top'], ['top'])
    """
    archive, destination = os.fspath(archive), os.fspath(destination)
    if not os.path.isfile(archive):
        raise FileNotFoundError(f"archive {archive!r} does not exist")
    os.makedirs(destination, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f".{os.path.basename(archive)}.", suffix=".partial", dir=destination)
    try:
        try:
            if zipfile.is_zipfile(archive):
                _extract_zip(archive, temporary, progress)
            else:
                _extract_tar(archive, temporary, progress)
        except (zipfile.BadZipFile, tarfile.ReadError, zlib.error, EOFError) as error:
            raise _corrupt(archive, error) from error
        except _FILTER_ERROR as error:
            raise UnsafeArchiveError(f"{archive}: {error}; refusing to extract") from error
        entries = sorted(os.listdir(temporary))
        clashes = [entry for entry in entries if os.path.lexists(os.path.join(destination, entry))]
        if clashes:
            raise FileExistsError(
                f"extracting {archive} into {destination}: {clashes[0]!r} already exists there; "
                "remove it to extract again"
            )
        made = []
        for entry in entries:
            os.replace(os.path.join(temporary, entry), os.path.join(destination, entry))
            made.append(os.path.join(destination, entry))
        return made
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
