-- The task queue. Generic: `kind` and `payload` are data; nothing here knows about orders.
CREATE TABLE tasks (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             TEXT        NOT NULL CHECK (kind <> ''),
    payload          JSONB       NOT NULL DEFAULT '{}',
    state            TEXT        NOT NULL DEFAULT 'waiting'
                                 CHECK (state IN ('waiting', 'running', 'completed', 'dead')),
    attempts         INTEGER     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER     NOT NULL CHECK (max_attempts >= 1),
    run_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A fresh token per claim: completion must present it, so a worker whose claim was
    -- lost (lease expired, task re-claimed) cannot commit.
    claim_token      UUID,
    lease_expires_at TIMESTAMPTZ,
    last_error       TEXT,
    -- One entry per failed attempt: {"attempt", "at", "error"}.
    errors           JSONB       NOT NULL DEFAULT '[]',
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at     TIMESTAMPTZ,
    CHECK ((state = 'running') = (claim_token IS NOT NULL AND lease_expires_at IS NOT NULL))
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);

-- Claim paths stay small: only rows a worker could take are indexed.
CREATE INDEX tasks_waiting_idx ON tasks (kind, run_at, id) WHERE state = 'waiting';
CREATE INDEX tasks_running_lease_idx ON tasks (kind, lease_expires_at) WHERE state = 'running';
CREATE INDEX tasks_dead_idx ON tasks (kind, updated_at) WHERE state = 'dead';
-- Lets the domain find the tasks of one aggregate (e.g. an order's tasks) for operators.
CREATE INDEX tasks_payload_idx ON tasks USING gin (payload jsonb_path_ops);
