"""File operations on the lake and the landing folder, from Python, for local paths and `gs://`.

Spark reads and writes the tables; everything else (listing input files, reading a file's head,
mirroring a table's Delta log, the open state's cells files) goes through pyarrow's filesystems
here. That keeps the driver free of Py4J, so the same code runs with an in-process
Spark and with a remote Spark Connect server, where the JVM is not reachable from Python.

URIs: a plain path or `file:/…` is the local disk; `gs://bucket/prefix` is Google Cloud Storage
(credentials from the environment; `STORAGE_EMULATOR_HOST` points it at an emulator); any other
scheme pyarrow knows (`s3://`, `hdfs://`) is passed to `pyarrow.fs.FileSystem.from_uri`.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from pyarrow import fs as pafs

GCS_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


@dataclass(frozen=True)
class FileEntry:
    """One file: its URI (as the caller should name it), size and modification time."""

    uri: str
    size: int
    mtime: datetime | None

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def fingerprint(self) -> str:
        """Size and modification time: a changed file gets a new fingerprint."""
        stamp = int(self.mtime.timestamp() * 1_000_000) if self.mtime else 0
        return f"{self.size}:{stamp}"


def is_local(uri: str) -> bool:
    return uri.startswith("file:") or "://" not in uri


def local_path(uri: str) -> str:
    """`file:/x`, `file:///x` or `/x` → `/x` (one spelling per local file)."""
    return re.sub(r"^file:/+", "/", uri) if uri.startswith("file:") else uri


def normalise_uri(uri: str) -> str:
    """The one spelling of a file's name in tables and the ingest ledger: a local file is its
    absolute path, a remote object its URI (`gs://bucket/key`)."""
    if is_local(uri):
        return str(Path(local_path(uri)).expanduser().absolute())
    return uri


@lru_cache(maxsize=8)
def _gcs(emulator: str | None) -> pafs.FileSystem:
    if emulator:
        parsed = urlparse(emulator if "://" in emulator else f"http://{emulator}")
        return pafs.GcsFileSystem(
            anonymous=True, scheme=parsed.scheme or "http", endpoint_override=parsed.netloc
        )
    return pafs.GcsFileSystem()


def delta_storage_options(uri: str) -> dict[str, str]:
    """The `deltalake` (delta-rs) storage options for a table at `uri`: none on a local disk or
    on a real bucket (credentials from the environment, as for pyarrow); for a GCS emulator
    (STORAGE_EMULATOR_HOST) a key that sends requests there without OAuth."""
    emulator = os.environ.get(GCS_EMULATOR_ENV)
    if is_local(uri) or not uri.startswith("gs://") or not emulator:
        return {}
    base = emulator if "://" in emulator else f"http://{emulator}"
    key = {
        "gcs_base_url": base,
        "disable_oauth": True,
        "client_email": "",
        "private_key": "",
        "private_key_id": "",
    }
    return {"google_service_account_key": json.dumps(key), "allow_http": "true"}


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem that holds `uri`, and the path within it."""
    if is_local(uri):
        return pafs.LocalFileSystem(), normalise_uri(uri)
    scheme = uri.split("://", 1)[0]
    if scheme == "gs":
        return _gcs(os.environ.get(GCS_EMULATOR_ENV) or None), uri.split("://", 1)[1]
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, path


def _uri_of(base_uri: str, path: str) -> str:
    if is_local(base_uri):
        return path
    return f"{base_uri.split('://', 1)[0]}://{path}"


def info(uri: str) -> FileEntry | None:
    fs, path = filesystem(uri)
    entry = fs.get_file_info(path)
    if entry.type == pafs.FileType.NotFound:
        return None
    return FileEntry(uri=_uri_of(uri, entry.path), size=entry.size or 0, mtime=_utc(entry.mtime))


def _utc(mtime: datetime | None) -> datetime | None:
    if mtime is None:
        return None
    return mtime if mtime.tzinfo else mtime.replace(tzinfo=UTC)


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    kind = fs.get_file_info(path).type
    if kind != pafs.FileType.NotFound:
        return True
    if not is_local(uri):
        # object stores have no directories: a "directory" exists when something is under it
        return bool(child_names(uri))
    return False


def _under(uri: str) -> tuple[pafs.FileSystem, str, list[pafs.FileInfo]]:
    """The entries directly under `uri`: a directory listing on a local disk; on an object store
    the objects whose names continue the prefix, from a full listing (every store, and the
    emulator, lists objects the same way; a delimiter listing of implicit folders is not)."""
    fs, path = filesystem(uri)
    if is_local(uri):
        return fs, path, fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False))
    return fs, path, fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True))


def list_files(uri: str, suffixes: tuple[str, ...]) -> list[FileEntry]:
    """Files directly under `uri` whose names end with one of `suffixes`, sorted by name.
    Hidden files (a leading `.` or `_`) are left out, as Spark's readers do."""
    _, path, entries = _under(uri)
    if not is_local(uri):  # the objects whose names hold no further "/"
        prefix = path.rstrip("/") + "/"
        entries = [e for e in entries if e.path.startswith(prefix) and "/" not in e.path[len(prefix) :]]
    return _file_entries(uri, entries, suffixes)


def list_tree(uri: str, suffix: str) -> list[FileEntry]:
    """Every file under `uri`, at any depth, whose name ends with `suffix` (hidden ones left out)."""
    fs, path = filesystem(uri)
    return _file_entries(
        uri, fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True)), (suffix,)
    )


def _file_entries(uri: str, infos: list[pafs.FileInfo], suffixes: tuple[str, ...]) -> list[FileEntry]:
    """The files among `infos` whose names end with one of `suffixes`, sorted by URI; hidden
    files (a leading `.` or `_`) are left out, as Spark's readers do."""
    found = [
        FileEntry(uri=_uri_of(uri, e.path), size=e.size or 0, mtime=_utc(e.mtime))
        for e in infos
        if e.type == pafs.FileType.File
        and e.base_name.endswith(suffixes)
        and not e.base_name.startswith((".", "_"))
    ]
    return sorted(found, key=lambda e: e.uri)


def child_names(uri: str) -> frozenset[str]:
    """Names of the entries directly under `uri` (empty when it does not exist); on an object
    store the first name segment of every object under the prefix (see `_under`)."""
    _, path, entries = _under(uri)
    if is_local(uri):
        return frozenset(e.base_name for e in entries)
    prefix = path.rstrip("/") + "/"
    return frozenset(e.path[len(prefix) :].split("/", 1)[0] for e in entries if e.path.startswith(prefix))


def delete_dir(uri: str) -> None:
    """Delete a directory (or a file) and everything under it; nothing there is fine."""
    fs, path = filesystem(uri)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.File:
        fs.delete_file(path)
    elif kind == pafs.FileType.Directory or not is_local(uri):  # object stores: a prefix
        try:
            fs.delete_dir(path)
        except FileNotFoundError:
            pass


def write_parquet(table, uri: str) -> None:
    """Write an Arrow table as one Parquet file at `uri` (zstd), creating its folder."""
    import pyarrow.parquet as pq

    fs, path = filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(table, path, filesystem=fs, compression="zstd")


def read_parquet(uri: str):
    """One Parquet file (or a folder of them) as an Arrow table."""
    import pyarrow.parquet as pq

    fs, path = filesystem(uri)
    return pq.read_table(path, filesystem=fs)


def read_head(uri: str, nbytes: int = 65_536) -> bytes:
    """The first `nbytes` of a file's content (pyarrow decompresses `*.gz` by its extension)."""
    fs, path = filesystem(uri)
    with fs.open_input_stream(path, compression="detect") as stream:
        return _read_up_to(stream, nbytes)


def read_text(uri: str) -> str:
    """A small file's whole content as UTF-8 text (a checkpoint's log entry, a marker)."""
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read().decode("utf-8")


def _read_up_to(stream, nbytes: int) -> bytes:
    buffer = io.BytesIO()
    while buffer.tell() < nbytes:
        chunk = stream.read(min(1 << 20, nbytes - buffer.tell()))
        if not chunk:
            break
        buffer.write(chunk)
    return buffer.getvalue()


def open_text_chunks(uri: str, chunk_size: int = 16 << 20):
    """The file's content (decompressed for `*.gz`) in byte chunks."""
    fs, path = filesystem(uri)
    with fs.open_input_stream(path, compression="detect") as stream:
        while chunk := stream.read(chunk_size):
            yield chunk
