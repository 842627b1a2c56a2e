-- Migration 4 of the PostgreSQL store: per-user job queues (sw_jobs, with one row per user
-- in sw_job_queues) and the PL/pgSQL functions that change queues (one call, one round trip,
-- each).
--
-- Exactness. A claim must count the running jobs and start others atomically across every
-- instance, which a count followed by an update cannot do under READ COMMITTED (two claimers
-- both see the last free slot). Every claim takes one transaction-level advisory lock of the
-- schema (the claim lock) exclusively; every other change to the queues (submit, cancel,
-- reap, purge) takes it shared, plus the row of its user's queue. So claims run one at a
-- time and never beside a change to the queues, and each statement after the lock sees every
-- commit before it (a fresh snapshot per statement of a VOLATILE function). Progress,
-- heartbeats and finishing take no such lock: they only touch running jobs, and a finish can
-- only free a slot, so a claim that does not see one is merely conservative.
--
-- The queue rows keep what a fair claim needs without reading every waiting user: the seq of
-- the user's oldest waiting job (head) and the latest started_at of the user's stored jobs
-- (served, -infinity if none), indexed in claim order. A queue row exists while the user has
-- stored jobs. Lock order everywhere: the claim lock, queue rows (by user id), job rows. The
-- clock is read after the locks. "Waiting" is status IN ('queued', 'interrupted'), "running"
-- is status IN ('running', 'cancelling').
--
-- Format (read by sessionward.stores.postgres.schema.read_sql): a '-- migration: N' line,
-- then statements, each starting at a '-- name: <name>' line followed by its comments, and
-- ending with ';' (not sent). {names} are the schema's qualified tables and functions
-- (schema.table_names), filled in by psycopg.sql. Released migrations are never edited: a
-- change is a new migration. tests/stores/test_postgres_schema_files.py pins the text sent.

-- migration: 4

-- name: jobs_table
CREATE TABLE {jobs} (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job_id text NOT NULL UNIQUE,
        user_id text COLLATE "C" NOT NULL,
        kind text NOT NULL,
        params text NOT NULL,
        status text NOT NULL CONSTRAINT sw_jobs_status CHECK (status IN ('queued', 'running',
            'cancelling', 'succeeded', 'failed', 'cancelled', 'interrupted')),
        progress float8 NOT NULL,
        message text NOT NULL,
        result text,
        error text,
        created_at float8 NOT NULL,
        started_at float8,
        finished_at float8,
        attempts integer NOT NULL,
        max_attempts integer NOT NULL,
        worker_id text,
        lease_expires_at float8
    );

-- name: sw_jobs_waiting
-- Each user's waiting jobs by seq: a claim's picks, a queue's head, a submit's count.
CREATE INDEX sw_jobs_waiting ON {jobs} (user_id, seq) WHERE status IN ('queued', 'interrupted');

-- name: sw_jobs_by_user
-- list_jobs, newest first.
CREATE INDEX sw_jobs_by_user ON {jobs} (user_id, seq);

-- name: sw_jobs_started
-- A user's latest start, found again when a purge deletes it.
CREATE INDEX sw_jobs_started ON {jobs} (user_id, started_at) WHERE started_at IS NOT NULL;

-- name: sw_jobs_running
-- Running jobs by lease: the reaper's expired leases, and a claim's running counts.
CREATE INDEX sw_jobs_running ON {jobs} (lease_expires_at) WHERE status IN ('running', 'cancelling');

-- name: sw_jobs_finished
-- Finished jobs oldest first, for purges (seq: a fixed order among equal times).
CREATE INDEX sw_jobs_finished ON {jobs} (finished_at, seq) WHERE status IN ('succeeded', 'failed', 'cancelled');

-- name: queues_table
CREATE TABLE {queues} (
        user_id text COLLATE "C" PRIMARY KEY,
        head bigint,
        served float8 NOT NULL
    );

-- name: sw_job_queues_next
-- Users with waiting jobs, in the order an idle user is served
-- (sessionward.rules.jobs.fair_order).
CREATE INDEX sw_job_queues_next ON {queues} (served, head) WHERE head IS NOT NULL;

-- name: lock_queue_function
-- Lock the user's queue row, creating it if there is none (then: true).
CREATE FUNCTION {lock_queue}(_user text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $sw_lock_job_queue$
BEGIN
    LOOP
        PERFORM 1 FROM {queues} AS q WHERE q.user_id = _user FOR UPDATE;
        IF FOUND THEN
            RETURN false;
        END IF;
        -- Waits for a rival creating the same row, then finds it.
        INSERT INTO {queues} VALUES (_user, NULL, '-infinity') ON CONFLICT DO NOTHING;
        IF FOUND THEN
            RETURN true;
        END IF;
    END LOOP;
END
$sw_lock_job_queue$;

-- name: submit_job_function
-- submit_job (sessionward.rules.jobs.resubmitted decides a repeat). A retry of a submit
-- that committed (its reply lost), or the same submit sent twice at once, finds the job and
-- returns it; another job under the same id is refused. A refusal leaves no queue row behind.
CREATE FUNCTION {submit_job}(
    _job_id text, _user text, _kind text, _params text, _max_attempts integer,
    _max_queued bigint, _now float8, _lock bigint
) RETURNS SETOF {jobs} LANGUAGE plpgsql VOLATILE AS $sw_submit_job$
DECLARE
    _j {jobs};
    _created boolean;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(_lock);
    _created := {lock_queue}(_user);
    SELECT j.* INTO _j FROM {jobs} AS j WHERE j.job_id = _job_id;
    IF FOUND THEN
        IF _j.user_id = _user AND _j.kind = _kind AND _j.params = _params THEN
            RETURN NEXT _j;
            RETURN;
        END IF;
        RAISE unique_violation USING MESSAGE = 'sw_submit_job: the job id is taken';
    END IF;
    IF (SELECT count(*) FROM {jobs} AS j WHERE j.user_id = _user AND j.status IN ('queued', 'interrupted'))
        >= _max_queued THEN
        IF _created THEN
            DELETE FROM {queues} AS q WHERE q.user_id = _user;
        END IF;
        RETURN;
    END IF;
    INSERT INTO {jobs} AS j (job_id, user_id, kind, params, status, progress, message,
        created_at, attempts, max_attempts)
    VALUES (_job_id, _user, _kind, _params, 'queued', 0, '', COALESCE(_now, extract(epoch FROM clock_timestamp())::float8), 0, _max_attempts)
    RETURNING j.* INTO _j;
    UPDATE {queues} AS q SET head = COALESCE(q.head, _j.seq) WHERE q.user_id = _user;
    RETURN NEXT _j;
END
$sw_submit_job$;

-- name: pick_jobs_function
-- The jobs sessionward.rules.jobs.fair_order would pick (seqs, in order), in one snapshot,
-- for a claimer holding the claim lock; it mirrors that function. The rule restated: the
-- k-th waiting job (k = 0, 1, ...) of a user running n jobs and last served at s has the key
-- (n + k, s if k = 0 else +infinity, seq), and is a candidate while n + k < per_user. Each
-- pick of the greedy rule is the smallest key among the users' next jobs, and a user's keys
-- grow with k, so the picks are the candidates in key order, up to the free slots. A user
-- can have a candidate among the first "free" only if fewer than "free" users have a
-- smaller first key (n, s, head): so only the running users with room (at most the running
-- jobs) and the first "free" idle users of the queue index are read, and of each at most
-- "free" waiting jobs. Nothing is read when no slot is free (LIMIT 0).
CREATE FUNCTION {pick_jobs}(_want bigint, _per_user bigint, _overall bigint)
RETURNS bigint[] LANGUAGE plpgsql VOLATILE AS $sw_pick_jobs$
BEGIN
RETURN (WITH running AS MATERIALIZED (
    SELECT j.user_id, count(*) AS n FROM {jobs} AS j WHERE j.status IN ('running', 'cancelling') GROUP BY j.user_id
), free AS MATERIALIZED (
    SELECT GREATEST(LEAST(_want, _overall - COALESCE(sum(r.n), 0)), 0) AS n FROM running AS r
), idle AS MATERIALIZED (
    SELECT q.user_id, q.head, 0::bigint AS n, q.served FROM {queues} AS q
    WHERE q.head IS NOT NULL AND q.user_id <> ALL(ARRAY(SELECT r.user_id FROM running AS r))
    ORDER BY q.served, q.head LIMIT (SELECT free.n FROM free)
), firsts AS MATERIALIZED (
    SELECT u.*, free.n AS free FROM (
        SELECT q.user_id, q.head, r.n, q.served
        FROM running AS r JOIN {queues} AS q ON q.user_id = r.user_id
        WHERE r.n < _per_user AND q.head IS NOT NULL
        UNION ALL
        SELECT * FROM idle
    ) AS u CROSS JOIN free
    ORDER BY u.n, u.served, u.head LIMIT (SELECT free.n FROM free)
)
SELECT COALESCE(array_agg(p.seq ORDER BY p.busy, p.served, p.seq), ARRAY[]::bigint[])
FROM (
    SELECT c.seq, f.n + c.k AS busy,
           CASE WHEN c.k = 0 THEN f.served ELSE 'infinity' END AS served
    FROM firsts AS f CROSS JOIN LATERAL (
        SELECT j.seq, row_number() OVER (ORDER BY j.seq) - 1 AS k
        FROM {jobs} AS j WHERE j.user_id = f.user_id AND j.status IN ('queued', 'interrupted')
        ORDER BY j.seq LIMIT LEAST(_per_user - f.n, f.free)
    ) AS c
    ORDER BY 2, 3, 1 LIMIT (SELECT free.n FROM free)
) AS p);
END
$sw_pick_jobs$;

-- name: claim_jobs_function
-- claim_jobs: the claim lock, the picks (sw_pick_jobs), the jobs started (and returned in
-- the order picked), then their users' queues: served now, the next head.
CREATE FUNCTION {claim_jobs}(
    _worker text, _want bigint, _per_user bigint, _overall bigint, _lease float8,
    _now float8, _lock bigint
) RETURNS SETOF {jobs} LANGUAGE plpgsql VOLATILE AS $sw_claim_jobs$
DECLARE
    _picked bigint[];
    _clock float8;
    _started bigint;
BEGIN
    IF _want <= 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(_lock);
    _picked := {pick_jobs}(_want, _per_user, _overall);
    IF cardinality(_picked) = 0 THEN
        RETURN;
    END IF;
    _clock := COALESCE(_now, extract(epoch FROM clock_timestamp())::float8);
    RETURN QUERY WITH claimed AS (
        UPDATE {jobs} AS j
        SET status = 'running', attempts = j.attempts + 1, started_at = _clock,
            worker_id = _worker, lease_expires_at = _clock + _lease
        -- Still waiting, said so that no plan reads the waiting index for 'seq = ANY'.
        WHERE j.seq = ANY(_picked) AND j.status NOT IN ('running', 'cancelling', 'succeeded', 'failed', 'cancelled')
        RETURNING j.*
    )
    SELECT c.* FROM claimed AS c
    JOIN unnest(_picked) WITH ORDINALITY AS p(seq, i) ON p.seq = c.seq
    ORDER BY p.i;
    GET DIAGNOSTICS _started = ROW_COUNT;
    IF _started <> cardinality(_picked) THEN
        RAISE EXCEPTION 'sw_claim_jobs: a picked job changed under the claim lock';
    END IF;
    UPDATE {queues} AS q SET served = GREATEST(q.served, _clock), head = (SELECT min(w.seq) FROM {jobs} AS w WHERE w.user_id = q.user_id AND w.status IN ('queued', 'interrupted'))
    WHERE q.user_id = ANY(ARRAY(SELECT j.user_id FROM {jobs} AS j WHERE j.seq = ANY(_picked)));
END
$sw_claim_jobs$;

-- name: cancel_job_function
-- cancel_job. The job row is always written, so the row returned is the job as this call
-- left it; the queue's head moves on if it was the head.
CREATE FUNCTION {cancel_job}(_user text, _job_id text, _now float8, _lock bigint)
RETURNS SETOF {jobs} LANGUAGE plpgsql VOLATILE AS $sw_cancel_job$
DECLARE
    _j {jobs};
    _clock float8;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(_lock);
    PERFORM 1 FROM {queues} AS q WHERE q.user_id = _user FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;  -- the user has no jobs
    END IF;
    _clock := COALESCE(_now, extract(epoch FROM clock_timestamp())::float8);
    UPDATE {jobs} AS j
    SET status = CASE WHEN j.status IN ('queued', 'interrupted') THEN 'cancelled'
                      WHEN j.status = 'running' THEN 'cancelling' ELSE j.status END,
        finished_at = CASE WHEN j.status IN ('queued', 'interrupted') THEN _clock ELSE j.finished_at END
    WHERE j.job_id = _job_id AND j.user_id = _user
    RETURNING j.* INTO _j;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE {queues} AS q SET head = (SELECT min(w.seq) FROM {jobs} AS w WHERE w.user_id = q.user_id AND w.status IN ('queued', 'interrupted')) WHERE q.user_id = _user AND q.head = _j.seq;
    RETURN NEXT _j;
END
$sw_cancel_job$;

-- name: reap_jobs_function
-- reap_jobs, mirroring sessionward.rules.jobs.reap (the texts of an interrupted and a failed
-- job are passed in, as that function words them), bounded: the first _limit expired leases
-- by seq, their users' queues locked, then each job locked unless its worker holds it right
-- now (SKIP LOCKED: the next pass takes it) and judged again: a lease renewed, or a job
-- finished, meanwhile is no longer dead. An interrupted job is waiting again, in its place.
CREATE FUNCTION {reap_jobs}(
    _limit bigint, _now float8, _interrupted text, _failed text, _lock bigint
) RETURNS SETOF {jobs} LANGUAGE plpgsql VOLATILE AS $sw_reap_jobs$
DECLARE
    _dead bigint[];
    _reaped {jobs}[];
    _clock float8;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(_lock);
    _dead := ARRAY(SELECT j.seq FROM {jobs} AS j WHERE j.status IN ('running', 'cancelling')
                   AND j.lease_expires_at <= COALESCE(_now, extract(epoch FROM clock_timestamp())::float8) ORDER BY j.seq LIMIT _limit);
    PERFORM 1 FROM {queues} AS q WHERE q.user_id = ANY(ARRAY(
        SELECT j.user_id FROM {jobs} AS j WHERE j.seq = ANY(_dead)
    )) ORDER BY q.user_id FOR UPDATE;
    _clock := COALESCE(_now, extract(epoch FROM clock_timestamp())::float8);
    WITH dead AS MATERIALIZED (
        SELECT j.seq FROM {jobs} AS j
        WHERE j.seq = ANY(_dead) AND j.status IN ('running', 'cancelling') AND j.lease_expires_at <= _clock
        FOR UPDATE OF j SKIP LOCKED
    ), reaped AS (
        UPDATE {jobs} AS j SET
            status = CASE WHEN j.status = 'cancelling' THEN 'cancelled'
                          WHEN j.attempts < j.max_attempts THEN 'interrupted' ELSE 'failed' END,
            finished_at = CASE WHEN j.status = 'running' AND j.attempts < j.max_attempts
                               THEN j.finished_at ELSE _clock END,
            message = CASE WHEN j.status = 'running' AND j.attempts < j.max_attempts
                           THEN _interrupted ELSE j.message END,
            error = CASE WHEN j.status = 'running' AND j.attempts >= j.max_attempts
                         THEN _failed ELSE j.error END,
            worker_id = NULL, lease_expires_at = NULL
        FROM dead WHERE j.seq = dead.seq
        RETURNING j AS job
    )
    SELECT COALESCE(array_agg(r.job ORDER BY (r.job).seq), ARRAY[]::{jobs}[]) INTO _reaped
    FROM reaped AS r;
    UPDATE {queues} AS q SET head = (SELECT min(w.seq) FROM {jobs} AS w WHERE w.user_id = q.user_id AND w.status IN ('queued', 'interrupted')) WHERE q.user_id = ANY(ARRAY(
        SELECT r.user_id FROM unnest(_reaped) AS r WHERE r.status = 'interrupted'));
    RETURN QUERY SELECT * FROM unnest(_reaped);
END
$sw_reap_jobs$;

-- name: purge_jobs_function
-- purge_jobs: up to _limit jobs finished before _before, oldest finished first (the
-- index's order: a batch never reads past its LIMIT), skipping any locked right now; then
-- each user's served found again among the jobs left, and a queue with no jobs deleted.
CREATE FUNCTION {purge_jobs}(_before float8, _limit bigint, _lock bigint)
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $sw_purge_jobs$
DECLARE
    _old bigint[];
    _users text[];
    _gone bigint;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(_lock);
    _old := ARRAY(SELECT j.seq FROM {jobs} AS j WHERE j.status IN ('succeeded', 'failed', 'cancelled')
                  AND j.finished_at < _before ORDER BY j.finished_at, j.seq LIMIT _limit);
    _users := ARRAY(SELECT DISTINCT j.user_id FROM {jobs} AS j WHERE j.seq = ANY(_old));
    PERFORM 1 FROM {queues} AS q WHERE q.user_id = ANY(_users) ORDER BY q.user_id FOR UPDATE;
    WITH gone AS (
        DELETE FROM {jobs} AS j WHERE j.seq IN (
            SELECT d.seq FROM {jobs} AS d WHERE d.seq = ANY(_old) AND d.status IN ('succeeded', 'failed', 'cancelled')
            FOR UPDATE OF d SKIP LOCKED)
        RETURNING 1
    )
    SELECT count(*) INTO _gone FROM gone;
    UPDATE {queues} AS q SET served = COALESCE((SELECT max(s.started_at) FROM {jobs} AS s
        WHERE s.user_id = q.user_id AND s.started_at IS NOT NULL), '-infinity')
    WHERE q.user_id = ANY(_users);
    DELETE FROM {queues} AS q WHERE q.user_id = ANY(_users)
        AND NOT EXISTS (SELECT 1 FROM {jobs} AS j WHERE j.user_id = q.user_id);
    RETURN _gone;
END
$sw_purge_jobs$;
