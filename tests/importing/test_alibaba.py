"""Alibaba GPU cluster pod list import."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from taskledger import TaskLedger
from taskledger.importing import (
    ImportFileError,
    ImportFormat,
    ImportOptions,
    Rejected,
    import_file,
    task_uuid,
)
from tests.importing.helpers import event_types, events_of

HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time"
)
ROWS = [
    "pod-ok,1000,2048,1,1000,V100,LS,Succeeded,10,100,20",
    "pod-bad,1000,2048,1,500,,BE,Failed,10,50,30",
    "pod-queued,1000,2048,0,0,,BE,Pending,5,60,",
    "pod-live,1000,2048,1,1000,,LS,Running,0,500,0",
    "pod-odd,1000,2048,1,1000,,LS,Evicted,0,500,0",
    "pod-time,1000,2048,1,1000,,LS,Running,soon,500,0",
    "pod-far,1000,2048,1,1000,,LS,Running,99999999999999,500,0",
    "pod-late,1000,2048,1,1000,,LS,Running,0,9999999999,0",
]


def test_pods_follow_final_phase(
    ledger: TaskLedger, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "pods.csv"
    path.write_text("\n".join([HEADER, *ROWS]) + "\n")
    rejected: list[Rejected] = []
    epoch = datetime(2023, 7, 1, tzinfo=UTC)

    summary = import_file(
        ledger,
        path,
        ImportOptions(format=ImportFormat.ALIBABA, epoch=epoch),
        on_rejected=rejected.append,
    )

    assert summary.imported == 11
    assert [(item.where, item.reason) for item in rejected] == [
        ("line 6", "pod_phase 'Evicted' is unknown"),
        ("line 7", "creation_time 'soon' is not a whole number of seconds"),
        (
            "line 8",
            "creation_time '99999999999999' is outside the supported range "
            "1900-01-01T00:00:00+00:00 to 2200-01-01T00:00:00+00:00",
        ),
        (
            "line 9",
            "deletion_time 2340-05-20T17:46:39+00:00 is outside the supported "
            "range 1900-01-01T00:00:00+00:00 to 2200-01-01T00:00:00+00:00",
        ),
    ]
    assert event_types(db, "pod-ok") == ["created", "started", "completed"]
    assert event_types(db, "pod-bad") == ["created", "started", "failed"]
    assert event_types(db, "pod-queued") == ["created", "cancelled"]
    assert event_types(db, "pod-live") == ["created", "started", "cancelled"]
    events = events_of(db, task_uuid("pod-ok"))
    assert events[0]["occurred_at"] == datetime(2023, 7, 1, 0, 0, 10, tzinfo=UTC)
    assert events[0]["payload"]["task_type"] == "LS"
    assert events[0]["payload"]["metadata"]["gpu_spec"] == "V100"
    assert events[2]["occurred_at"] == datetime(2023, 7, 1, 0, 1, 40, tzinfo=UTC)


def test_pod_without_deletion_time_stays_open(
    ledger: TaskLedger, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "pods.csv"
    rows = [
        "pod-run,1000,2048,1,1000,,LS,Running,10,,20",
        "pod-wait,1000,2048,0,0,,BE,Pending,5,,",
    ]
    path.write_text("\n".join([HEADER, *rows]) + "\n")

    summary = import_file(ledger, path, ImportOptions(format=ImportFormat.ALIBABA))

    assert (summary.imported, summary.rejected) == (3, 0)
    assert event_types(db, "pod-run") == ["created", "started"]
    assert event_types(db, "pod-wait") == ["created"]


def test_header_without_columns_is_rejected(ledger: TaskLedger, tmp_path: Path) -> None:
    path = tmp_path / "pods.csv"
    path.write_text("name,phase\npod-ok,Succeeded\n")

    with pytest.raises(ImportFileError) as raised:
        import_file(ledger, path, ImportOptions(format=ImportFormat.ALIBABA))

    message = str(raised.value)
    assert "pods.csv is not an Alibaba pod list" in message
    assert "qos, pod_phase, creation_time, deletion_time, scheduled_time" in message
    assert "--format" in message


def test_names_trimmed_and_byte_order_mark(
    ledger: TaskLedger, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "pods.csv"
    rows = [
        " pod-sp ,1000,2048,1,1000,,LS,Succeeded,10,100,20",
        ",1,1,0,0,,BE,Failed,1,2,",
    ]
    path.write_text("\ufeff" + "\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    rejected: list[Rejected] = []

    summary = import_file(
        ledger,
        path,
        ImportOptions(format=ImportFormat.ALIBABA),
        on_rejected=rejected.append,
    )

    assert summary.imported == 3
    assert event_types(db, "pod-sp") == ["created", "started", "completed"]
    assert [(item.where, item.reason) for item in rejected] == [
        ("line 3", "name must not be empty")
    ]
