-- task_updates: each projected change of a task, in event order, for subscribers.
-- The projector writes one row per applied event in the same transaction as the
-- agent_tasks row, then sends NOTIFY; subscribers read the rows after the last
-- position they delivered, so a missed notification loses nothing.
-- Re-runnable: every statement checks for what already exists.

create table if not exists task_updates (
    position bigint primary key,
    task_id uuid not null,
    event_type text not null,
    agent_id text not null,
    status text not null,
    user_id text,
    task_type text not null,
    -- The task as projected after the event (TaskRecord as JSON).
    task jsonb not null,
    projected_at timestamptz not null default clock_timestamp()
);

create index if not exists task_updates_agent on task_updates (agent_id, position);
create index if not exists task_updates_user on task_updates (user_id, position)
    where user_id is not null;
create index if not exists task_updates_projected_at on task_updates (projected_at);

alter table task_updates enable row level security;

do $$
declare
    tbl text := format('%I.task_updates', current_schema());
begin
    if exists (select from pg_roles where rolname = 'service_role') then
        execute format('revoke all on %s from anon, authenticated, service_role', tbl);
        execute format('grant select, insert, delete on %s to service_role', tbl);
        execute format('grant select on %s to authenticated', tbl);
        execute format('drop policy if exists task_updates_service on %s', tbl);
        execute format(
            'create policy task_updates_service on %s for all to service_role '
            'using (true) with check (true)', tbl);
    end if;
    if to_regprocedure('auth.uid()') is not null
       and exists (select from pg_roles where rolname = 'authenticated') then
        execute format('drop policy if exists task_updates_owner_read on %s', tbl);
        execute format(
            'create policy task_updates_owner_read on %s for select to authenticated '
            'using (user_id = (select auth.uid())::text)', tbl);
    end if;
end;
$$;
