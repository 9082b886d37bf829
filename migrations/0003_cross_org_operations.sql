-- The named, reviewed operations that span orgs. Each is SECURITY DEFINER, owned by
-- voxanne_system (NOLOGIN, BYPASSRLS), with a fixed search_path, and answers only what its
-- name says. Nothing else in the application reads across orgs.

-- Ownership of a function in schema app requires CREATE on it; voxanne_system logs in never.
GRANT CREATE ON SCHEMA app TO voxanne_system;

-- The orgs the current user (app.user_id, set from a verified JWT) belongs to: /api/v1/me.
CREATE FUNCTION app.my_memberships()
    RETURNS TABLE (org_id uuid, name text, status text, role text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.id, o.name, o.status, m.role
      FROM public.organization_members m
      JOIN public.organizations o ON o.id = m.org_id
     WHERE m.user_id = app.current_user_id()
     ORDER BY o.name, o.id
$$;
ALTER FUNCTION app.my_memberships() OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.my_memberships() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.my_memberships() TO voxanne_app;
