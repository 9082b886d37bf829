-- Campaigns that really call: a clinic's leads, each campaign's audience (its targets, the
-- dialer's queue), and one `cold_call_logs` row per attempt, linked to the call it became.
--
-- A target is called only in its callee's calling hours (the campaign's window, itself within
-- 08:00-21:00, in every time zone the callee may be in: `time_zones`, from the lead or from
-- the number's country), never on the do-not-call list, never without a granted `calls`
-- consent; at most `max_concurrent_calls` of a clinic's calls are in flight at once. The
-- claim is one statement, fair across the clinics as the other jobs' are.

-- ---------------------------------------------------------------------------------------
-- A campaign's calling window (the callee's local time) and its retries (no answer, busy).
ALTER TABLE campaigns
    ADD COLUMN window_start   time NOT NULL DEFAULT '09:00' CHECK (window_start >= '08:00'),
    ADD COLUMN window_end     time NOT NULL DEFAULT '20:00' CHECK (window_end <= '21:00'),
    ADD COLUMN max_attempts   integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 10),
    ADD COLUMN retry_minutes  integer NOT NULL DEFAULT 120 CHECK (retry_minutes BETWEEN 5 AND 10080),
    ADD CONSTRAINT campaigns_window_order CHECK (window_start < window_end);

-- How many of a clinic's outbound calls may be in flight at once.
ALTER TABLE messaging_settings
    ADD COLUMN max_concurrent_calls integer NOT NULL DEFAULT 2 CHECK (max_concurrent_calls BETWEEN 1 AND 50);

-- ---------------------------------------------------------------------------------------
-- People the clinic may call who are not (yet) its patients: one row per number.
CREATE TABLE leads (
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    phone           text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    name            text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    email           text CHECK (length(email) <= 320),
    -- The callee's IANA time zone, when known; else the number's country decides.
    time_zone       text CHECK (length(time_zone) BETWEEN 1 AND 64),
    status          text NOT NULL DEFAULT 'new' CHECK (status IN
                        ('new', 'contacted', 'callback', 'booked', 'not_interested',
                         'wrong_number', 'do_not_call', 'converted')),
    -- Where the lead's consent to be called came from (a form, an event); NULL: none given.
    consent_source  text CHECK (length(btrim(consent_source)) BETWEEN 1 AND 500),
    contact_id      uuid,
    notes           text NOT NULL DEFAULT '' CHECK (length(notes) <= 2000),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    CONSTRAINT leads_org_phone_key UNIQUE (org_id, phone),
    FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id) ON DELETE SET NULL (contact_id)
);
CREATE INDEX leads_org_created_idx ON leads (org_id, created_at DESC, id DESC);
CREATE INDEX leads_org_contact_idx ON leads (org_id, contact_id);
CALL app.secure_tenant_table('leads');

-- ---------------------------------------------------------------------------------------
-- A campaign's audience, one row per number, and the dialer's queue:
--   queued  -> dialing (claimed; the platform is being asked to place the call)
--           -> calling (the platform took it; waiting for its end-of-call report)
--           -> done | queued again (no answer, busy: after `retry_minutes`) | skipped | failed
-- A `calling` row counts against the clinic's cap until its report comes, or its lease runs
-- out (then it is `failed`: never dialled twice for a lost report).
CREATE TABLE campaign_targets (
    org_id           uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    campaign_id      uuid NOT NULL,
    lead_id          uuid,
    contact_id       uuid,
    phone            text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    name             text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    -- Every zone the callee may be in; the window must be open in all of them.
    time_zones       text[] NOT NULL CHECK (cardinality(time_zones) BETWEEN 1 AND 16),
    status           text NOT NULL DEFAULT 'queued' CHECK (status IN
                         ('queued', 'dialing', 'calling', 'done', 'skipped', 'failed')),
    outcome          text,
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz,
    lease_until      timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    CONSTRAINT campaign_targets_phone_key UNIQUE (org_id, campaign_id, phone),
    FOREIGN KEY (org_id, campaign_id) REFERENCES campaigns (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, lead_id) REFERENCES leads (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id) ON DELETE CASCADE
);
CREATE INDEX campaign_targets_org_created_idx ON campaign_targets (org_id, created_at DESC, id DESC);
CREATE INDEX campaign_targets_org_queued_idx ON campaign_targets (org_id, next_attempt_at NULLS FIRST, created_at, id)
    WHERE status = 'queued';
CREATE INDEX campaign_targets_org_flight_idx ON campaign_targets (org_id) WHERE status IN ('dialing', 'calling');
CREATE INDEX campaign_targets_org_lead_idx ON campaign_targets (org_id, lead_id);
CREATE INDEX campaign_targets_org_contact_idx ON campaign_targets (org_id, contact_id);
CALL app.secure_tenant_table('campaign_targets');

-- ---------------------------------------------------------------------------------------
-- One outbound attempt: what the platform was asked, the call it became, how it ended.
CREATE TABLE cold_call_logs (
    org_id            uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id                uuid NOT NULL DEFAULT gen_random_uuid(),
    target_id         uuid NOT NULL,
    campaign_id       uuid NOT NULL,
    lead_id           uuid,
    attempt           integer NOT NULL CHECK (attempt >= 1),
    to_number         text NOT NULL,
    from_number       text NOT NULL,
    -- The platform's id of the call (Vapi's `id`): the end-of-call report finds the row by it.
    provider_call_id  text,
    call_id           uuid,
    status            text NOT NULL DEFAULT 'calling' CHECK (status IN ('calling', 'ended', 'failed')),
    outcome           text CHECK (outcome IN ('booked', 'not_interested', 'callback', 'voicemail',
                          'wrong_number', 'no_answer', 'busy', 'answered', 'failed')),
    ended_reason      text,
    appointment_id    uuid,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    ended_at          timestamptz,
    PRIMARY KEY (org_id, id),
    CONSTRAINT cold_call_logs_attempt_key UNIQUE (org_id, target_id, attempt),
    FOREIGN KEY (org_id, target_id) REFERENCES campaign_targets (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, campaign_id) REFERENCES campaigns (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, lead_id) REFERENCES leads (org_id, id) ON DELETE SET NULL (lead_id),
    FOREIGN KEY (org_id, call_id) REFERENCES calls (org_id, id) ON DELETE SET NULL (call_id),
    FOREIGN KEY (org_id, appointment_id) REFERENCES appointments (org_id, id) ON DELETE SET NULL (appointment_id)
);
CREATE UNIQUE INDEX cold_call_logs_org_provider_key ON cold_call_logs (org_id, provider_call_id)
    WHERE provider_call_id IS NOT NULL;
CREATE INDEX cold_call_logs_org_created_idx ON cold_call_logs (org_id, created_at DESC, id DESC);
CREATE INDEX cold_call_logs_org_target_idx ON cold_call_logs (org_id, target_id);
CREATE INDEX cold_call_logs_org_campaign_idx ON cold_call_logs (org_id, campaign_id);
CREATE INDEX cold_call_logs_org_lead_idx ON cold_call_logs (org_id, lead_id);
CREATE INDEX cold_call_logs_org_call_idx ON cold_call_logs (org_id, call_id);
CREATE INDEX cold_call_logs_org_appointment_idx ON cold_call_logs (org_id, appointment_id);
CALL app.secure_tenant_table('cold_call_logs');

-- What the dialer's claim and sweep (below, as voxanne_system) change.
GRANT UPDATE (status, attempts, lease_until, next_attempt_at, last_error, updated_at)
    ON campaign_targets TO voxanne_system;
GRANT UPDATE (status, outcome, ended_at, error) ON cold_call_logs TO voxanne_system;

-- ---------------------------------------------------------------------------------------
-- Claims up to p_batch due targets of active campaigns of active orgs, with a lease: shared
-- out round-robin across the orgs (rank 1 of every org before rank 2 of any), each org at
-- most its cap minus its calls in flight, and only targets whose calling window is open now
-- in every zone the callee may be in. Claims are taken one at a time (a transaction advisory
-- lock), so that two dialers never together exceed a clinic's cap.
CREATE FUNCTION app.claim_calls(p_batch integer, p_lease interval)
    RETURNS TABLE (org_id uuid, target_id uuid, campaign_id uuid, phone text, name text,
                   time_zones text[], attempt integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('voxanne.claim_calls'));
    RETURN QUERY
    WITH candidates AS (
        SELECT due.org_id, due.id,
               row_number() OVER (PARTITION BY due.org_id
                                  ORDER BY due.next_attempt_at NULLS FIRST, due.created_at, due.id) AS rank
          FROM public.organizations o
          LEFT JOIN public.messaging_settings ms ON ms.org_id = o.id
          CROSS JOIN LATERAL (
                SELECT count(*)::integer AS n FROM public.campaign_targets f
                 WHERE f.org_id = o.id AND f.status IN ('dialing', 'calling')) flight
          CROSS JOIN LATERAL (
                SELECT t.org_id, t.id, t.next_attempt_at, t.created_at
                  FROM public.campaign_targets t
                  JOIN public.campaigns c ON c.org_id = t.org_id AND c.id = t.campaign_id
                 WHERE t.org_id = o.id
                   AND t.status = 'queued'
                   AND (t.next_attempt_at IS NULL OR t.next_attempt_at <= now())
                   AND c.status = 'active'
                   AND (c.scheduled_at IS NULL OR c.scheduled_at <= now())
                   AND NOT EXISTS (
                         SELECT 1 FROM unnest(t.time_zones) z
                          WHERE (now() AT TIME ZONE z)::time < c.window_start
                             OR (now() AT TIME ZONE z)::time >= c.window_end)
                 ORDER BY t.next_attempt_at NULLS FIRST, t.created_at, t.id
                 LIMIT greatest(least(p_batch, coalesce(ms.max_concurrent_calls, 2) - flight.n), 0)) due
         WHERE o.status = 'active'
    ),
    picked AS (
        SELECT cand.org_id, cand.id FROM candidates cand ORDER BY cand.rank, random() LIMIT greatest(p_batch, 0)
    ),
    locked AS (
        SELECT t.org_id, t.id
          FROM public.campaign_targets t
         WHERE (t.org_id, t.id) IN (SELECT p.org_id, p.id FROM picked p)
           AND t.status = 'queued'
           FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE public.campaign_targets t
       SET status = 'dialing',
           attempts = t.attempts + 1,
           lease_until = now() + p_lease,
           next_attempt_at = NULL,
           updated_at = now()
      FROM locked l
     WHERE t.org_id = l.org_id AND t.id = l.id
    RETURNING t.org_id, t.id, t.campaign_id, t.phone, t.name, t.time_zones, t.attempts;
END
$$;
ALTER FUNCTION app.claim_calls(integer, interval) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.claim_calls(integer, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.claim_calls(integer, interval) TO voxanne_app;

-- The targets of active orgs whose lease ran out: a `dialing` one (its dialer died before the
-- platform answered) goes back to the queue; a `calling` one (its report never came) ends
-- `failed`, and its attempt with it, so that its slot under the cap is freed and the callee
-- is not called twice. Returns how many.
CREATE FUNCTION app.requeue_stale_calls()
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH stale AS (
        UPDATE public.campaign_targets t
           SET status = CASE t.status WHEN 'dialing' THEN 'queued' ELSE 'failed' END,
               last_error = CASE t.status WHEN 'dialing' THEN t.last_error
                                 ELSE 'no end-of-call report came before the lease ran out' END,
               lease_until = NULL, updated_at = now()
          FROM public.organizations o
         WHERE o.id = t.org_id AND o.status = 'active'
           AND t.status IN ('dialing', 'calling')
           AND coalesce(t.lease_until, '-infinity') < now()
        RETURNING t.org_id, t.id, t.status
    ),
    logs AS (
        UPDATE public.cold_call_logs l
           SET status = 'failed', outcome = 'failed', ended_at = now(),
               error = 'no end-of-call report came before the lease ran out'
          FROM stale s
         WHERE s.status = 'failed' AND l.org_id = s.org_id AND l.target_id = s.id
           AND l.status = 'calling'
        RETURNING 1
    )
    SELECT count(*) FROM stale
$$;
ALTER FUNCTION app.requeue_stale_calls() OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.requeue_stale_calls() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.requeue_stale_calls() TO voxanne_app;
