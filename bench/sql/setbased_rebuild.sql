-- Build the agent_tasks read model from task_events in one statement: the
-- set-based baseline of the projector's catch-up. It follows the fold in
-- domain/record.py (evolve):
--   status, version, position, updated_at come from each task's last event;
--   response and response_data from a last event that completed, and
--   error_message from a last event that failed (error_message) or was
--   cancelled (reason), because only a retry can follow a terminal event and a
--   retry clears all three;
--   started_at is the first start of any attempt, wait_ms runs from creation
--   to it, and duration_ms from it to a terminal last event;
--   attempts is one plus the number of retries;
--   metadata is the shallow merge of every event's metadata in version order.
insert into {target} (
    id, agent_id, agent_name, message, task_type, user_id, status, response,
    response_data, error_message, metadata, created_at, updated_at, started_at,
    finished_at, duration_ms, wait_ms, attempts, version, created_position,
    position
)
select
    a.task_id,
    c.payload ->> 'agent_id',
    c.payload ->> 'agent_name',
    c.payload ->> 'message',
    c.payload ->> 'task_type',
    c.payload ->> 'user_id',
    case l.event_type
        when 'created' then 'pending'
        when 'retried' then 'pending'
        when 'started' then 'processing'
        else l.event_type
    end,
    case when l.event_type = 'completed' then l.payload ->> 'response' end,
    case
        when l.event_type = 'completed'
            then nullif(l.payload -> 'response_data', 'null'::jsonb)
    end,
    case l.event_type
        when 'failed' then l.payload ->> 'error_message'
        when 'cancelled' then l.payload ->> 'reason'
    end,
    a.metadata,
    c.occurred_at,
    l.occurred_at,
    a.started_at,
    case when l.event_type in ('completed', 'failed', 'cancelled') then l.occurred_at end,
    case
        when l.event_type in ('completed', 'failed', 'cancelled')
            and a.started_at is not null
            then greatest(
                0, floor(extract(epoch from l.occurred_at - a.started_at) * 1000)
            )::bigint
    end,
    case
        when a.started_at is not null
            then greatest(
                0, floor(extract(epoch from a.started_at - c.occurred_at) * 1000)
            )::bigint
    end,
    1 + a.retries,
    a.version,
    c.position,
    l.position
from (
    select
        task_id,
        max(version) as version,
        min(occurred_at) filter (where event_type = 'started') as started_at,
        count(*) filter (where event_type = 'retried') as retries,
        {merge}(payload -> 'metadata' order by version) as metadata
    from {events}
    group by task_id
) a
join {events} c on c.task_id = a.task_id and c.version = 1
join {events} l on l.task_id = a.task_id and l.version = a.version
