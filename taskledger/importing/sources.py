"""Open an import file (plain or gzip) and tell how much of it has been read."""

from __future__ import annotations

import gzip
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, cast


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


class SourceFile:
    """A binary stream of the file's content, decompressed when it is gzip.

    bytes_read counts the bytes read from the file on disk, so that it can be
    compared with the file's size for progress.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self._raw: IO[bytes] = path.open("rb")
        compressed = self._raw.read(2) == b"\x1f\x8b"
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
