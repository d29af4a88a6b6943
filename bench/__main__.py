"""Run the benchmarks: python -m bench [--quick] [--only NAMES] [--database-url URL]."""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from bench.database import BenchDatabase
from bench.results import Line, print_line, print_table, to_json

BENCHMARKS = ("appends", "catchup", "scaling", "import", "realtime", "queries")
# Run only when named in --only.
EXTRAS = ("prototypes",)


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does in one mode."""

    append_seconds: float
    import_lines: int
    catchup_events: int
    realtime_seconds: float
    query_tasks: int
    query_small_tasks: int
    query_repeats: int
    scaling_events: tuple[int, ...]


FULL = Sizes(
    append_seconds=10.0,
    import_lines=1_000_000,
    catchup_events=1_000_000,
    realtime_seconds=20.0,
    query_tasks=1_000_000,
    query_small_tasks=10_000,
    query_repeats=200,
    scaling_events=(10_000, 100_000, 1_000_000),
)
QUICK = Sizes(
    append_seconds=2.0,
    import_lines=20_000,
    catchup_events=20_000,
    realtime_seconds=2.0,
    query_tasks=20_000,
    query_small_tasks=2_000,
    query_repeats=50,
    scaling_events=(10_000,),
)


@dataclass
class Run:
    """What every benchmark needs: the database, the sizes and the output."""

    database: BenchDatabase
    sizes: Sizes
    seeds: itertools.count[int]
    lines: list[Line]
    profile_dir: Path | None
    catchups: dict[int, list[Line]] = field(default_factory=dict)

    def add(self, lines: list[Line]) -> None:
        for line in lines:
            print_line(line, sys.stdout)
        self.lines.extend(lines)

    def seed(self) -> int:
        return next(self.seeds)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure taskledger against plain PostgreSQL baselines.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, about a minute in all (default: the full sizes)",
    )
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated benchmarks to run, from: {', '.join(BENCHMARKS)} "
        f"(default: all of them), and {', '.join(EXTRAS)}",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL URL (default: TASKLEDGER_DATABASE_URL, else an embedded "
        "PostgreSQL in a temporary directory); the benchmark creates and drops "
        "schemas named bench_*",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every event, line and task count by this factor",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="seconds of each timed append and realtime run (default: 2 in quick "
        "mode, 10 for appends and 20 for realtime in full mode)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the lines to this file"
    )
    parser.add_argument(
        "--profile-dir",
        type=Path,
        default=None,
        help="write pyinstrument profiles of the ledger's side to this directory",
    )
    arguments = parser.parse_args(argv)
    chosen = [name.strip() for name in arguments.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS) - set(EXTRAS))
    if unknown:
        parser.error(
            f"unknown benchmark {', '.join(unknown)}; use {BENCHMARKS + EXTRAS}"
        )
    arguments.only = chosen
    return arguments


def scaled(sizes: Sizes, factor: float, seconds: float | None) -> Sizes:

    def times(value: int) -> int:
        return max(1, round(value * factor))

    return Sizes(
        append_seconds=seconds or sizes.append_seconds,
        import_lines=times(sizes.import_lines),
        catchup_events=times(sizes.catchup_events),
        realtime_seconds=seconds or sizes.realtime_seconds,
        query_tasks=times(sizes.query_tasks),
        query_small_tasks=times(sizes.query_small_tasks),
        query_repeats=sizes.query_repeats,
        scaling_events=tuple(times(size) for size in sizes.scaling_events),
    )


def describe_machine(database: BenchDatabase) -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    where = "embedded (pgserver)" if database.embedded else database.masked_url
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"{memory:.0f} GiB, Python {platform.python_version()}, PostgreSQL "
        f"{database.server_version()} {where}, shared_buffers "
        f"{database.setting('shared_buffers')}, synchronous_commit "
        f"{database.setting('synchronous_commit')}, load average "
        f"{os.getloadavg()[0]:.1f} at the start"
    )


def run_appends(run: Run) -> None:
    from bench.appends import (  # noqa: PLC0415
        AppendSystems,
        measure_appends,
        profile_commands,
    )

    systems = AppendSystems.open(run.database, "appends")
    try:
        if run.profile_dir is not None:
            profile_commands(
                systems, run.sizes.append_seconds, run.profile_dir, run.seed()
            )
        run.add(
            measure_appends(
                systems,
                figure="1",
                label="",
                seconds=run.sizes.append_seconds,
                seed=run.seed(),
            )
        )
    finally:
        systems.close()


def run_scaling(run: Run) -> None:
    from bench.appends import AppendSystems, measure_appends  # noqa: PLC0415
    from bench.catchup import measure_catchup  # noqa: PLC0415

    systems = AppendSystems.open(run.database, "scaling")
    try:
        for size in run.sizes.scaling_events:
            systems.prefill(size, run.seed())
            run.add(
                measure_appends(
                    systems,
                    figure="6",
                    label=f" at {systems.count_events():,} events",
                    seconds=run.sizes.append_seconds,
                    seed=run.seed(),
                )
            )
    finally:
        systems.close()
    for size in run.sizes.scaling_events:
        if size in run.catchups:
            # Figure 3 already measured this size in this run.
            run.add([replace(line, figure="6") for line in run.catchups[size]])
        else:
            run.add(measure_catchup(run.database, size, run.seed(), figure="6"))


def run_catchup(run: Run) -> None:
    from bench.catchup import measure_catchup  # noqa: PLC0415

    lines = measure_catchup(
        run.database,
        run.sizes.catchup_events,
        run.seed(),
        figure="3",
        profile_dir=run.profile_dir,
    )
    run.catchups[run.sizes.catchup_events] = lines
    run.add(lines)


def run_import(run: Run) -> None:
    from bench.imports import measure_import  # noqa: PLC0415

    run.add(
        measure_import(
            run.database, run.sizes.import_lines, run.seed(), run.profile_dir
        )
    )


def run_realtime(run: Run) -> None:
    from bench.realtime import measure_realtime  # noqa: PLC0415

    run.add(measure_realtime(run.database, run.sizes.realtime_seconds, run.seed()))


def run_queries(run: Run) -> None:
    from bench.queries import measure_queries  # noqa: PLC0415

    run.add(measure_queries(run.database, run.sizes, run.seed()))


def run_prototypes(run: Run) -> None:
    from bench.prototypes import (  # noqa: PLC0415
        measure_catchup_prototypes,
        measure_prototypes,
        measure_statement_costs,
    )

    run.add(measure_statement_costs(run.database))
    run.add(measure_prototypes(run.database, run.sizes.append_seconds * 3, run.seed()))
    events = run.sizes.scaling_events[min(1, len(run.sizes.scaling_events) - 1)]
    run.add(measure_catchup_prototypes(run.database, events, run.seed()))


RUNNERS: dict[str, Callable[[Run], None]] = {
    "prototypes": run_prototypes,
    "appends": run_appends,
    "import": run_import,
    "catchup": run_catchup,
    "realtime": run_realtime,
    "queries": run_queries,
    "scaling": run_scaling,
}


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING)
    # pgserver looks up a runtime directory that containers often lack.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    sizes = scaled(
        QUICK if arguments.quick else FULL, arguments.scale, arguments.seconds
    )
    started = time.perf_counter()
    with BenchDatabase(arguments.database_url) as database:
        print(describe_machine(database), flush=True)
        mode = "quick" if arguments.quick else "full"
        print(
            f"mode {mode}, scale {arguments.scale}, running {', '.join(arguments.only)}"
        )
        run = Run(database, sizes, itertools.count(1), [], arguments.profile_dir)
        failed = []
        for name in arguments.only:
            begun = time.perf_counter()
            try:
                RUNNERS[name](run)
            except Exception as error:
                logging.getLogger("bench").exception("benchmark %s failed", name)
                failed.append(f"{name}: {error}")
            print(
                f"-- {name} took {time.perf_counter() - begun:.0f} s, load average "
                f"{os.getloadavg()[0]:.1f} at its end",
                flush=True,
            )
    print()
    print_table(run.lines, sys.stdout)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if arguments.json is not None:
        arguments.json.write_text(to_json(run.lines))
    for message in failed:
        print(f"FAILED {message}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
