-- Voice-platform webhooks carry no JWT: the clinic is the owner of the called number, and the
-- request must be signed with that clinic's own secret. Calls remember the provider's call
-- id, so a retried or reordered event updates the one call instead of creating another.

ALTER TABLE calls
    ADD COLUMN provider text CHECK (provider IN ('vapi', 'twilio', 'retell')),
    ADD COLUMN provider_call_id text CHECK (length(provider_call_id) BETWEEN 1 AND 200),
    ADD COLUMN ended_reason text;
CREATE UNIQUE INDEX calls_org_provider_call_key ON calls (org_id, provider, provider_call_id)
    WHERE provider_call_id IS NOT NULL;

-- Which clinic owns a number, and whether it is active: how a webhook finds its clinic.
CREATE FUNCTION app.org_for_number(p_number text)
    RETURNS TABLE (org_id uuid, status text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.id, o.status
      FROM public.phone_numbers n
      JOIN public.organizations o ON o.id = n.org_id
     WHERE n.number = p_number
$$;
ALTER FUNCTION app.org_for_number(text) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.org_for_number(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.org_for_number(text) TO voxanne_app;

-- A badly signed webhook to a clinic's number is that clinic's security event too.
CREATE OR REPLACE FUNCTION app.record_security_event(p_org uuid, p_kind text, p_route text, p_detail jsonb)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_kind NOT IN ('membership_denied', 'invalid_token', 'invalid_webhook_signature') THEN
        RAISE EXCEPTION 'not a security event kind for this function: %', p_kind;
    END IF;
    INSERT INTO public.security_events (org_id, kind, actor_user_id, route, detail)
    SELECT o.id, p_kind, app.current_user_id(), left(p_route, 300), coalesce(p_detail, '{}')
      FROM public.organizations o
     WHERE o.id = p_org;
END
$$;
