-- The membership check that opens every tenant transaction. It is sent in the same unprepared
-- batch as BEGIN and the tenant context (one round trip); as a plpgsql function its query
-- plan is cached for the session instead of being planned again on every request. It runs
-- as the caller (not SECURITY DEFINER), under the row level security of the context just set.
CREATE FUNCTION app.current_membership(OUT role text, OUT status text)
    LANGUAGE plpgsql STABLE
AS $$
BEGIN
    SELECT m.role, o.status INTO role, status
      FROM public.organization_members m
      JOIN public.organizations o ON o.id = m.org_id
     WHERE m.org_id = app.current_org_id() AND m.user_id = app.current_user_id();
END
$$;
