-- Probes are classified off the request path (TENANCY.md section 4). A member who asks for an
-- id their clinic does not have gets the same answer, after the same work, whoever owns the
-- id; the prober's clinic records nothing either way. A background task later asks
-- app.classify_probes whether each missing id belongs to another clinic; if it does, the
-- finding goes where the prober cannot read it: the security log of the clinic that owns the
-- id (without naming the prober's clinic, which is another clinic's business) and the
-- operators' log below, which no clinic can read.

-- The request path no longer asks "does this id belong to another clinic?".
DROP FUNCTION app.belongs_to_another_org(text, text, uuid);

-- The operators' log of cross-clinic findings. Not a tenant table: it names two clinics,
-- and only the operators (and voxanne_system's functions) read it.
CREATE TABLE app.operator_security_log (
    id            uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    created_at    timestamptz NOT NULL DEFAULT now(),
    kind          text NOT NULL,
    prober_org    uuid,
    prober_user   uuid,
    target_org    uuid,
    target_table  text,
    target_id     text,
    route         text
);
CREATE INDEX operator_security_log_created_idx ON app.operator_security_log (created_at DESC);
REVOKE ALL ON app.operator_security_log FROM PUBLIC;
GRANT SELECT, INSERT ON app.operator_security_log TO voxanne_system;

-- Security events past a clinic's budget (per minute) are counted here instead of written,
-- so that a flood cannot fill the clinic's security log.
CREATE TABLE app.security_event_overflow (
    org_id      uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    minute      timestamptz NOT NULL,
    suppressed  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, minute)
);
REVOKE ALL ON app.security_event_overflow FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON app.security_event_overflow TO voxanne_system;

-- Whether p_org may get one more security event this minute (at most 60); when not, the
-- event is counted in app.security_event_overflow instead. Reads at most 60 index entries.
CREATE FUNCTION app.security_event_allowed(p_org uuid)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    recent integer;
BEGIN
    SELECT count(*) INTO recent
      FROM (SELECT 1 FROM public.security_events
             WHERE org_id = p_org AND created_at > now() - interval '1 minute'
             LIMIT 60) AS r;
    IF recent < 60 THEN
        RETURN true;
    END IF;
    INSERT INTO app.security_event_overflow AS o (org_id, minute, suppressed)
    SELECT p_org, date_trunc('minute', now()), 1
     WHERE EXISTS (SELECT 1 FROM public.organizations WHERE id = p_org)
    ON CONFLICT (org_id, minute) DO UPDATE SET suppressed = o.suppressed + 1;
    RETURN false;
END
$$;
ALTER FUNCTION app.security_event_allowed(uuid) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.security_event_allowed(uuid) FROM PUBLIC;

-- Events recorded for an org from outside its tenant context, within its budget.
CREATE OR REPLACE FUNCTION app.record_security_event(p_org uuid, p_kind text, p_route text, p_detail jsonb)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_kind NOT IN ('membership_denied', 'invalid_token', 'invalid_webhook_signature') THEN
        RAISE EXCEPTION 'not a security event kind for this function: %', p_kind;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.organizations WHERE id = p_org)
       OR NOT app.security_event_allowed(p_org) THEN
        RETURN;
    END IF;
    INSERT INTO public.security_events (org_id, kind, actor_user_id, route, detail)
    VALUES (p_org, p_kind, app.current_user_id(), left(p_route, 300), coalesce(p_detail, '{}'));
END
$$;

-- Classifies a batch of probes: [{"org", "user", "table", "column", "id", "route"}]. For each
-- id that a row of another org has in that table's column, writes the owning clinic's
-- security event (kind cross_tenant_probe: which of its objects, through which route; not
-- who) and the operators' log entry (both clinics). Returns how many were another clinic's.
-- Only tables of public with an org_id column are looked in.
CREATE FUNCTION app.classify_probes(p_probes jsonb)
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p jsonb;
    rel regclass;
    target uuid;
    found integer := 0;
BEGIN
    FOR p IN SELECT value FROM jsonb_array_elements(p_probes) LOOP
        rel := to_regclass(format('public.%I', p->>'table'));
        CONTINUE WHEN rel IS NULL
            OR NOT EXISTS (SELECT 1 FROM pg_attribute
                            WHERE attrelid = rel AND attname = 'org_id' AND NOT attisdropped)
            OR NOT EXISTS (SELECT 1 FROM pg_attribute
                            WHERE attrelid = rel AND attname = p->>'column' AND NOT attisdropped);
        EXECUTE format('SELECT org_id FROM %s WHERE %I = $1 AND org_id IS DISTINCT FROM $2 LIMIT 1',
                       rel, p->>'column')
           INTO target USING (p->>'id')::uuid, (p->>'org')::uuid;
        CONTINUE WHEN target IS NULL;
        found := found + 1;
        INSERT INTO app.operator_security_log
               (kind, prober_org, prober_user, target_org, target_table, target_id, route)
        VALUES ('cross_tenant_probe', (p->>'org')::uuid, (p->>'user')::uuid, target,
                p->>'table', p->>'id', left(p->>'route', 300));
        IF app.security_event_allowed(target) THEN
            INSERT INTO public.security_events (org_id, kind, route, target, detail)
            VALUES (target, 'cross_tenant_probe', left(p->>'route', 300), p->>'id',
                    jsonb_build_object('table', p->>'table'));
        END IF;
    END LOOP;
    RETURN found;
END
$$;
ALTER FUNCTION app.classify_probes(jsonb) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.classify_probes(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.classify_probes(jsonb) TO voxanne_app;

-- How a webhook proves its clinic, in one statement whatever the number: the org that owns
-- p_number, its status, and its p_provider integration's sealed secrets (NULLs when no clinic
-- owns the number or it has no such integration). The caller verifies the signature before
-- it decides anything, so an unsigned request learns nothing of the clinic.
CREATE FUNCTION app.webhook_credentials(p_number text, p_provider text)
    RETURNS TABLE (org_id uuid, status text, secrets_enc bytea, key_id text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.id, o.status, i.secrets_enc, i.key_id
      FROM (SELECT 1) AS one
      LEFT JOIN public.phone_numbers n ON n.number = p_number
      LEFT JOIN public.organizations o ON o.id = n.org_id
      LEFT JOIN public.integration_settings i ON i.org_id = o.id AND i.provider = p_provider
$$;
ALTER FUNCTION app.webhook_credentials(text, text) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.webhook_credentials(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_credentials(text, text) TO voxanne_app;
