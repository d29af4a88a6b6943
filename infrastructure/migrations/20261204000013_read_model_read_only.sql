-- Let service_role read the read model but not change it. Re-runnable.
--
-- agent_tasks, task_updates and the statistics tables are folds of
-- task_events that the projector writes as their owner. A row that another
-- role deleted or changed made the next event of its task fail to apply, or
-- moved the statistics off the events, so only the owner writes them now.
-- Policies stay as they are: without the privileges they allow no change.

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
