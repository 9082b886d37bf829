-- Vapi's OAuth 2.0 credential makes this server a token endpoint: the client id is a
-- clinic's organization id, and the request carries no JWT. In one statement whatever the id
-- (NULLs when no clinic has it or it has no such integration), the clinic's status and its
-- integration's sealed secrets and settings; the caller checks the client secret before it
-- decides anything, so a token request learns nothing of which ids are clinics'.
CREATE FUNCTION app.oauth_client_credentials(p_org uuid, p_provider text)
    RETURNS TABLE (org_id uuid, status text, secrets_enc bytea, key_id text, config jsonb)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.id, o.status, i.secrets_enc, i.key_id, i.config
      FROM (SELECT 1) AS one
      LEFT JOIN public.organizations o ON o.id = p_org
      LEFT JOIN public.integration_settings i ON i.org_id = o.id AND i.provider = p_provider
$$;
ALTER FUNCTION app.oauth_client_credentials(uuid, text) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.oauth_client_credentials(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.oauth_client_credentials(uuid, text) TO voxanne_app;
