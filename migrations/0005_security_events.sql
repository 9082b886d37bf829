-- Security events, written by two more named cross-org operations.

GRANT INSERT ON security_events TO voxanne_system;

-- Records an event for org p_org when the caller has no tenant context in it: a denied
-- membership (X-Org-Id of an org the user is not a member of) or a bad token that names the
-- org. Only these kinds; nothing for an org that does not exist.
CREATE FUNCTION app.record_security_event(p_org uuid, p_kind text, p_route text, p_detail jsonb)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_kind NOT IN ('membership_denied', 'invalid_token') THEN
        RAISE EXCEPTION 'not a security event kind for this function: %', p_kind;
    END IF;
    INSERT INTO public.security_events (org_id, kind, actor_user_id, route, detail)
    SELECT o.id, p_kind, app.current_user_id(), left(p_route, 300), coalesce(p_detail, '{}')
      FROM public.organizations o
     WHERE o.id = p_org;
END
$$;
ALTER FUNCTION app.record_security_event(uuid, text, text, jsonb) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.record_security_event(uuid, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.record_security_event(uuid, text, text, jsonb) TO voxanne_app;

-- Whether the row of p_table whose p_column is p_id belongs to an org other than the current
-- one. Answers one bit to the application (never to the caller, who gets the same 404 either
-- way), so that asking for another clinic's id can be recorded as what it is.
CREATE FUNCTION app.belongs_to_another_org(p_table text, p_column text, p_id uuid)
    RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass := to_regclass(format('public.%I', p_table));
    found boolean;
BEGIN
    IF rel IS NULL
       OR NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = rel AND attname = 'org_id' AND NOT attisdropped)
       OR NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = rel AND attname = p_column AND NOT attisdropped) THEN
        RETURN false;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I = $1 AND org_id IS DISTINCT FROM $2)', rel, p_column)
       INTO found USING p_id, app.current_org_id();
    RETURN found;
END
$$;
ALTER FUNCTION app.belongs_to_another_org(text, text, uuid) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.belongs_to_another_org(text, text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.belongs_to_another_org(text, text, uuid) TO voxanne_app;
