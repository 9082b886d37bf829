-- The recording pipeline's queue (TENANCY.md section 5). The queue is the calls table itself:
-- a call whose recording_status is 'queued' is a job. Claiming reads across orgs, so it is a
-- named cross-org operation (SECURITY DEFINER, owned by voxanne_system); everything a job does
-- afterwards runs in its own org's tenant transaction.

ALTER TABLE calls
    -- Claims so far; the claim that reaches the maximum ends failed.
    ADD COLUMN recording_attempts integer NOT NULL DEFAULT 0 CHECK (recording_attempts >= 0),
    -- Not before this time (backoff after a failure); NULL: now.
    ADD COLUMN recording_next_attempt_at timestamptz,
    -- A 'processing' row whose lease has run out belongs to a crashed worker.
    -- NULL on a 'processing' row (written before this migration): stale at once.
    ADD COLUMN recording_lease_until timestamptz;

-- The claim's per-org probe (org first, like every tenant index) and the stale sweep.
CREATE INDEX calls_org_recording_queue_idx ON calls (org_id, recording_next_attempt_at NULLS FIRST, created_at, id)
    WHERE recording_status = 'queued';
CREATE INDEX calls_org_recording_lease_idx ON calls (org_id, recording_lease_until)
    WHERE recording_status = 'processing';

GRANT UPDATE (recording_status, recording_attempts, recording_lease_until, recording_next_attempt_at)
    ON calls TO voxanne_system;

-- Claims up to p_batch queued recordings of active orgs whose time has come, shared out
-- round-robin across the orgs that have work: each active org offers at most p_batch of its
-- oldest due jobs, they are ranked within their org, and the batch takes rank 1 of every org
-- before rank 2 of any (ties between orgs broken at random, so no org is always last). One
-- statement whatever the number of orgs. Rows another worker holds are skipped, not waited
-- for. The claimed rows become 'processing' with a lease, and their attempt is counted.
CREATE FUNCTION app.claim_recordings(p_batch integer, p_lease interval)
    RETURNS TABLE (org_id uuid, call_id uuid, recording_url text, attempt integer)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH candidates AS (
        SELECT due.org_id, due.id,
               row_number() OVER (PARTITION BY due.org_id
                                  ORDER BY due.recording_next_attempt_at NULLS FIRST, due.created_at, due.id) AS rank
          FROM public.organizations o
          CROSS JOIN LATERAL (
                SELECT c.org_id, c.id, c.recording_next_attempt_at, c.created_at
                  FROM public.calls c
                 WHERE c.org_id = o.id
                   AND c.recording_status = 'queued'
                   AND (c.recording_next_attempt_at IS NULL OR c.recording_next_attempt_at <= now())
                 ORDER BY c.recording_next_attempt_at NULLS FIRST, c.created_at, c.id
                 LIMIT greatest(p_batch, 0)) due
         WHERE o.status = 'active'
    ),
    picked AS (
        SELECT cand.org_id, cand.id FROM candidates cand ORDER BY cand.rank, random() LIMIT greatest(p_batch, 0)
    ),
    locked AS (
        SELECT c.org_id, c.id
          FROM public.calls c
         WHERE (c.org_id, c.id) IN (SELECT p.org_id, p.id FROM picked p)
           AND c.recording_status = 'queued'
           FOR UPDATE OF c SKIP LOCKED
    )
    UPDATE public.calls c
       SET recording_status = 'processing',
           recording_attempts = c.recording_attempts + 1,
           recording_lease_until = now() + p_lease,
           recording_next_attempt_at = NULL
      FROM locked l
     WHERE c.org_id = l.org_id AND c.id = l.id
    RETURNING c.org_id, c.id, c.recording_url, c.recording_attempts
$$;
ALTER FUNCTION app.claim_recordings(integer, interval) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.claim_recordings(integer, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.claim_recordings(integer, interval) TO voxanne_app;

-- Puts back in the queue the recordings of active orgs left 'processing' by a worker that
-- died: their lease ran out. A suspended org's rows are left as they are. Returns how many.
CREATE FUNCTION app.requeue_stale_recordings()
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH requeued AS (
        UPDATE public.calls c
           SET recording_status = 'queued', recording_lease_until = NULL
          FROM public.organizations o
         WHERE o.id = c.org_id AND o.status = 'active'
           AND c.recording_status = 'processing'
           AND coalesce(c.recording_lease_until, '-infinity') < now()
        RETURNING 1
    )
    SELECT count(*) FROM requeued
$$;
ALTER FUNCTION app.requeue_stale_recordings() OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.requeue_stale_recordings() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.requeue_stale_recordings() TO voxanne_app;

-- The queue depth over all orgs, counts only, for /metrics: `queued` (due now), `waiting`
-- (queued, in backoff after a failure) and `processing`. Both partial indexes cover it, so a
-- scrape never reads the stored history.
CREATE FUNCTION app.recording_queue_depth()
    RETURNS TABLE (status text, depth bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'queued', count(*) FROM public.calls c
     WHERE c.recording_status = 'queued'
       AND (c.recording_next_attempt_at IS NULL OR c.recording_next_attempt_at <= now())
    UNION ALL
    SELECT 'waiting', count(*) FROM public.calls c
     WHERE c.recording_status = 'queued' AND c.recording_next_attempt_at > now()
    UNION ALL
    SELECT 'processing', count(*) FROM public.calls c WHERE c.recording_status = 'processing'
$$;
ALTER FUNCTION app.recording_queue_depth() OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.recording_queue_depth() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.recording_queue_depth() TO voxanne_app;
