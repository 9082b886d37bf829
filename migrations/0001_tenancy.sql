-- Tenancy primitives. Everything here runs as voxanne_owner (see crates/db/src/migrate.rs).
--
-- app.current_org_id() is the single source of truth for "the current org". It reads a
-- transaction-local setting written by the application when it opens a tenant transaction
-- (set_config(..., true)); with no tenant context it is NULL and every policy matches nothing.

CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO voxanne_app, voxanne_system;

CREATE FUNCTION app.current_org_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT nullif(current_setting('app.org_id', true), '')::uuid $$;

CREATE FUNCTION app.current_user_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT nullif(current_setting('app.user_id', true), '')::uuid $$;

-- The one definition of tenant isolation for a table: RLS enabled AND forced (so the table
-- owner is bound too), one policy comparing the tenant column with the SSOT function,
-- evaluated once per statement thanks to the (select ...) wrapper, and DML for the app role.
CREATE PROCEDURE app.secure_tenant_table(tbl regclass, tenant_column name DEFAULT 'org_id')
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %s AS PERMISSIVE FOR ALL TO PUBLIC '
        'USING (%I = (select app.current_org_id())) '
        'WITH CHECK (%I = (select app.current_org_id()))',
        tbl, tenant_column, tenant_column);
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', tbl);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO voxanne_app', tbl);
    EXECUTE format('GRANT SELECT ON %s TO voxanne_system', tbl);
END
$$;
REVOKE ALL ON PROCEDURE app.secure_tenant_table(regclass, name) FROM PUBLIC;
