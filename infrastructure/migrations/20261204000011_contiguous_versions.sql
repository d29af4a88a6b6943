-- Reject an event whose task has no event at the previous version.
-- Re-runnable: the function and the trigger are replaced.
--
-- A task's state is the fold of its events from version 1, and the projector
-- stops at an event it cannot fold. A writer that appends version N on top of
-- a state it remembers, rather than one it has just read, would leave a gap
-- if the database no longer holds version N - 1 (after a restore, or a failover
-- to a replica that lost the last commits). The check runs for every writer,
-- including SQL that bypasses the recorder. Versions 0 and 1 need no
-- predecessor: tasks start at 1, and eventsourcing's recorder contract writes 0.
--
-- A row-level BEFORE trigger sees the rows that the same statement inserted
-- before it, so a batch may carry several versions of one task in order.
-- https://www.postgresql.org/docs/current/trigger-datachanges.html

create or replace function task_events_check_version() returns trigger
language plpgsql as $$
begin
    if new.version > 1 and not exists (
        select 1 from task_events e
        where e.task_id = new.task_id and e.version = new.version - 1
    ) then
        raise exception 'version % of task % has no version % before it',
            new.version, new.task_id, new.version - 1
            using errcode = 'foreign_key_violation',
                  hint = 'Load the task again and decide the command on its '
                         'current version.';
    end if;
    return new;
end;
$$;

create or replace trigger task_events_check_version
    before insert on task_events
    for each row execute function task_events_check_version();
