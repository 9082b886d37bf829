-- The orphan sweep's two cross-org reads (object storage spans every org).

-- Of the given stored objects, by (org, call, key) parsed from the key
-- `{org}/recordings/{call}.{ext}`, the keys that a call row still points at.
CREATE FUNCTION app.known_recording_objects(p_orgs uuid[], p_calls uuid[], p_keys text[])
    RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k.key
      FROM unnest(p_orgs, p_calls, p_keys) AS k(org_id, call_id, key)
      JOIN public.calls c ON c.org_id = k.org_id AND c.id = k.call_id AND c.recording_path = k.key
$$;
ALTER FUNCTION app.known_recording_objects(uuid[], uuid[], text[]) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.known_recording_objects(uuid[], uuid[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.known_recording_objects(uuid[], uuid[], text[]) TO voxanne_app;

-- The stored recordings of active orgs, keyset-paginated on (org_id, id): what the sweep
-- checks against storage.
CREATE FUNCTION app.stored_recordings(p_after_org uuid, p_after_call uuid, p_limit integer)
    RETURNS TABLE (org_id uuid, call_id uuid, recording_path text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.org_id, c.id, c.recording_path
      FROM public.calls c
      JOIN public.organizations o ON o.id = c.org_id AND o.status = 'active'
     WHERE c.recording_status = 'stored' AND c.recording_path IS NOT NULL
       AND (c.org_id, c.id) > (coalesce(p_after_org, '00000000-0000-0000-0000-000000000000'),
                               coalesce(p_after_call, '00000000-0000-0000-0000-000000000000'))
     ORDER BY c.org_id, c.id
     LIMIT greatest(p_limit, 0)
$$;
ALTER FUNCTION app.stored_recordings(uuid, uuid, integer) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.stored_recordings(uuid, uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.stored_recordings(uuid, uuid, integer) TO voxanne_app;
