-- Statistics kept at the hour, the day and the month (each in UTC), and over
-- all time. Every task counts once at each, so a window sums at most its edge
-- hours and days and its whole months, and a window without bounds reads one
-- row per agent and task type. With hourly rows alone, an all-time query
-- summed every hour that had tasks.
--
-- The all-time figures have tables of their own. Every batch of the projector
-- updates them, and in a table shared with the finer grains their rows would
-- end up spread over many pages; alone, they fill a few.
-- Re-runnable: every statement checks for what already exists.

alter table task_statistics
    add column if not exists grain text not null default 'hour';
alter table task_duration_bins
    add column if not exists grain text not null default 'hour';

-- The start of the UTC hour, day or month that contains the given moment.
create or replace function task_statistics_bucket(grain text, created timestamptz)
returns timestamptz
language sql immutable strict parallel safe as $$
    select date_trunc(grain, created at time zone 'UTC') at time zone 'UTC'
$$;

do $$
begin
    if not exists (
        select from pg_constraint
        where conname = 'task_statistics_grain_check'
            and conrelid = 'task_statistics'::regclass
    ) then
        alter table task_statistics add constraint task_statistics_grain_check
            check (grain in ('hour', 'day', 'month'));
    end if;
    if not exists (
        select from pg_constraint
        where conname = 'task_duration_bins_grain_check'
            and conrelid = 'task_duration_bins'::regclass
    ) then
        alter table task_duration_bins add constraint task_duration_bins_grain_check
            check (grain in ('hour', 'day', 'month'));
    end if;
end;
$$;

-- The grain joins each primary key, before the bucket.
do $$
begin
    if not exists (
        select from pg_index i
        join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
        where i.indrelid = 'task_statistics'::regclass and i.indisprimary
            and a.attname = 'grain'
    ) then
        alter table task_statistics drop constraint task_statistics_pkey;
        alter table task_statistics add constraint task_statistics_pkey
            primary key (agent_id, task_type, grain, bucket);
    end if;
    if not exists (
        select from pg_index i
        join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
        where i.indrelid = 'task_duration_bins'::regclass and i.indisprimary
            and a.attname = 'grain'
    ) then
        alter table task_duration_bins drop constraint task_duration_bins_pkey;
        alter table task_duration_bins add constraint task_duration_bins_pkey
            primary key (agent_id, task_type, grain, bucket, bin);
    end if;
end;
$$;

-- A window reads a range of buckets at each grain: the primary key serves
-- queries for one agent and task type, these the others. Adding to a row's
-- counters changes no indexed column, so it stays a heap-only update.
drop index if exists task_statistics_bucket;
drop index if exists task_duration_bins_bucket;
create index if not exists task_statistics_grain_bucket
    on task_statistics (grain, bucket);
create index if not exists task_statistics_agent_grain_bucket
    on task_statistics (agent_id, grain, bucket);
create index if not exists task_duration_bins_grain_bucket
    on task_duration_bins (grain, bucket);
create index if not exists task_duration_bins_agent_grain_bucket
    on task_duration_bins (agent_id, grain, bucket);

-- All-time counters and histogram: the columns of task_statistics and
-- task_duration_bins without the grain and the bucket.
create table if not exists task_statistics_totals (
    agent_id text not null,
    task_type text not null,
    pending bigint not null default 0,
    processing bigint not null default 0,
    waiting bigint not null default 0,
    completed bigint not null default 0,
    failed bigint not null default 0,
    cancelled bigint not null default 0,
    retried bigint not null default 0,
    duration_count bigint not null default 0,
    duration_sum_ms bigint not null default 0,
    wait_count bigint not null default 0,
    wait_sum_ms bigint not null default 0,
    constraint task_statistics_totals_pkey primary key (agent_id, task_type)
);

create table if not exists task_duration_bins_totals (
    agent_id text not null,
    task_type text not null,
    bin integer not null,
    tasks bigint not null,
    constraint task_duration_bins_totals_pkey primary key (agent_id, task_type, bin)
);

alter table task_statistics_totals enable row level security;
alter table task_duration_bins_totals enable row level security;

-- Rows kept before this migration are hourly; the other grains and the totals
-- are summed from them once. The lock keeps the projector from changing them
-- meanwhile.
do $$
begin
    lock table task_statistics, task_duration_bins in share mode;
    if not exists (select from task_statistics where grain <> 'hour') then
        insert into task_statistics (
            agent_id, task_type, grain, bucket, pending, processing, waiting,
            completed, failed, cancelled, retried, duration_count,
            duration_sum_ms, wait_count, wait_sum_ms
        )
        select s.agent_id, s.task_type, g.grain,
            task_statistics_bucket(g.grain, s.bucket),
            sum(pending), sum(processing), sum(waiting), sum(completed),
            sum(failed), sum(cancelled), sum(retried), sum(duration_count),
            sum(duration_sum_ms), sum(wait_count), sum(wait_sum_ms)
        from task_statistics s
        cross join unnest(array['day', 'month']) as g(grain)
        where s.grain = 'hour'
        group by 1, 2, 3, 4;
    end if;
    if not exists (select from task_statistics_totals) then
        insert into task_statistics_totals (
            agent_id, task_type, pending, processing, waiting, completed, failed,
            cancelled, retried, duration_count, duration_sum_ms, wait_count,
            wait_sum_ms
        )
        select agent_id, task_type,
            sum(pending), sum(processing), sum(waiting), sum(completed),
            sum(failed), sum(cancelled), sum(retried), sum(duration_count),
            sum(duration_sum_ms), sum(wait_count), sum(wait_sum_ms)
        from task_statistics
        where grain = 'hour'
        group by 1, 2;
    end if;
    if not exists (select from task_duration_bins where grain <> 'hour') then
        insert into task_duration_bins (agent_id, task_type, grain, bucket, bin, tasks)
        select b.agent_id, b.task_type, g.grain,
            task_statistics_bucket(g.grain, b.bucket), b.bin, sum(b.tasks)
        from task_duration_bins b
        cross join unnest(array['day', 'month']) as g(grain)
        where b.grain = 'hour'
        group by 1, 2, 3, 4, 5;
    end if;
    if not exists (select from task_duration_bins_totals) then
        insert into task_duration_bins_totals (agent_id, task_type, bin, tasks)
        select agent_id, task_type, bin, sum(tasks)
        from task_duration_bins
        where grain = 'hour'
        group by 1, 2, 3;
    end if;
end;
$$;

-- As for the other statistics tables: only service_role reads them.
do $$
declare
    totals text := format('%I.task_statistics_totals', current_schema());
    bins text := format('%I.task_duration_bins_totals', current_schema());
begin
    if exists (select from pg_roles where rolname = 'service_role') then
        execute format('revoke all on %s from anon, authenticated, service_role', totals);
        execute format('revoke all on %s from anon, authenticated, service_role', bins);
        execute format(
            'grant select, insert, update, delete on %s to service_role', totals);
        execute format(
            'grant select, insert, update, delete on %s to service_role', bins);
        execute format(
            'drop policy if exists task_statistics_totals_service on %s', totals);
        execute format(
            'create policy task_statistics_totals_service on %s for all '
            'to service_role using (true) with check (true)', totals);
        execute format(
            'drop policy if exists task_duration_bins_totals_service on %s', bins);
        execute format(
            'create policy task_duration_bins_totals_service on %s for all '
            'to service_role using (true) with check (true)', bins);
    end if;
end;
$$;
