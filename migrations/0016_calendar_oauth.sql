-- Connecting a clinic's Google or Microsoft calendar: the authorization code flow with PKCE.
-- A clinic admin starts it (in the clinic's tenant transaction, so RLS checks the row); the
-- row remembers who started it, for which provider, the PKCE verifier (sealed with the
-- keyring, like the calendar tokens), a hash of the value of the browser cookie that must come
-- back with the callback, and when it expires. The `state` sent to the provider is the org
-- id, the row id and a MAC over both, so a forged state is refused before any lookup.
CREATE TABLE calendar_oauth_states (
    org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    -- The admin who started it; their membership going away takes the state with it.
    user_id       uuid NOT NULL,
    provider      text NOT NULL CHECK (provider IN ('google', 'microsoft')),
    verifier_enc  bytea NOT NULL,
    key_id        text NOT NULL,
    -- sha256 of the `voxanne_oauth` cookie set on the browser that started the flow.
    browser_hash  bytea NOT NULL CHECK (length(browser_hash) = 32),
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, user_id) REFERENCES organization_members (org_id, user_id) ON DELETE CASCADE
);
CREATE INDEX calendar_oauth_states_member_idx ON calendar_oauth_states (org_id, user_id);
CREATE INDEX calendar_oauth_states_expiry_idx ON calendar_oauth_states (org_id, expires_at);
CALL app.secure_tenant_table('calendar_oauth_states');

-- The callback carries no JWT: its clinic is the one the (MAC-checked) state names. In one
-- statement, the state is taken: deleted and returned, so it is used once whatever the
-- callback then decides. NULLs when there is no such state (unknown, or already used).
GRANT DELETE ON calendar_oauth_states TO voxanne_system;
CREATE FUNCTION app.take_calendar_oauth_state(p_org uuid, p_id uuid)
    RETURNS TABLE (org_id uuid, user_id uuid, provider text, verifier_enc bytea, key_id text,
                   browser_hash bytea, expires_at timestamptz, org_status text)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH taken AS (
        DELETE FROM public.calendar_oauth_states s
         WHERE s.org_id = p_org AND s.id = p_id
        RETURNING s.org_id, s.user_id, s.provider, s.verifier_enc, s.key_id, s.browser_hash,
                  s.expires_at
    )
    SELECT t.org_id, t.user_id, t.provider, t.verifier_enc, t.key_id, t.browser_hash,
           t.expires_at, o.status
      FROM taken t
      JOIN public.organizations o ON o.id = t.org_id
$$;
ALTER FUNCTION app.take_calendar_oauth_state(uuid, uuid) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.take_calendar_oauth_state(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.take_calendar_oauth_state(uuid, uuid) TO voxanne_app;

-- A calendar OAuth callback that is an attack on a clinic (a state replayed, or finished in
-- another browser than the one that started it) is recorded in that clinic's security log.
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
    IF NOT EXISTS (SELECT 1 FROM public.organizations WHERE id = p_org)
       OR NOT app.security_event_allowed(p_org) THEN
        RETURN;
    END IF;
    INSERT INTO public.security_events (org_id, kind, actor_user_id, route, detail)
    VALUES (p_org, p_kind, app.current_user_id(), left(p_route, 300), coalesce(p_detail, '{}'));
END
$$;
