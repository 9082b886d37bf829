-- A clinic's Vapi server URL is authenticated the way the clinic configured its Vapi
-- credential (X-Vapi-Secret, bearer, HMAC with Vapi's settings): the webhook needs the
-- integration's non-secret settings (`config.server_auth`) beside its sealed secrets, still
-- in the one statement that runs whatever the number.
DROP FUNCTION app.webhook_credentials(text, text);
CREATE FUNCTION app.webhook_credentials(p_number text, p_provider text)
    RETURNS TABLE (org_id uuid, status text, secrets_enc bytea, key_id text, config jsonb)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.id, o.status, i.secrets_enc, i.key_id, i.config
      FROM (SELECT 1) AS one
      LEFT JOIN public.phone_numbers n ON n.number = p_number
      LEFT JOIN public.organizations o ON o.id = n.org_id
      LEFT JOIN public.integration_settings i ON i.org_id = o.id AND i.provider = p_provider
$$;
ALTER FUNCTION app.webhook_credentials(text, text) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.webhook_credentials(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_credentials(text, text) TO voxanne_app;
