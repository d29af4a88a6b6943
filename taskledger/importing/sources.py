"""Open an import file (plain or gzip) and tell how much of it has been read."""

from __future__ import annotations

import gzip
import zlib
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, cast

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK_BYTES = 1 << 20


class ImportFileError(Exception):
    """The file cannot be imported as it is; the message names it and the fix."""


class ImportFormat(StrEnum):
    JSONL = "jsonl"
    XES = "xes"
    ALIBABA = "alibaba"


_SUFFIXES = {
    ".jsonl": ImportFormat.JSONL,
    ".ndjson": ImportFormat.JSONL,
    ".xes": ImportFormat.XES,
    ".csv": ImportFormat.ALIBABA,
}


def detect_format(path: Path) -> ImportFormat | None:
    """Return the format that the file name implies (.gz is looked through)."""
    name = path.name.lower().removesuffix(".gz")
    return _SUFFIXES.get(Path(name).suffix)


def is_gzip(path: Path) -> bool:
    """Return whether the file starts with the gzip magic bytes."""
    with path.open("rb") as raw:
        return raw.read(2) == GZIP_MAGIC


def verify_gzip(path: Path) -> None:
    """Decompress a gzip file once, discarding the data, to check its integrity.

    gzip checks the CRC and length only at the end of a member, so without
    this pass a damaged file would be found only after earlier batches were
    appended. Raises ImportFileError for a damaged or truncated file.
    """
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(_CHUNK_BYTES):
                pass
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        detail = str(error) or type(error).__name__
        raise ImportFileError(
            f"{path} is a damaged or truncated gzip file ({detail}); nothing was "
            "imported. Download or compress it again"
        ) from error


class SourceFile:
    """A binary stream of the file's content, decompressed when it is gzip.

    bytes_read counts the bytes read from the file on disk, so that it can be
    compared with the file's size for progress.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self._raw: IO[bytes] = path.open("rb")
        compressed = self._raw.read(2) == GZIP_MAGIC
        self._raw.seek(0)
        self.stream: IO[bytes] = self._raw
        if compressed:
            self.stream = cast(IO[bytes], gzip.GzipFile(fileobj=self._raw, mode="rb"))

    @property
    def bytes_read(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        self.stream.close()
        self._raw.close()

    def __enter__(self) -> SourceFile:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
