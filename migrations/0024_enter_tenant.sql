-- A user's tenant transaction opens with one statement after BEGIN instead of three: this
-- function writes the context transaction-locally (set_config(…, true): exactly what
-- SET LOCAL writes, gone at COMMIT or ROLLBACK) and checks the membership under the row level
-- security of that context, as app.current_membership does. Measured with pgbench (the speed
-- benchmark, bench/src/db_side.rs), the two SET LOCAL statements cost a request more than the
-- membership check; this form brings the tenant transaction to about the cost of the context
-- alone.
--
-- It runs as the caller (not SECURITY DEFINER: it grants nothing the caller could not do with
-- SET LOCAL), volatile (it writes settings), without a SET clause (which would cost a save
-- and restore of the setting on every call); names and operators are schema-qualified.
-- Citus does not propagate set_config to its workers: a distributed database will write the
-- context with SET LOCAL (which it does propagate) and call app.current_membership.
CREATE FUNCTION app.enter_tenant(p_org uuid, p_user uuid, OUT role text, OUT status text)
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM pg_catalog.set_config('app.org_id', p_org::pg_catalog.text, true),
            pg_catalog.set_config('app.user_id', p_user::pg_catalog.text, true);
    SELECT m.role, o.status INTO role, status
      FROM public.organization_members m
      JOIN public.organizations o ON o.id OPERATOR(pg_catalog.=) m.org_id
     WHERE m.org_id OPERATOR(pg_catalog.=) app.current_org_id()
       AND m.user_id OPERATOR(pg_catalog.=) app.current_user_id();
END
$$;
REVOKE ALL ON FUNCTION app.enter_tenant(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.enter_tenant(uuid, uuid) TO voxanne_app;
