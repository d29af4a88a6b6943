-- The agent_tasks read model: one row per task, kept by the projector.
-- Re-runnable: every statement checks for what already exists.

create table if not exists agent_tasks (
    id uuid primary key,
    agent_id text not null,
    agent_name text not null,
    message text not null,
    task_type text not null,
    user_id text,
    status text not null check (
        status in ('pending', 'processing', 'waiting', 'completed', 'failed',
                   'cancelled')
    ),
    response text,
    response_data jsonb,
    error_message text,
    metadata jsonb not null default '{}'::jsonb,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    started_at timestamptz,
    finished_at timestamptz,
    duration_ms bigint check (duration_ms >= 0),
    wait_ms bigint check (wait_ms >= 0),
    attempts integer not null default 1,
    version bigint not null,
    -- Position of the task's creation event: the tie-breaker of task lists.
    created_position bigint not null,
    -- Position of the task's last applied event.
    position bigint not null
);

create index if not exists agent_tasks_created
    on agent_tasks (created_at desc, created_position desc);
create index if not exists agent_tasks_agent_status_created
    on agent_tasks (agent_id, status, created_at desc, created_position desc);
create index if not exists agent_tasks_status_created
    on agent_tasks (status, created_at desc, created_position desc);
create index if not exists agent_tasks_user_created
    on agent_tasks (user_id, created_at desc, created_position desc)
    where user_id is not null;
create index if not exists agent_tasks_position on agent_tasks (position);

alter table agent_tasks enable row level security;

-- Supabase Realtime sends the whole old row on UPDATE and DELETE only with
-- REPLICA IDENTITY FULL; the new row is always complete.
alter table agent_tasks replica identity full;

do $$
declare
    tbl text := format('%I.agent_tasks', current_schema());
begin
    if exists (select from pg_roles where rolname = 'service_role') then
        execute format('revoke all on %s from anon, authenticated, service_role', tbl);
        execute format('grant select, insert, update, delete on %s to service_role', tbl);
        execute format('grant select on %s to authenticated', tbl);
        execute format('drop policy if exists agent_tasks_service on %s', tbl);
        execute format(
            'create policy agent_tasks_service on %s for all to service_role '
            'using (true) with check (true)', tbl);
    end if;
    if to_regprocedure('auth.uid()') is not null
       and exists (select from pg_roles where rolname = 'authenticated') then
        execute format('drop policy if exists agent_tasks_owner_read on %s', tbl);
        execute format(
            'create policy agent_tasks_owner_read on %s for select to authenticated '
            'using (user_id = (select auth.uid())::text)', tbl);
    end if;
    -- A table can join a publication once; a second ADD TABLE fails.
    if exists (select from pg_publication where pubname = 'supabase_realtime')
       and not exists (
           select from pg_publication_tables
           where pubname = 'supabase_realtime'
             and schemaname = current_schema()
             and tablename = 'agent_tasks'
       ) then
        execute format('alter publication supabase_realtime add table %s', tbl);
    end if;
end;
$$;
