"""Compare two layouts of the statistics' duration histogram in PostgreSQL.

rows:  one row per (agent, task type, hour bucket, bin) with a count.
array: one row per (agent, task type, hour bucket) with a dense bigint[] of
       counts indexed by bin.

For each layout it times the projector's upsert of one batch of histogram
changes, and the query that sums the bins of a time window and finds p50 and
p95. Usage: python bench/histogram_layout.py [DATABASE_URL]
(default TASKLEDGER_DATABASE_URL). It works in a schema of its own and drops it.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

AGENTS = [f"agent{i}" for i in range(10)]
TYPES = ["generation", "analysis", "research", "chat"]
HOURS = 24 * 30
TASKS_PER_KEY_HOUR = 35
BATCHES = 30
CHANGES_PER_BATCH = 1000
GAMMA = 1.025 / 0.975
START = datetime(2026, 1, 1, tzinfo=UTC)

SETUP = """
create table bins_rows (
    agent_id text, task_type text, bucket timestamptz, bin integer,
    tasks bigint not null,
    primary key (agent_id, task_type, bucket, bin)
);
create table bins_array (
    agent_id text, task_type text, bucket timestamptz,
    bins bigint[] not null,
    primary key (agent_id, task_type, bucket)
);
create index on bins_rows (bucket);
create index on bins_array (bucket);
-- Add sparse counts (bin numbers from 0, counts) to a dense array.
create function add_bins(dense bigint[], bins integer[], counts bigint[])
returns bigint[] language plpgsql immutable as $$
declare
    result bigint[] := coalesce(dense, '{}');
    i integer;
begin
    for i in 1 .. coalesce(cardinality(bins), 0) loop
        while cardinality(result) <= bins[i] loop
            result := result || 0::bigint;
        end loop;
        result[bins[i] + 1] := result[bins[i] + 1] + counts[i];
    end loop;
    return result;
end;
$$;
"""

UPSERT_ROWS = """
insert into bins_rows as t (agent_id, task_type, bucket, bin, tasks)
select * from unnest(%s::text[], %s::text[], %s::timestamptz[], %s::integer[],
                     %s::bigint[])
on conflict (agent_id, task_type, bucket, bin)
do update set tasks = t.tasks + excluded.tasks
"""

UPSERT_ARRAY = """
insert into bins_array as t (agent_id, task_type, bucket, bins)
select k.agent_id, k.task_type, k.bucket, add_bins('{}', k.bins, k.counts)
from jsonb_to_recordset(%s::jsonb) as k(
    agent_id text, task_type text, bucket timestamptz, bins integer[],
    counts bigint[])
on conflict (agent_id, task_type, bucket)
do update set bins = add_bins(
    t.bins,
    (select array_agg(i - 1) from generate_subscripts(excluded.bins, 1) i
     where excluded.bins[i] <> 0),
    (select array_agg(excluded.bins[i]) from generate_subscripts(excluded.bins, 1) i
     where excluded.bins[i] <> 0))
"""

QUERY_ROWS = """
select bin, sum(tasks) as tasks from bins_rows
where (%(agent)s::text is null or agent_id = %(agent)s)
  and bucket >= %(since)s and bucket < %(until)s
group by bin order by bin
"""

QUERY_ARRAY = """
select u.i - 1 as bin, sum(u.n) as tasks
from bins_array, unnest(bins) with ordinality as u(n, i)
where (%(agent)s::text is null or agent_id = %(agent)s)
  and bucket >= %(since)s and bucket < %(until)s
group by u.i order by u.i
"""


def duration_bin(duration_ms: int) -> int:
    if duration_ms < 1:
        return 0
    return 1 + math.ceil(math.log(duration_ms) / math.log(GAMMA))


def random_duration(rng: random.Random) -> int:
    return int(rng.lognormvariate(math.log(4000), 1.2))


def fill_history(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    rng = random.Random(1)
    rows: list[tuple[object, ...]] = []
    arrays: list[tuple[object, ...]] = []
    for hour in range(HOURS):
        bucket = START + timedelta(hours=hour)
        for agent in AGENTS:
            for task_type in TYPES:
                counts = Counter(
                    duration_bin(random_duration(rng))
                    for _ in range(TASKS_PER_KEY_HOUR)
                )
                rows.extend((agent, task_type, bucket, b, n) for b, n in counts.items())
                dense = [counts.get(b, 0) for b in range(max(counts) + 1)]
                arrays.append((agent, task_type, bucket, dense))
    with conn.cursor() as cursor:
        with cursor.copy("copy bins_rows from stdin") as copy:
            for row in rows:
                copy.write_row(row)
        with cursor.copy("copy bins_array from stdin") as copy:
            for row in arrays:
                copy.write_row(row)
    conn.execute("vacuum analyze bins_rows")
    conn.execute("vacuum analyze bins_array")


def batch(rng: random.Random, hour: int) -> list[tuple[str, str, datetime, int]]:
    bucket = START + timedelta(hours=hour)
    return [
        (
            rng.choice(AGENTS),
            rng.choice(TYPES),
            bucket,
            duration_bin(random_duration(rng)),
        )
        for _ in range(CHANGES_PER_BATCH // 3)
    ]


def time_upserts(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, float]:
    rng = random.Random(2)
    timings: dict[str, list[float]] = {"rows": [], "array": []}
    for number in range(BATCHES):
        changes = batch(rng, HOURS - 2 + number % 2)
        per_bin = Counter((a, t, b, k) for a, t, b, k in changes)
        columns = list(zip(*[(*key, n) for key, n in per_bin.items()], strict=True))
        started = time.perf_counter()
        with conn.transaction():
            conn.execute(UPSERT_ROWS, [list(c) for c in columns])
        timings["rows"].append(time.perf_counter() - started)

        per_key: dict[tuple[str, str, datetime], Counter[int]] = {}
        for a, t, b, k in changes:
            per_key.setdefault((a, t, b), Counter())[k] += 1
        document = json.dumps(
            [
                {
                    "agent_id": a,
                    "task_type": t,
                    "bucket": b.isoformat(),
                    "bins": list(counts),
                    "counts": list(counts.values()),
                }
                for (a, t, b), counts in per_key.items()
            ]
        )
        started = time.perf_counter()
        with conn.transaction():
            conn.execute(UPSERT_ARRAY, (document,))
        timings["array"].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1000 for name, values in timings.items()}


def time_queries(
    conn: psycopg.Connection[tuple[object, ...]], agent: str | None, days: int
) -> dict[str, float]:
    params = {
        "agent": agent,
        "since": START,
        "until": START + timedelta(days=days),
    }
    timings: dict[str, list[float]] = {"rows": [], "array": []}
    results = {}
    for _ in range(5):
        for name, query in (("rows", QUERY_ROWS), ("array", QUERY_ARRAY)):
            started = time.perf_counter()
            results[name] = [
                row for row in conn.execute(query, params).fetchall() if row[1]
            ]
            timings[name].append(time.perf_counter() - started)
    assert results["rows"] == results["array"], "the layouts disagree"
    return {name: statistics.median(values) * 1000 for name, values in timings.items()}


def main() -> None:
    url = (sys.argv[1:] or [os.environ.get("TASKLEDGER_DATABASE_URL", "")])[0]
    if not url:
        sys.exit("give a database URL or set TASKLEDGER_DATABASE_URL")
    schema = f"bench_hist_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(schema)))
        try:
            conn.execute(SETUP)  # type: ignore[call-overload]
            fill_history(conn)
            for table in ("bins_rows", "bins_array"):
                size = conn.execute(
                    "select pg_total_relation_size(%s::regclass)", (table,)
                ).fetchone()
                assert size is not None
                print(f"{table}: {size[0] / 2**20:.1f} MiB")
            print("upsert of one batch, median ms:", time_upserts(conn))
            for agent, days in ((None, 30), ("agent3", 30), (None, 1), ("agent3", 1)):
                print(
                    f"query agent={agent} days={days}, median ms:",
                    time_queries(conn, agent, days),
                )
        finally:
            conn.execute(
                sql.SQL("drop schema {} cascade").format(sql.Identifier(schema))
            )


if __name__ == "__main__":
    main()
