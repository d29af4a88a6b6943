"""XES import: mapping rules, reopened tasks, gzip and mapping errors."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import psycopg
import pytest

from taskledger import TaskLedger
from taskledger.importing import (
    ImportFormat,
    ImportOptions,
    ImportSummary,
    MappingError,
    Rejected,
    XesFormatError,
    import_file,
    load_mapping,
    task_uuid,
)
from tests.importing.helpers import event_types, events_of

Db = psycopg.Connection[Any]

MAPPING = """
after_terminal = "retry"

[fields]
agent_id = { event = "org:group" }
agent_name = { event = "org:resource", default = "nobody" }
task_type = { trace = "kind" }
message = { value = "incident" }

[[status]]
name = "Queued"
status = "pending"

[[status]]
name = "Accepted"
lifecycle = "Wait*"
status = "waiting"

[[status]]
name = "Accepted"
status = "processing"

[[status]]
name = "Completed"
status = "completed"

[[status]]
name = "Note"
status = "ignore"
"""


def event(name: str, lifecycle: str, minute: int, group: str = "G1") -> str:
    return (
        "<event>"
        f'<string key="concept:name" value="{name}"/>'
        f'<string key="lifecycle:transition" value="{lifecycle}"/>'
        f'<string key="org:group" value="{group}"/>'
        f'<date key="time:timestamp" value="2012-03-01T09:{minute:02d}:00+01:00"/>'
        "</event>"
    )


def trace(case: str, *events: str, kind: str = "incident") -> str:
    return (
        f'<trace><string key="concept:name" value="{case}"/>'
        f'<string key="kind" value="{kind}"/>{"".join(events)}</trace>'
    )


def xes(*traces: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n'
        '<log xes.version="1.0" xmlns="http://www.xes-standard.org/">'
        '<global scope="event"><string key="org:group" value="UNKNOWN"/></global>'
        f"{''.join(traces)}</log>"
    )


def run_xes(
    ledger: TaskLedger, path: Path, mapping: str = MAPPING, strict: bool = False
) -> tuple[ImportSummary, list[Rejected]]:
    mapping_path = path.with_name("mapping.toml")
    mapping_path.write_text(mapping, encoding="utf-8")
    rejected: list[Rejected] = []
    summary = import_file(
        ledger,
        path,
        ImportOptions(
            format=ImportFormat.XES, mapping=load_mapping(mapping_path), strict=strict
        ),
        on_rejected=rejected.append,
    )
    return summary, rejected


def test_traces_become_tasks(ledger: TaskLedger, db: Db, tmp_path: Path) -> None:
    path = tmp_path / "log.xes"
    path.write_text(
        xes(
            trace(
                "INC-1",
                event("Queued", "Awaiting Assignment", 0),
                event("Accepted", "In Progress", 1, group="G2"),
                event("Accepted", "In Progress", 2),
                event("Accepted", "Wait - User", 3),
                event("Note", "Anything", 4),
                event("Completed", "Resolved", 5),
                event("Completed", "Closed", 6),
            ),
            trace("INC-2", event("Accepted", "In Progress", 0), kind="request"),
        )
    )

    summary, rejected = run_xes(ledger, path)

    assert rejected == []
    assert (summary.imported, summary.ignored) == (5, 3)
    assert event_types(db, "INC-1") == ["created", "started", "waiting", "completed"]
    assert event_types(db, "INC-2") == ["created", "started"]
    created = events_of(db, task_uuid("INC-1"))[0]
    assert created["payload"]["agent_id"] == "G1"
    assert created["payload"]["agent_name"] == "nobody"
    assert created["payload"]["task_type"] == "incident"
    assert created["payload"]["message"] == "incident"
    assert created["payload"]["metadata"] == {
        "concept:name": "Queued",
        "lifecycle:transition": "Awaiting Assignment",
    }
    assert created["occurred_at"].isoformat() == "2012-03-01T08:00:00+00:00"
    second = events_of(db, task_uuid("INC-2"))[0]["payload"]
    assert second["task_type"] == "request"


def test_reopened_task_starts_new_attempt(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = tmp_path / "log.xes"
    path.write_text(
        xes(
            trace(
                "INC-1",
                event("Accepted", "In Progress", 0),
                event("Queued", "Awaiting Assignment", 1),
                event("Accepted", "In Progress", 2),
                event("Completed", "Resolved", 3),
                event("Accepted", "Wait - User", 4),
                event("Completed", "Closed", 5),
            )
        )
    )

    summary, rejected = run_xes(ledger, path)

    assert rejected == []
    assert summary.imported == 6
    assert event_types(db, "INC-1") == [
        "created",
        "started",
        "retried",
        "started",
        "completed",
        "retried",
        "started",
        "waiting",
        "completed",
    ]


def test_after_terminal_reject_reports_reopening(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = tmp_path / "log.xes"
    path.write_text(
        xes(
            trace(
                "INC-1",
                event("Accepted", "In Progress", 0),
                event("Completed", "Resolved", 1),
                event("Accepted", "In Progress", 2),
            )
        )
    )
    mapping = MAPPING.replace('after_terminal = "retry"', 'after_terminal = "reject"')

    summary, rejected = run_xes(ledger, path, mapping)

    assert summary.rejected == 1
    assert rejected[0].where == "event 3 (trace 1 'INC-1')"
    assert "is completed: it cannot move to processing" in rejected[0].reason
    assert event_types(db, "INC-1") == ["created", "started", "completed"]


def test_uncovered_value_is_reported(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = tmp_path / "log.xes"
    path.write_text(
        xes(
            trace(
                "INC-1",
                event("Accepted", "In Progress", 0),
                event("Escalated", "Level 2", 1),
                event("Completed", "Resolved", 2),
            )
        )
    )

    summary, rejected = run_xes(ledger, path)

    assert summary.rejected == 1
    assert rejected[0].reason == (
        "concept:name 'Escalated' with lifecycle:transition 'Level 2' is not "
        "covered by the mapping"
    )
    assert event_types(db, "INC-1") == ["created", "started", "completed"]


def test_time_outside_range_is_reported(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = tmp_path / "log.xes"
    early = event("Accepted", "In Progress", 0).replace("2012-03-01", "1850-03-01")
    path.write_text(
        xes(trace("INC-1", early), trace("INC-2", event("Accepted", "In Progress", 0)))
    )

    summary, rejected = run_xes(ledger, path)

    assert summary.rejected == 1
    assert "time:timestamp 1850-03-01T09:00:00+01:00 is outside" in rejected[0].reason
    assert event_types(db, "INC-1") == []
    assert event_types(db, "INC-2") == ["created", "started"]


def test_uncovered_value_is_fatal_when_strict(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = tmp_path / "log.xes"
    path.write_text(
        xes(
            trace("INC-1", event("Accepted", "In Progress", 0)),
            trace("INC-2", event("Escalated", "Level 2", 1)),
            trace("INC-3", event("Accepted", "In Progress", 2)),
        )
    )

    summary, _ = run_xes(ledger, path, strict=True)

    assert summary.stopped_at is not None
    assert summary.stopped_at.where == "event 2 (trace 2 'INC-2')"
    assert event_types(db, "INC-1") == ["created", "started"]
    assert event_types(db, "INC-3") == []


def test_gzip_log_imports_and_reimports(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = tmp_path / "log.xes.gz"
    body = xes(
        trace("INC-1", event("Queued", "x", 0), event("Completed", "Closed", 1)),
        trace("INC-2", event("Accepted", "In Progress", 0)),
    )
    path.write_bytes(gzip.compress(body.encode()))

    first, _ = run_xes(ledger, path)
    second, _ = run_xes(ledger, path)

    assert first.imported == 2
    assert (second.imported, second.skipped) == (0, 2)
    assert event_types(db, "INC-2") == ["created", "started"]


def test_pending_to_completed_is_rejected(ledger: TaskLedger, tmp_path: Path) -> None:
    path = tmp_path / "log.xes"
    path.write_text(
        xes(trace("INC-1", event("Queued", "x", 0), event("Completed", "Closed", 1)))
    )

    summary, rejected = run_xes(ledger, path)

    assert summary.imported == 1
    assert "is pending: it cannot move to completed" in rejected[0].reason


def test_malformed_xml_raises_format_error(ledger: TaskLedger, tmp_path: Path) -> None:
    path = tmp_path / "log.xes"
    path.write_text(xes(trace("INC-1", event("Queued", "x", 0)))[:-20])

    with pytest.raises(XesFormatError, match="not well-formed"):
        run_xes(ledger, path)


def test_entity_expansion_is_refused(ledger: TaskLedger, tmp_path: Path) -> None:
    path = tmp_path / "log.xes"
    path.write_text(
        '<?xml version="1.0"?><!DOCTYPE log [<!ENTITY a "aaaa">]>'
        '<log><trace><string key="concept:name" value="&a;"/></trace></log>'
    )

    with pytest.raises(XesFormatError, match="unsafe"):
        run_xes(ledger, path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("status = [", "is not valid TOML"),
        (
            "[[status]]\nname = 'A'\nstatus = 'done'\n",
            "invalid: \\[\\[status\\]\\] number 1, key status is 'done', not one of: "
            "pending, processing, waiting, completed, failed, cancelled, ignore$",
        ),
        ("task_id = 'x'\n", "invalid: key status is missing$"),
        (
            "[[statuses]]\nname = 'A'\nstatus = 'pending'\n",
            "invalid: key statuses is not a known key$",
        ),
        (
            "[fields]\nagent_id = { evnt = 'a' }\n[[status]]\nname = 'A'\n"
            "status = 'pending'\n",
            "invalid: key fields.agent_id.evnt is not a known key$",
        ),
        ("[[status]]\nstatus = 'pending'\n", "give name, lifecycle or both"),
        (
            "[fields]\nagent_id = { event = 'a', trace = 'b' }\n"
            "[[status]]\nname = 'A'\nstatus = 'pending'\n",
            "give exactly one of trace, event or value",
        ),
        ("colour = 1\n[[status]]\nname = 'A'\nstatus = 'pending'\n", "colour"),
    ],
)
def test_wrong_mapping_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(text)

    with pytest.raises(MappingError, match=message):
        load_mapping(path)


def test_missing_mapping_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="not found"):
        load_mapping(tmp_path / "absent.toml")
