-- Migration 5 of the PostgreSQL store: a clean stop hands its worker's jobs back
-- (sw_release_jobs). Same format, locks and lock order as jobs.sql (migration 4): the claim
-- lock shared, the users' queue rows (by user id), then the job rows.

-- migration: 5

-- name: release_jobs_function
-- release_jobs, mirroring sessionward.rules.jobs.release (its message is passed in, as that
-- function words it): of the given jobs, those this worker holds are locked (a finish, a
-- heartbeat or a reap on one of them waits, or is waited for, and is judged again after) and
-- handed back: a cancelling one is cancelled; a running one is queued again in its place,
-- its attempt not charged, progress 0. Their users' queues get their heads again.
CREATE FUNCTION {release_jobs}(
    _worker text, _job_ids text[], _now float8, _released text, _lock bigint
) RETURNS SETOF {jobs} LANGUAGE plpgsql VOLATILE AS $sw_release_jobs$
DECLARE
    _out {jobs}[];
    _clock float8;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(_lock);
    PERFORM 1 FROM {queues} AS q WHERE q.user_id = ANY(ARRAY(
        SELECT j.user_id FROM {jobs} AS j WHERE j.job_id = ANY(_job_ids) AND j.worker_id = _worker
    )) ORDER BY q.user_id FOR UPDATE;
    _clock := COALESCE(_now, extract(epoch FROM clock_timestamp())::float8);
    WITH held AS MATERIALIZED (
        SELECT j.seq FROM {jobs} AS j
        WHERE j.job_id = ANY(_job_ids) AND j.worker_id = _worker
          AND j.status IN ('running', 'cancelling')
        ORDER BY j.seq FOR UPDATE OF j
    ), released AS (
        UPDATE {jobs} AS j SET
            status = CASE WHEN j.status = 'cancelling' THEN 'cancelled' ELSE 'queued' END,
            finished_at = CASE WHEN j.status = 'cancelling' THEN _clock ELSE j.finished_at END,
            attempts = CASE WHEN j.status = 'cancelling' THEN j.attempts
                            ELSE GREATEST(j.attempts - 1, 0) END,
            progress = CASE WHEN j.status = 'cancelling' THEN j.progress ELSE 0 END,
            message = CASE WHEN j.status = 'cancelling' THEN j.message ELSE _released END,
            worker_id = NULL, lease_expires_at = NULL
        FROM held WHERE j.seq = held.seq
          AND j.worker_id = _worker AND j.status IN ('running', 'cancelling')
        RETURNING j AS job
    )
    SELECT COALESCE(array_agg(r.job ORDER BY (r.job).seq), ARRAY[]::{jobs}[]) INTO _out
    FROM released AS r;
    UPDATE {queues} AS q SET head = (SELECT min(w.seq) FROM {jobs} AS w WHERE w.user_id = q.user_id AND w.status IN ('queued', 'interrupted')) WHERE q.user_id = ANY(ARRAY(
        SELECT r.user_id FROM unnest(_out) AS r WHERE r.status = 'queued'));
    RETURN QUERY SELECT * FROM unnest(_out);
END
$sw_release_jobs$;
