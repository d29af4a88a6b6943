-- Let service_role read the read model but not change it. Re-runnable.
--
-- agent_tasks, task_updates and the statistics tables are folds of
-- task_events that the projector writes as their owner. A row that another
-- role deleted or changed made the next event of its task fail to apply, or
-- moved the statistics off the events, so only the owner writes them now.
--
-- The checkpoints of the read model's projection (agent_tasks, and
-- agent_tasks_rebuild of a rebuild) get the same protection, because moving
-- one forward makes the projector skip events. service_role bypasses row
-- level security on Supabase, so a trigger checks it. service_role keeps
-- writing the checkpoints of other projections, such as those of eventsourcing
-- process applications that use this schema.

do $$
declare
    name text;
begin
    if exists (select from pg_roles where rolname = 'service_role') then
        foreach name in array array[
            'agent_tasks', 'task_updates', 'task_statistics',
            'task_duration_bins', 'task_statistics_totals',
            'task_duration_bins_totals'
        ] loop
            execute format(
                'revoke insert, update, delete, truncate on %I.%I from service_role',
                current_schema(), name);
        end loop;
    end if;
end $$;

create or replace function projection_checkpoints_guard() returns trigger
language plpgsql as $$
begin
    if current_user = 'service_role'
       and new.projection in ('agent_tasks', 'agent_tasks_rebuild') then
        raise exception 'only the projector may change the checkpoint of %',
            new.projection
            using errcode = 'insufficient_privilege';
    end if;
    return new;
end $$;

drop trigger if exists projection_checkpoints_guard on projection_checkpoints;
create trigger projection_checkpoints_guard
    before insert or update on projection_checkpoints
    for each row execute function projection_checkpoints_guard();
