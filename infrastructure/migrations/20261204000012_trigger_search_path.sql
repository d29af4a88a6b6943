-- Run the trigger functions that read task_events with this ledger's schema as
-- their search_path. Re-runnable: setting it again changes nothing.
--
-- They name task_events without a schema, so they used to find it through the
-- search_path of the session that inserted. Plain SQL run with another
-- search_path checked a new event against another ledger's events, or failed
-- to find the table. FROM CURRENT keeps the search_path under which this
-- migration runs, which names the ledger's schema first.

alter function task_events_fill_user_id() set search_path from current;
alter function task_events_check_version() set search_path from current;
