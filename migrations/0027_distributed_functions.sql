-- The cross-org functions in a form that both engines run (docs/SCALING.md, "Cross-clinic
-- functions"). Citus cannot plan the parameters of a LANGUAGE sql function in a query on
-- distributed or reference tables; PL/pgSQL hands the query its values. Every such function
-- becomes PL/pgSQL with the same statement, the same owner, grants and search_path.
--
-- The fair job claims also change their locking:
--
-- Each claim stays ONE call per batch, whatever the number of clinics: the same candidates
-- (per active clinic, its next due jobs; then round-robin across the clinics, ties broken at
-- random), claimed by one UPDATE that rechecks each job's state. What changes:
--
-- - The functions are PL/pgSQL. Citus cannot plan a LANGUAGE sql function's parameters in a
--   distributed query; PL/pgSQL hands the query its values.
-- - `FOR UPDATE SKIP LOCKED` went: Citus refuses row locks in a query that reads many
--   shards. Claimers of one queue take turns instead, on a transaction-level advisory lock
--   of that queue (as app.claim_calls did from the start), held for the one statement: a
--   claim waits for the one before it to commit, and then sees what it claimed, so two
--   claims never pick the same job, never wait on each other's rows and cannot deadlock. The
--   UPDATE's recheck (`status = 'queued'`, …) still leaves out a job that a clinic's own
--   transaction changed meanwhile. On Citus the lock is the coordinator's, where every
--   claim runs.

CREATE OR REPLACE FUNCTION app.claim_recordings(p_batch integer, p_lease interval)
    RETURNS TABLE (org_id uuid, call_id uuid, recording_url text, attempt integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('voxanne.claim_recordings'));
    RETURN QUERY
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
    )
    UPDATE public.calls c
       SET recording_status = 'processing',
           recording_attempts = c.recording_attempts + 1,
           recording_lease_until = now() + p_lease,
           recording_next_attempt_at = NULL
      FROM picked l
     WHERE c.org_id = l.org_id AND c.id = l.id
       AND c.recording_status = 'queued'
    RETURNING c.org_id, c.id, c.recording_url, c.recording_attempts;
END
$$;

CREATE OR REPLACE FUNCTION app.claim_sms(p_batch integer, p_lease interval)
    RETURNS TABLE (org_id uuid, sms_id uuid, appointment_id uuid, to_number text, body text, attempt integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('voxanne.claim_sms'));
    RETURN QUERY
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
    )
    UPDATE public.sms_confirmation_logs s
       SET status = 'sending',
           attempts = s.attempts + 1,
           lease_until = now() + p_lease,
           next_attempt_at = NULL,
           updated_at = now()
      FROM picked l
     WHERE s.org_id = l.org_id AND s.id = l.id
       AND s.status = 'queued'
    RETURNING s.org_id, s.id, s.appointment_id, s.to_number, s.body, s.attempts;
END
$$;

CREATE OR REPLACE FUNCTION app.claim_calendar_syncs(p_batch integer, p_lease interval)
    RETURNS TABLE (org_id uuid, connection_id uuid, claim integer, failures integer, due_at timestamptz)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('voxanne.claim_calendar_syncs'));
    RETURN QUERY
    WITH candidates AS (
        SELECT due.org_id, due.id,
               row_number() OVER (PARTITION BY due.org_id ORDER BY due.sync_due_at, due.id) AS rank
          FROM public.organizations o
          CROSS JOIN LATERAL (
                SELECT c.org_id, c.id, c.sync_due_at
                  FROM public.calendar_connections c
                 WHERE c.org_id = o.id
                   AND c.status = 'active'
                   AND c.sync_due_at <= now()
                   AND coalesce(c.sync_lease_until, '-infinity') < now()
                 ORDER BY c.sync_due_at, c.id
                 LIMIT greatest(p_batch, 0)) due
         WHERE o.status = 'active'
    ),
    picked AS (
        SELECT cand.org_id, cand.id FROM candidates cand ORDER BY cand.rank, random() LIMIT greatest(p_batch, 0)
    )
    UPDATE public.calendar_connections c
       SET sync_claims = c.sync_claims + 1,
           sync_lease_until = now() + p_lease,
           updated_at = now()
      FROM picked l
     WHERE c.org_id = l.org_id AND c.id = l.id
       AND c.status = 'active'
       AND coalesce(c.sync_lease_until, '-infinity') < now()
    RETURNING c.org_id, c.id, c.sync_claims, c.sync_failures, c.sync_due_at;
END
$$;

CREATE OR REPLACE FUNCTION app.claim_calendar_writes(p_batch integer, p_lease interval)
    RETURNS TABLE (org_id uuid, appointment_id uuid, connection_id uuid, wanted integer, attempt integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('voxanne.claim_calendar_writes'));
    RETURN QUERY
    WITH candidates AS (
        SELECT due.org_id, due.appointment_id, due.connection_id,
               row_number() OVER (PARTITION BY due.org_id
                                  ORDER BY due.next_attempt_at NULLS FIRST, due.created_at) AS rank
          FROM public.organizations o
          CROSS JOIN LATERAL (
                SELECT w.org_id, w.appointment_id, w.connection_id, w.next_attempt_at, w.created_at
                  FROM public.calendar_event_writes w
                 WHERE w.org_id = o.id
                   AND w.status = 'pending'
                   AND (w.next_attempt_at IS NULL OR w.next_attempt_at <= now())
                 ORDER BY w.next_attempt_at NULLS FIRST, w.created_at
                 LIMIT greatest(p_batch, 0)) due
         WHERE o.status = 'active'
    ),
    picked AS (
        SELECT cand.org_id, cand.appointment_id, cand.connection_id
          FROM candidates cand ORDER BY cand.rank, random() LIMIT greatest(p_batch, 0)
    )
    UPDATE public.calendar_event_writes w
       SET status = 'writing',
           attempts = w.attempts + 1,
           lease_until = now() + p_lease,
           next_attempt_at = NULL,
           updated_at = now()
      FROM picked l
     WHERE w.org_id = l.org_id AND w.appointment_id = l.appointment_id
       AND w.connection_id = l.connection_id
       AND w.status = 'pending'
    RETURNING w.org_id, w.appointment_id, w.connection_id, w.wanted, w.attempts;
END
$$;

CREATE OR REPLACE FUNCTION app.claim_calls(p_batch integer, p_lease interval)
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
    )
    UPDATE public.campaign_targets t
       SET status = 'dialing',
           attempts = t.attempts + 1,
           lease_until = now() + p_lease,
           next_attempt_at = NULL,
           updated_at = now()
      FROM picked l
     WHERE t.org_id = l.org_id AND t.id = l.id
       AND t.status = 'queued'
    RETURNING t.org_id, t.id, t.campaign_id, t.phone, t.name, t.time_zones, t.attempts;
END
$$;

-- (from 0022_outbound_calls.sql) A searched CASE where the simple one was: Citus deparses
-- `CASE t.status WHEN 'dialing' …` in an UPDATE wrongly (the shard then sees text = boolean).
CREATE OR REPLACE FUNCTION app.requeue_stale_calls()
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH stale AS (
        UPDATE public.campaign_targets t
           SET status = CASE WHEN t.status = 'dialing' THEN 'queued' ELSE 'failed' END,
               last_error = CASE WHEN t.status = 'dialing' THEN t.last_error
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

-- (from 0016_calendar_oauth.sql) The org's existence and its budget are two statements:
-- in one expression with the query on organizations, Citus sent the budget's function along
-- to the org's shard, where it could not run its own distributed query.
CREATE OR REPLACE FUNCTION app.record_security_event(p_org uuid, p_kind text, p_route text, p_detail jsonb)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_kind NOT IN ('membership_denied', 'invalid_token', 'invalid_webhook_signature',
                      'calendar_oauth_refused') THEN
        RAISE EXCEPTION 'not a security event kind for this function: %', p_kind;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.organizations WHERE id = p_org) THEN
        RETURN;
    END IF;
    IF NOT app.security_event_allowed(p_org) THEN
        RETURN;
    END IF;
    INSERT INTO public.security_events (org_id, kind, actor_user_id, route, detail)
    VALUES (p_org, p_kind, app.current_user_id(), left(p_route, 300), coalesce(p_detail, '{}'));
END
$$;

-- The other functions with parameters, statement for statement, except where one statement
-- wrote a global (reference) table and read or wrote another table through a data-modifying
-- WITH: Citus runs such a statement in pieces, passing each piece's rows to the nodes over
-- connections of its own as the function's owner, which cannot log in to the coordinator.
-- Those (set_session_org, take_password_reset, accept_invitation,
-- accept_invitation_as_new_account) are the same steps as statements of their own, in the
-- function's one transaction: the first statement that takes the secret (a DELETE, an UPDATE
-- rechecking it is unused, a row lock) still lets only one of two concurrent uses through.

-- (from 0008_recording_orphans.sql)
CREATE OR REPLACE FUNCTION app.known_recording_objects(p_orgs uuid[], p_calls uuid[], p_keys text[])
    RETURNS SETOF text
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT k.key
      FROM unnest(p_orgs, p_calls, p_keys) AS k(org_id, call_id, key)
      JOIN public.calls c ON c.org_id = k.org_id AND c.id = k.call_id AND c.recording_path = k.key;
END
$$;

-- (from 0008_recording_orphans.sql)
CREATE OR REPLACE FUNCTION app.stored_recordings(p_after_org uuid, p_after_call uuid, p_limit integer)
    RETURNS TABLE (org_id uuid, call_id uuid, recording_path text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT c.org_id, c.id, c.recording_path
      FROM public.calls c
      JOIN public.organizations o ON o.id = c.org_id AND o.status = 'active'
     WHERE c.recording_status = 'stored' AND c.recording_path IS NOT NULL
       AND (c.org_id, c.id) > (coalesce(p_after_org, '00000000-0000-0000-0000-000000000000'),
                               coalesce(p_after_call, '00000000-0000-0000-0000-000000000000'))
     ORDER BY c.org_id, c.id
     LIMIT greatest(p_limit, 0);
END
$$;

-- (from 0015_oauth_clients.sql)
CREATE OR REPLACE FUNCTION app.oauth_client_credentials(p_org uuid, p_provider text)
    RETURNS TABLE (org_id uuid, status text, secrets_enc bytea, key_id text, config jsonb)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT o.id, o.status, i.secrets_enc, i.key_id, i.config
      FROM (SELECT 1) AS one
      LEFT JOIN public.organizations o ON o.id = p_org
      LEFT JOIN public.integration_settings i ON i.org_id = o.id AND i.provider = p_provider;
END
$$;

-- (from 0016_calendar_oauth.sql)
CREATE OR REPLACE FUNCTION app.take_calendar_oauth_state(p_org uuid, p_id uuid)
    RETURNS TABLE (org_id uuid, user_id uuid, provider text, verifier_enc bytea, key_id text,
                   browser_hash bytea, expires_at timestamptz, org_status text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH taken AS (
        DELETE FROM public.calendar_oauth_states s
         WHERE s.org_id = p_org AND s.id = p_id
        RETURNING s.org_id, s.user_id, s.provider, s.verifier_enc, s.key_id, s.browser_hash,
                  s.expires_at
    )
    SELECT t.org_id, t.user_id, t.provider, t.verifier_enc, t.key_id, t.browser_hash,
           t.expires_at, o.status
      FROM taken t
      JOIN public.organizations o ON o.id = t.org_id;
END
$$;

-- (from 0017_calendar_sync.sql)
CREATE OR REPLACE FUNCTION app.calendar_notified(p_provider text, p_watch_id text, p_token_hash bytea)
    RETURNS TABLE (org_id uuid, connection_id uuid)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE public.calendar_connections c
       SET sync_due_at = now(),
           notifications = c.notifications + 1,
           updated_at = now()
     WHERE c.provider = p_provider AND c.watch_id = p_watch_id
       AND c.watch_token_hash = p_token_hash
       AND c.status = 'active'
    RETURNING c.org_id, c.id;
END
$$;

-- (from 0019_accounts.sql)
CREATE OR REPLACE FUNCTION app.account_for_sign_in(p_email text)
    RETURNS TABLE (id uuid, password_hash text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT a.id, a.password_hash FROM public.accounts a WHERE a.email = lower(btrim(p_email));
END
$$;

-- (from 0019_accounts.sql)
CREATE OR REPLACE FUNCTION app.create_account(p_id uuid, p_email text, p_name text, p_hash text)
    RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_result uuid;
BEGIN
    INSERT INTO public.accounts (id, email, display_name, password_hash)
    VALUES (coalesce(p_id, gen_random_uuid()), lower(btrim(p_email)), p_name, p_hash)
    ON CONFLICT DO NOTHING
    RETURNING id
    INTO v_result;
    RETURN v_result;
END
$$;

-- (from 0019_accounts.sql)
CREATE OR REPLACE FUNCTION app.open_account_session(p_account uuid, p_token_hash bytea, p_expires_at timestamptz)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    WITH expired AS (
        DELETE FROM public.account_sessions s
         WHERE s.token_hash IN (SELECT e.token_hash FROM public.account_sessions e
                                 WHERE e.expires_at <= now() LIMIT 100)
    )
    INSERT INTO public.account_sessions (token_hash, account_id, expires_at)
    VALUES (p_token_hash, p_account, p_expires_at);
END
$$;

-- (from 0019_accounts.sql)
CREATE OR REPLACE FUNCTION app.account_of_session(p_token_hash bytea)
    RETURNS TABLE (id uuid, email text, display_name text, active_org uuid, expires_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT a.id, a.email, a.display_name, s.active_org, s.expires_at
      FROM public.account_sessions s JOIN public.accounts a ON a.id = s.account_id
     WHERE s.token_hash = p_token_hash AND s.expires_at > now();
END
$$;

-- (from 0019_accounts.sql)
CREATE OR REPLACE FUNCTION app.set_session_org(p_token_hash bytea, p_org uuid)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_account uuid;
BEGIN
    SELECT s.account_id INTO v_account
      FROM public.account_sessions s
     WHERE s.token_hash = p_token_hash AND s.expires_at > now();
    IF v_account IS NULL OR NOT EXISTS (SELECT 1 FROM public.organization_members m
                                         WHERE m.org_id = p_org AND m.user_id = v_account) THEN
        RETURN false;
    END IF;
    UPDATE public.account_sessions s SET active_org = p_org
     WHERE s.token_hash = p_token_hash AND s.expires_at > now();
    RETURN FOUND;
END
$$;

-- (from 0019_accounts.sql)
CREATE OR REPLACE FUNCTION app.close_account_session(p_token_hash bytea)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    DELETE FROM public.account_sessions WHERE token_hash = p_token_hash;
END
$$;

-- (from 0019_accounts.sql)
CREATE OR REPLACE FUNCTION app.start_password_reset(p_email text, p_token_hash bytea, p_expires_at timestamptz)
    RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_result text;
BEGIN
    WITH account AS (
        SELECT a.id, a.email FROM public.accounts a WHERE a.email = lower(btrim(p_email))
    ), stored AS (
        INSERT INTO public.password_resets (token_hash, account_id, expires_at)
        SELECT p_token_hash, account.id, p_expires_at FROM account
    )
    SELECT email FROM account
    INTO v_result;
    RETURN v_result;
END
$$;

-- (from 0019_accounts.sql)
CREATE OR REPLACE FUNCTION app.take_password_reset(p_token_hash bytea, p_hash text)
    RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_account uuid;
    v_expires timestamptz;
    v_result uuid;
BEGIN
    -- The DELETE takes the link: of two concurrent uses, one gets the row.
    DELETE FROM public.password_resets r WHERE r.token_hash = p_token_hash
    RETURNING r.account_id, r.expires_at INTO v_account, v_expires;
    IF v_account IS NULL OR v_expires <= now() THEN
        RETURN NULL;
    END IF;
    UPDATE public.accounts a SET password_hash = p_hash, password_changed_at = now()
     WHERE a.id = v_account
    RETURNING a.id INTO v_result;
    DELETE FROM public.account_sessions s WHERE s.account_id = v_result;
    RETURN v_result;
END
$$;

-- (from 0019_accounts.sql)
CREATE OR REPLACE FUNCTION app.invitation_for_link(p_org uuid, p_id uuid, p_secret_hash bytea)
    RETURNS TABLE (org_name text, email text, role text, usable boolean)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT o.name, i.email, i.role,
           i.accepted_at IS NULL AND i.expires_at > now() AND o.status = 'active'
      FROM public.invitations i JOIN public.organizations o ON o.id = i.org_id
     WHERE i.org_id = p_org AND i.id = p_id AND i.secret_hash = p_secret_hash;
END
$$;

-- (from 0019_accounts.sql)
CREATE OR REPLACE FUNCTION app.accept_invitation(p_org uuid, p_id uuid, p_secret_hash bytea, p_account uuid)
    RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_email text;
    v_role text;
BEGIN
    SELECT a.email INTO v_email FROM public.accounts a WHERE a.id = p_account;
    IF v_email IS NULL THEN
        RETURN NULL;
    END IF;
    -- The UPDATE takes the invitation: of two concurrent uses, one sees it unaccepted.
    UPDATE public.invitations i SET accepted_at = now(), accepted_by = p_account
      FROM public.organizations o
     WHERE i.org_id = p_org AND i.id = p_id AND i.secret_hash = p_secret_hash
       AND i.accepted_at IS NULL AND i.expires_at > now()
       AND o.id = i.org_id AND o.status = 'active'
       AND i.email = v_email
    RETURNING i.role INTO v_role;
    IF v_role IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO public.organization_members (org_id, user_id, role)
    VALUES (p_org, p_account, v_role)
    ON CONFLICT (org_id, user_id) DO NOTHING;
    RETURN v_role;
END
$$;

-- (from 0019_accounts.sql)
CREATE OR REPLACE FUNCTION app.accept_invitation_as_new_account(p_org uuid, p_id uuid, p_secret_hash bytea,
                                                     p_name text, p_hash text)
    RETURNS TABLE (account_id uuid, role text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_email text;
    v_role text;
    v_account uuid;
BEGIN
    -- The row lock makes a concurrent use of the same link wait, then find it accepted.
    SELECT i.email, i.role INTO v_email, v_role
      FROM public.invitations i JOIN public.organizations o ON o.id = i.org_id
     WHERE i.org_id = p_org AND i.id = p_id AND i.secret_hash = p_secret_hash
       AND i.accepted_at IS NULL AND i.expires_at > now() AND o.status = 'active'
       FOR UPDATE OF i;
    IF v_email IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO public.accounts (email, display_name, password_hash)
    VALUES (v_email, p_name, p_hash)
    ON CONFLICT DO NOTHING
    RETURNING id INTO v_account;
    IF v_account IS NULL THEN
        RETURN;
    END IF;
    UPDATE public.invitations i SET accepted_at = now(), accepted_by = v_account
     WHERE i.org_id = p_org AND i.id = p_id;
    INSERT INTO public.organization_members (org_id, user_id, role)
    VALUES (p_org, v_account, v_role);
    RETURN QUERY SELECT v_account, v_role;
END
$$;
