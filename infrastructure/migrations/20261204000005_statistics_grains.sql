-- Statistics kept at four grains: the hour, the day, the month (each in UTC)
-- and all time. Every task counts once at each grain, so a window sums at
-- most its edge hours and days, its whole months, or one row per agent and
-- task type for all time. With hourly rows alone, an all-time query summed
-- every hour that had tasks.
-- Re-runnable: every statement checks for what already exists.

alter table task_statistics
    add column if not exists grain text not null default 'hour';
alter table task_duration_bins
    add column if not exists grain text not null default 'hour';

-- The bucket of a task created at the given moment, at the given grain. All
-- time has one bucket, which starts at the earliest creation time a task may
-- have (domain/values.py); -infinity would not load into a Python datetime.
create or replace function task_statistics_bucket(grain text, created timestamptz)
returns timestamptz
language sql immutable strict parallel safe as $$
    select case grain
        when 'all' then '1900-01-01 00:00:00+00'::timestamptz
        else date_trunc(grain, created at time zone 'UTC') at time zone 'UTC'
    end
$$;

do $$
begin
    if not exists (
        select from pg_constraint
        where conname = 'task_statistics_grain_check'
            and conrelid = 'task_statistics'::regclass
    ) then
        alter table task_statistics add constraint task_statistics_grain_check
            check (grain in ('hour', 'day', 'month', 'all'));
    end if;
    if not exists (
        select from pg_constraint
        where conname = 'task_duration_bins_grain_check'
            and conrelid = 'task_duration_bins'::regclass
    ) then
        alter table task_duration_bins add constraint task_duration_bins_grain_check
            check (grain in ('hour', 'day', 'month', 'all'));
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

-- Rows kept before this migration are hourly; the coarser grains are summed
-- from them once. The lock keeps the projector from changing them meanwhile.
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
        cross join unnest(array['day', 'month', 'all']) as g(grain)
        where s.grain = 'hour'
        group by 1, 2, 3, 4;
    end if;
    if not exists (select from task_duration_bins where grain <> 'hour') then
        insert into task_duration_bins (agent_id, task_type, grain, bucket, bin, tasks)
        select b.agent_id, b.task_type, g.grain,
            task_statistics_bucket(g.grain, b.bucket), b.bin, sum(b.tasks)
        from task_duration_bins b
        cross join unnest(array['day', 'month', 'all']) as g(grain)
        where b.grain = 'hour'
        group by 1, 2, 3, 4, 5;
    end if;
end;
$$;
