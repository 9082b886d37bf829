-- SMS confirmations (TENANCY.md section 5). Booking an appointment for a contact with a phone
-- queues one row here, in the booking's own transaction; a worker sends it through the
-- clinic's SMS provider. Like the recordings, the queue is the table itself: a 'queued' row
-- is a job, claimed across orgs by one named statement, and everything done for it afterwards
-- runs in its own org's tenant transaction.
--
-- queued -> sending (claimed, with a lease) -> sent (the provider accepted it) -> delivered,
-- undelivered or failed (the provider's status callbacks, one way only); queued -> suppressed
-- (the number is on the clinic's do-not-call list; never changes again); a failed attempt goes
-- back to queued (with a backoff) or, at the last attempt or on a refusal, to failed.

ALTER TABLE sms_confirmation_logs DROP CONSTRAINT sms_confirmation_logs_status_check;
ALTER TABLE sms_confirmation_logs
    ADD CONSTRAINT sms_confirmation_logs_status_check CHECK (status IN
        ('queued', 'sending', 'sent', 'delivered', 'undelivered', 'failed', 'suppressed')),
    -- The clinic's number it was sent from (one of its phone_numbers), once sent.
    ADD COLUMN from_number text,
    -- Claims so far; the claim that reaches the maximum ends failed.
    ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Not before this time (backoff after a failure); NULL: now.
    ADD COLUMN next_attempt_at timestamptz,
    -- A 'sending' row whose lease has run out belongs to a worker that died.
    ADD COLUMN lease_until timestamptz,
    -- Why the last attempt failed, or why the message was suppressed.
    ADD COLUMN last_error text CHECK (length(last_error) <= 2000),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- One confirmation per appointment; a provider's message id names one row of a clinic.
CREATE UNIQUE INDEX sms_confirmation_logs_org_appointment_key ON sms_confirmation_logs (org_id, appointment_id)
    WHERE appointment_id IS NOT NULL;
CREATE UNIQUE INDEX sms_confirmation_logs_org_provider_message_key ON sms_confirmation_logs (org_id, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- The claim's per-org probe (org first, like every tenant index) and the stale sweep.
CREATE INDEX sms_confirmation_logs_org_queue_idx ON sms_confirmation_logs (org_id, next_attempt_at NULLS FIRST, created_at, id)
    WHERE status = 'queued';
CREATE INDEX sms_confirmation_logs_org_lease_idx ON sms_confirmation_logs (org_id, lease_until)
    WHERE status = 'sending';

GRANT UPDATE (status, attempts, lease_until, next_attempt_at, updated_at)
    ON sms_confirmation_logs TO voxanne_system;

-- Claims up to p_batch queued messages of active orgs whose time has come, shared out
-- round-robin across the orgs that have work, exactly like app.claim_recordings: each active
-- org offers at most p_batch of its oldest due messages, they are ranked within their org,
-- and the batch takes rank 1 of every org before rank 2 of any (ties between orgs broken at
-- random). One statement whatever the number of orgs. Rows another worker holds are skipped,
-- not waited for. The claimed rows become 'sending' with a lease, and their attempt is counted.
CREATE FUNCTION app.claim_sms(p_batch integer, p_lease interval)
    RETURNS TABLE (org_id uuid, sms_id uuid, appointment_id uuid, to_number text, body text, attempt integer)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH candidates AS (
        SELECT due.org_id, due.id,
               row_number() OVER (PARTITION BY due.org_id
                                  ORDER BY due.next_attempt_at NULLS FIRST, due.created_at, due.id) AS rank
          FROM public.organizations o
          CROSS JOIN LATERAL (
                SELECT s.org_id, s.id, s.next_attempt_at, s.created_at
                  FROM public.sms_confirmation_logs s
                 WHERE s.org_id = o.id
                   AND s.status = 'queued'
                   AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())
                 ORDER BY s.next_attempt_at NULLS FIRST, s.created_at, s.id
                 LIMIT greatest(p_batch, 0)) due
         WHERE o.status = 'active'
    ),
    picked AS (
        SELECT cand.org_id, cand.id FROM candidates cand ORDER BY cand.rank, random() LIMIT greatest(p_batch, 0)
    ),
    locked AS (
        SELECT s.org_id, s.id
          FROM public.sms_confirmation_logs s
         WHERE (s.org_id, s.id) IN (SELECT p.org_id, p.id FROM picked p)
           AND s.status = 'queued'
           FOR UPDATE OF s SKIP LOCKED
    )
    UPDATE public.sms_confirmation_logs s
       SET status = 'sending',
           attempts = s.attempts + 1,
           lease_until = now() + p_lease,
           next_attempt_at = NULL,
           updated_at = now()
      FROM locked l
     WHERE s.org_id = l.org_id AND s.id = l.id
    RETURNING s.org_id, s.id, s.appointment_id, s.to_number, s.body, s.attempts
$$;
ALTER FUNCTION app.claim_sms(integer, interval) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.claim_sms(integer, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.claim_sms(integer, interval) TO voxanne_app;

-- Puts back in the queue the messages of active orgs left 'sending' by a worker that died:
-- their lease ran out. (The provider may have accepted the message before the worker died:
-- sending is at least once, never lost.) A suspended org's rows are left as they are.
-- Returns how many.
CREATE FUNCTION app.requeue_stale_sms()
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH requeued AS (
        UPDATE public.sms_confirmation_logs s
           SET status = 'queued', lease_until = NULL, updated_at = now()
          FROM public.organizations o
         WHERE o.id = s.org_id AND o.status = 'active'
           AND s.status = 'sending'
           AND coalesce(s.lease_until, '-infinity') < now()
        RETURNING 1
    )
    SELECT count(*) FROM requeued
$$;
ALTER FUNCTION app.requeue_stale_sms() OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.requeue_stale_sms() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.requeue_stale_sms() TO voxanne_app;

-- The SMS queue depth over all orgs, counts only, for /metrics: `queued` (due now),
-- `waiting` (queued, in backoff after a failure) and `sending`. The partial indexes cover it.
CREATE FUNCTION app.sms_queue_depth()
    RETURNS TABLE (status text, depth bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'queued', count(*) FROM public.sms_confirmation_logs s
     WHERE s.status = 'queued' AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())
    UNION ALL
    SELECT 'waiting', count(*) FROM public.sms_confirmation_logs s
     WHERE s.status = 'queued' AND s.next_attempt_at > now()
    UNION ALL
    SELECT 'sending', count(*) FROM public.sms_confirmation_logs s WHERE s.status = 'sending'
$$;
ALTER FUNCTION app.sms_queue_depth() OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.sms_queue_depth() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.sms_queue_depth() TO voxanne_app;
