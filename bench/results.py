"""Result lines: the ledger's figure, the baseline's, their ratio and the target."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal, TextIO

Measure = Literal["value", "ratio"]
Direction = Literal["min", "max"]


@dataclass(frozen=True)
class Target:
    """A bound on the ledger's value or on the ratio ledger / baseline."""

    measure: Measure
    direction: Direction
    bound: float

    def met_by(self, line: Line) -> bool | None:
        value = line.ledger if self.measure == "value" else line.ratio
        if value is None or math.isnan(value):
            return None
        if self.direction == "min":
            return value >= self.bound
        return value < self.bound

    def describe(self) -> str:
        sign = ">=" if self.direction == "min" else "<"
        subject = "" if self.measure == "value" else "ratio "
        return f"{subject}{sign} {_number(self.bound)}"


def at_least(bound: float) -> Target:
    return Target("value", "min", bound)


def below(bound: float) -> Target:
    return Target("value", "max", bound)


def ratio_at_least(bound: float) -> Target:
    return Target("ratio", "min", bound)


def ratio_below(bound: float) -> Target:
    return Target("ratio", "max", bound)


@dataclass(frozen=True)
class Line:
    """One measured figure; the ratio is always ledger / baseline."""

    figure: str
    name: str
    unit: str
    ledger: float | None
    baseline: float | None = None
    baseline_name: str = ""
    targets: tuple[Target, ...] = ()
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ledger is None or not self.baseline:
            return None
        return self.ledger / self.baseline

    @property
    def met(self) -> bool | None:
        verdicts = [target.met_by(self) for target in self.targets]
        if not verdicts:
            return None
        if any(verdict is False for verdict in verdicts):
            return False
        if any(verdict is None for verdict in verdicts):
            return None
        return True


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _ratio(value: float | None) -> str:
    # Three significant digits, so that 0.196 against a bound of 0.20 does not
    # print as 0.20 beside MISSED.
    return "-" if value is None else f"{value:.3g}"


def _verdict(met: bool | None, has_targets: bool) -> str:
    if not has_targets:
        return ""
    if met is None:
        return "n/a"
    return "met" if met else "MISSED"


HEADER = (
    "fig",
    "figure",
    "unit",
    "ledger",
    "baseline",
    "baseline value",
    "ratio",
    "target",
    "verdict",
)


def table_rows(lines: Iterable[Line]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for line in lines:
        rows.append(
            (
                line.figure,
                line.name,
                line.unit,
                _number(line.ledger),
                line.baseline_name or "-",
                _number(line.baseline),
                _ratio(line.ratio),
                ", ".join(target.describe() for target in line.targets) or "-",
                _verdict(line.met, bool(line.targets)),
            )
        )
    return rows


def print_table(lines: Iterable[Line], out: TextIO) -> None:
    """Write the lines as an aligned plain-text table."""
    rows = [HEADER, *table_rows(lines)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    numeric = {3, 5, 6}
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        out.write("  ".join(cells).rstrip() + "\n")
    out.flush()


def print_line(line: Line, out: TextIO) -> None:
    """Write one line as soon as it is measured."""
    row = table_rows([line])[0]
    parts = [
        f"[{row[0]}] {row[1]}: ledger {row[3]} {row[2]}",
    ]
    if line.baseline is not None:
        parts.append(f"{row[4]} {row[5]}, ratio {row[6]}")
    if line.targets:
        parts.append(f"target {row[7]}: {row[8]}")
    if line.note:
        parts.append(line.note)
    out.write("; ".join(parts) + "\n")
    out.flush()


def markdown_table(lines: Iterable[Line]) -> str:
    rows = [HEADER, *table_rows(lines)]
    text = ["| " + " | ".join(rows[0]) + " |"]
    text.append("|" + "|".join(" --- " for _ in HEADER) + "|")
    text.extend("| " + " | ".join(row) + " |" for row in rows[1:])
    return "\n".join(text) + "\n"


def to_json(lines: Iterable[Line]) -> str:
    documents = []
    for line in lines:
        document = asdict(line)
        document["ratio"] = line.ratio
        document["met"] = line.met
        documents.append(document)
    return json.dumps(documents, indent=2)
