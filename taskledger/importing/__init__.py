"""Import task histories from files: JSON Lines, XES event logs, Alibaba's trace."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from taskledger.importing.alibaba import ALIBABA_RULES, UNIX_EPOCH, read_alibaba
from taskledger.importing.importer import DEFAULT_BATCH_SIZE, Importer, ImportSummary
from taskledger.importing.jsonl import JSONL_RULES, read_jsonl
from taskledger.importing.mapping import MappingError, XesMapping, load_mapping
from taskledger.importing.records import (
    TASK_ID_NAMESPACE,
    Entry,
    ReadRules,
    Rejected,
    task_uuid,
)
from taskledger.importing.sources import (
    ImportFileError,
    ImportFormat,
    SourceFile,
    detect_format,
    is_gzip,
    verify_gzip,
)
from taskledger.importing.xes import XesFormatError, read_xes
from taskledger.ledger import TaskLedger

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "TASK_ID_NAMESPACE",
    "ImportFileError",
    "ImportFormat",
    "ImportOptions",
    "ImportSummary",
    "MappingError",
    "Rejected",
    "XesFormatError",
    "detect_format",
    "import_file",
    "load_mapping",
    "task_uuid",
]


@dataclass(frozen=True)
class ImportOptions:
    """How to read a file and what to do with invalid entries."""

    format: ImportFormat
    mapping: XesMapping | None = None
    strict: bool = False
    source: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    epoch: datetime = UNIX_EPOCH


def import_file(
    ledger: TaskLedger,
    path: Path,
    options: ImportOptions,
    *,
    on_rejected: Callable[[Rejected], None] | None = None,
    on_progress: Callable[[ImportSummary, int, int], None] | None = None,
) -> ImportSummary:
    """Import one file; on_progress gets the summary, bytes read and file size.

    The source name recorded with each event (the file name unless given)
    lets a re-run recognise what it imported before. A gzip file is read
    through once before anything is appended, and ImportFileError reports a
    damaged one.
    """
    if is_gzip(path):
        verify_gzip(path)
    with SourceFile(path) as source_file:
        entries, rules = _entries(source_file, options)
        importer = Importer(
            ledger,
            source=options.source or path.name,
            rules=rules,
            strict=options.strict,
            batch_size=options.batch_size,
            on_rejected=on_rejected,
        )

        def report(summary: ImportSummary) -> None:
            if on_progress is not None:
                on_progress(summary, source_file.bytes_read, source_file.size)

        try:
            return importer.run(entries, on_batch=report)
        finally:
            entries.close()


def _entries(
    source_file: SourceFile, options: ImportOptions
) -> tuple[Generator[Entry], ReadRules]:
    if options.format is ImportFormat.JSONL:
        return read_jsonl(source_file.stream, source_file.path.name), JSONL_RULES
    if options.format is ImportFormat.ALIBABA:
        reader = read_alibaba(source_file.stream, options.epoch, source_file.path.name)
        return reader, ALIBABA_RULES
    if options.mapping is None:
        raise MappingError("an XES import needs a mapping file (--mapping)")
    entries = read_xes(source_file.stream, options.mapping, source_file.path.name)
    return entries, options.mapping.rules
