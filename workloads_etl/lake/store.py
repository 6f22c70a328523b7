"""Where the raw landing and the lake live: a local directory, or a prefix of an S3-API store.

``WORKLOADS_ETL_LAKE_URL`` names it: ``s3://bucket/prefix`` (any S3-API store; endpoint and
credentials come from the standard AWS variables, ``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``... read by botocore itself, never by this code and never logged), or
``file:///path``; unset, the data directory. The raw landing is ``<url>/raw``, the lake
``<url>/lake``.

A :class:`Store` is one such root. Everything the lake does to its files goes through it,
with one guarantee whatever the backend: **a file appears whole or not at all**, under its
final name.

- on a local disk the bytes go to ``.<name>.<pid>.tmp`` beside the final place, are
  fsynced, and renamed over it (the directory fsynced after);
- on an object store a PUT (or a multipart upload, completed only on a successful close) is
  atomic by itself: readers see the previous object or the new one. A write that fails is
  aborted, so no partial object is ever published. The store needs no rename, which S3
  does not have.

Paths given to a store are relative to its root and ``/``-separated. The backend is
fsspec's (s3fs for ``s3://``); readers outside this package open the same URLs
(:meth:`Store.uri`) with DuckDB (:meth:`Store.register_with`), pandas, polars or pyarrow.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urlsplit

import fsspec

LOCAL = "file"
REMOTE_SCHEMES = ("s3",)
# Bytes buffered per part of a multipart upload (s3fs' default is 50 MB): bounds the memory
# a raw run's writer holds.
UPLOAD_BLOCK_BYTES = 8 * 1024 * 1024


class StoreError(ValueError):
    """A lake URL that cannot be used; the message says why (never with credentials)."""


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (best effort where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_url(url: str) -> str:
    """``url`` if it names a usable root (``s3://bucket[/prefix]`` or ``file:///path``);
    raises :class:`StoreError` otherwise. Credentials in the URL are refused, and the
    message never repeats them."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in (LOCAL, *REMOTE_SCHEMES):
        raise StoreError(
            f"WORKLOADS_ETL_LAKE_URL: unsupported scheme {scheme or '(none)'!r}; "
            "use s3://bucket/prefix or file:///path"
        )
    if parts.username or parts.password or "@" in parts.netloc:
        raise StoreError(
            "WORKLOADS_ETL_LAKE_URL must not carry credentials; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or a profile or role) instead"
        )
    if parts.query or parts.fragment:
        raise StoreError("WORKLOADS_ETL_LAKE_URL: no query or fragment is accepted")
    if scheme in REMOTE_SCHEMES and not parts.netloc:
        raise StoreError(f"WORKLOADS_ETL_LAKE_URL: {scheme}:// needs a bucket: {scheme}://bucket")
    if scheme == LOCAL and (parts.netloc not in ("", "localhost") or not parts.path):
        raise StoreError("WORKLOADS_ETL_LAKE_URL: a local lake is file:///absolute/path")
    return url


@functools.cache
def _filesystem(scheme: str) -> fsspec.AbstractFileSystem:
    """One filesystem per scheme and process; no listing cache, so a manifest written by
    another process is seen at once."""
    if scheme == LOCAL:
        return fsspec.filesystem("file")
    return fsspec.filesystem(
        scheme, use_listings_cache=False, default_block_size=UPLOAD_BLOCK_BYTES
    )


@dataclass(frozen=True)
class Entry:
    """A file of a store: its path relative to the store's root, size and modification time."""

    path: str
    size: int
    modified: float  # POSIX seconds


@dataclass(frozen=True)
class Store:
    """A root directory of files on a local disk or an object store (see the module).

    Only the URL is state: a store pickles to another process as its URL."""

    url: str

    @classmethod
    def at(cls, location: Store | Path | str) -> Store:
        """A store for a :class:`Store`, a local path, or a URL."""
        if isinstance(location, Store):
            return location
        text = str(location)
        if "://" in text:
            check_url(text)
            return cls(text.rstrip("/"))
        return cls(Path(text).expanduser().resolve().as_uri())

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme.lower()

    @property
    def is_local(self) -> bool:
        return self.scheme == LOCAL

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return _filesystem(self.scheme)

    @property
    def root(self) -> str:
        """The root as the filesystem names it (``bucket/prefix``, or ``/abs/dir``)."""
        parts = urlsplit(self.url)
        if self.is_local:
            return parts.path.rstrip("/") or "/"
        return f"{parts.netloc}{parts.path}".rstrip("/")

    @property
    def directory(self) -> Path:
        """The local directory of a local store; a :class:`StoreError` for an object store."""
        if not self.is_local:
            raise StoreError(f"{self.url} is not a local directory")
        return Path(self.root)

    def child(self, name: str) -> Store:
        return Store(f"{self.url}/{_relative(name)}")

    def full(self, path: str) -> str:
        """``path`` (relative to the root) as the filesystem names it."""
        return f"{self.root.rstrip('/')}/{_relative(path)}"

    def uri(self, path: str) -> str:
        """``path`` as a reader opens it: a local path, or ``s3://bucket/...``."""
        full = self.full(path)
        return full if self.is_local else f"{self.scheme}://{full}"

    def __str__(self) -> str:
        return self.root if self.is_local else self.url

    # -- reading -------------------------------------------------------------------------

    def open(self, path: str) -> IO[bytes]:
        """The file, opened for reading (raises :class:`FileNotFoundError` when absent)."""
        if self.is_local:
            return open(self.full(path), "rb")  # the caller closes it
        return self.fs.open(self.full(path), "rb")

    def read_bytes(self, path: str) -> bytes:
        with self.open(path) as f:
            return f.read()

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(self.full(path)))

    def size(self, path: str) -> int | None:
        """The file's size, or None when it does not exist."""
        try:
            info = self.fs.info(self.full(path))
        except FileNotFoundError:
            return None
        return int(info["size"]) if info.get("type") == "file" else None

    def list(self, prefix: str = "", suffix: str = "") -> list[Entry]:
        """Every file under ``prefix`` (recursively) whose name ends with ``suffix``."""
        base = self.full(prefix) if prefix else self.root
        try:
            found: dict[str, Any] = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return []
        root = self.root.rstrip("/") + "/"
        out = []
        for name, info in found.items():
            rel = name[len(root) :] if name.startswith(root) else name
            if info.get("type") != "file" or not rel.endswith(suffix):
                continue
            out.append(Entry(rel, int(info.get("size") or 0), _modified(info)))
        return sorted(out, key=lambda e: e.path)

    # -- writing -------------------------------------------------------------------------

    def write_bytes(self, path: str, data: bytes) -> None:
        """Publish ``data`` as ``path``, whole or not at all (see the module)."""
        with self.writer(path) as f:
            f.write(data)

    @contextlib.contextmanager
    def writer(self, path: str) -> Iterator[IO[bytes]]:
        """A file to write ``path`` through: published when the block ends without an
        exception, never otherwise."""
        full = self.full(path)
        if not self.is_local:
            f = self.fs.open(full, "wb")
            try:
                yield f
            except BaseException:
                f.discard()  # aborts the upload: nothing is published
                f.closed = True  # and closing it later (its finaliser) publishes nothing
                raise
            f.close()
            return
        final = Path(full)
        created = _make_dirs(final.parent)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(final.parent)
        for directory in created:  # the new directories' entries, deepest first
            fsync_dir(directory.parent)

    def delete(self, path: str) -> None:
        """Remove the file if it exists."""
        if self.is_local:
            Path(self.full(path)).unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.full(path))

    def register_with(self, con: Any) -> None:
        """Let a DuckDB connection read this store's URLs (an object store goes through
        fsspec: DuckDB's own S3 extension is not needed)."""
        if not self.is_local:
            con.register_filesystem(self.fs)


def _make_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; return those created, deepest first."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
    return missing


def _relative(path: str) -> str:
    rel = PurePosixPath(path)
    if not rel.parts or rel.is_absolute() or ".." in rel.parts:
        raise StoreError(f"not a path inside the store: {path!r}")
    return rel.as_posix()


def _modified(info: dict[str, Any]) -> float:
    """A listing's modification time, local (mtime) or object store (LastModified)."""
    value = info.get("mtime", info.get("LastModified", info.get("last_modified")))
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float):
        return float(value)
    return 0.0
