-- A schema the audit has never seen: tenant table `tenants`, tenant column `tenant_id`, a
-- Supabase-style auth.jwt(). Clean objects beside one planted defect per check.

DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fixture_owner') THEN
        CREATE ROLE fixture_owner NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fixture_app') THEN
        CREATE ROLE fixture_app LOGIN; END IF;
    -- Supabase's client roles (bypass.definer_tenant_param, grants.anon_write).
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN; END IF;
    -- roles.bypass_rls
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fixture_bypass') THEN
        CREATE ROLE fixture_bypass LOGIN BYPASSRLS; END IF;
END $$;
-- The roles above belong to the cluster: the test creates them once per process.
-- END ROLES

CREATE SCHEMA auth;
CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE
    AS $$ SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb $$;

CREATE SCHEMA fx;
CREATE PROCEDURE fx.secure(t regclass) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %s USING (tenant_id = (select (auth.jwt() ->> ''tenant_id'')::uuid)) '
                   'WITH CHECK (tenant_id = (select (auth.jwt() ->> ''tenant_id'')::uuid))', t);
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO fixture_app', t);
END $$;
-- A clean tenant table with one planted change: same shape everywhere else.
CREATE PROCEDURE fx.tenant_table(name text) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE, '
                   'id uuid NOT NULL DEFAULT gen_random_uuid(), PRIMARY KEY (tenant_id, id))', name);
END $$;

CREATE TABLE tenants (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants USING (id = (select (auth.jwt() ->> 'tenant_id')::uuid))
    WITH CHECK (id = (select (auth.jwt() ->> 'tenant_id')::uuid));
REVOKE ALL ON tenants FROM PUBLIC;

-- The clean tables: nothing here may be flagged.
CALL fx.tenant_table('clean_items');
CALL fx.secure('clean_items');
CREATE TABLE clean_children (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    item_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, item_id) REFERENCES clean_items (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX clean_children_item_idx ON clean_children (tenant_id, item_id);
CALL fx.secure('clean_children');
CREATE TABLE global_settings (key text PRIMARY KEY, value text);
CREATE VIEW v_invoker WITH (security_invoker = true) AS SELECT * FROM clean_items;
CREATE FUNCTION public.safe() RETURNS int LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$ SELECT 1 $$;

-- Clean counterparts of the planted defects below.
-- A membership table, and a policy that reads it for the current user only.
CREATE TABLE members (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CALL fx.secure('members');
CALL fx.tenant_table('clean_by_membership');
CALL fx.secure('clean_by_membership');
DROP POLICY tenant_isolation ON clean_by_membership;
CREATE POLICY by_membership ON clean_by_membership
    USING (tenant_id IN (SELECT m.tenant_id FROM members m WHERE m.user_id = (select (auth.jwt() ->> 'sub')::uuid)))
    WITH CHECK (tenant_id IN (SELECT m.tenant_id FROM members m WHERE m.user_id = (select (auth.jwt() ->> 'sub')::uuid)));
-- A tenant column defaulting to the caller's own tenant; a restrictive policy that only
-- narrows; anon reading (not writing) a table.
CALL fx.tenant_table('clean_defaulted');
ALTER TABLE clean_defaulted ALTER COLUMN tenant_id SET DEFAULT ((auth.jwt() ->> 'tenant_id')::uuid);
CALL fx.secure('clean_defaulted');
CREATE POLICY signed_in_only ON clean_defaulted AS RESTRICTIVE FOR SELECT
    USING ((select auth.jwt() ->> 'sub') IS NOT NULL);
GRANT SELECT ON clean_defaulted TO anon;
-- A SECURITY DEFINER function taking a tenant id, for the application role alone.
CREATE FUNCTION public.items_for_app(p_tenant_id uuid) RETURNS bigint LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$ SELECT count(*) FROM public.clean_items WHERE tenant_id = p_tenant_id $$;
REVOKE ALL ON FUNCTION public.items_for_app(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.items_for_app(uuid) TO fixture_app;

-- rls.membership_unfiltered: the membership subquery answers for every user.
CALL fx.tenant_table('t_any_member');
CALL fx.secure('t_any_member');
DROP POLICY tenant_isolation ON t_any_member;
CREATE POLICY any_member ON t_any_member USING (tenant_id IN (SELECT m.tenant_id FROM members m))
    WITH CHECK (tenant_id IN (SELECT m.tenant_id FROM members m));

-- tenant.column_default: rows without a tenant go to tenant A.
CALL fx.tenant_table('t_default');
ALTER TABLE t_default ALTER COLUMN tenant_id SET DEFAULT '00000000-0000-0000-0000-00000000000a';
CALL fx.secure('t_default');

-- bypass.definer_tenant_param: any caller names the tenant (PUBLIC by default; authenticated).
CREATE FUNCTION public.items_of(p_tenant_id uuid) RETURNS bigint LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$ SELECT count(*) FROM public.clean_items WHERE tenant_id = p_tenant_id $$;
CREATE FUNCTION public.items_for_users(tenant uuid) RETURNS bigint LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$ SELECT count(*) FROM public.clean_items WHERE tenant_id = tenant $$;
REVOKE ALL ON FUNCTION public.items_for_users(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.items_for_users(uuid) TO authenticated;

-- rls.using_ignores_tenant: any signed-in user reads every tenant's rows.
CALL fx.tenant_table('t_read_any');
CALL fx.secure('t_read_any');
DROP POLICY tenant_isolation ON t_read_any;
CREATE POLICY reads_any ON t_read_any USING ((select auth.jwt() ->> 'sub') IS NOT NULL)
    WITH CHECK (tenant_id = (select (auth.jwt() ->> 'tenant_id')::uuid));

-- rls.check_ignores_tenant: any signed-in user writes into any tenant.
CALL fx.tenant_table('t_write_any');
CALL fx.secure('t_write_any');
DROP POLICY tenant_isolation ON t_write_any;
CREATE POLICY writes_any ON t_write_any USING (tenant_id = (select (auth.jwt() ->> 'tenant_id')::uuid))
    WITH CHECK ((select auth.jwt() ->> 'sub') IS NOT NULL);

-- grants.anon_write
CALL fx.tenant_table('t_anon_write');
CALL fx.secure('t_anon_write');
GRANT INSERT, UPDATE ON t_anon_write TO anon;

-- grants.truncate
CALL fx.tenant_table('t_truncate');
CALL fx.secure('t_truncate');
GRANT TRUNCATE ON t_truncate TO fixture_app;

-- tenant.missing_column: references tenant data, has no tenant_id.
CREATE TABLE audit_log (id uuid PRIMARY KEY, tenant uuid REFERENCES tenants (id));
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant);

-- tenant.nullable_column (and tenant.null_rows: a row with a NULL tenant).
CALL fx.tenant_table('t_nullable');
ALTER TABLE t_nullable DROP CONSTRAINT t_nullable_pkey, ADD COLUMN pk bigserial PRIMARY KEY, ALTER COLUMN tenant_id DROP NOT NULL;
CREATE INDEX ON t_nullable (tenant_id);
CALL fx.secure('t_nullable');

-- fk.tenant_missing (and tenant.dangling_rows: a row naming a tenant that does not exist).
CALL fx.tenant_table('t_no_fk');
ALTER TABLE t_no_fk DROP CONSTRAINT t_no_fk_tenant_id_fkey;
CALL fx.secure('t_no_fk');

-- fk.tenant_not_cascade
CALL fx.tenant_table('t_restrict');
ALTER TABLE t_restrict DROP CONSTRAINT t_restrict_tenant_id_fkey,
    ADD CONSTRAINT t_restrict_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE RESTRICT;
CALL fx.secure('t_restrict');

-- fk.cross_tenant (and fk.cross_tenant_rows: a row that points into another tenant).
CALL fx.tenant_table('t_parent');
ALTER TABLE t_parent ADD CONSTRAINT t_parent_id_key UNIQUE (id);
CALL fx.secure('t_parent');
CALL fx.tenant_table('t_cross');
ALTER TABLE t_cross ADD COLUMN parent_id uuid CONSTRAINT t_cross_parent_fkey REFERENCES t_parent (id);
CREATE INDEX ON t_cross (parent_id);
CALL fx.secure('t_cross');

-- rls.disabled (the policy exists, RLS is off)
CALL fx.tenant_table('t_rls_off');
CALL fx.secure('t_rls_off');
ALTER TABLE t_rls_off NO FORCE ROW LEVEL SECURITY;
ALTER TABLE t_rls_off DISABLE ROW LEVEL SECURITY;

-- rls.not_forced
CALL fx.tenant_table('t_not_forced');
CALL fx.secure('t_not_forced');
ALTER TABLE t_not_forced NO FORCE ROW LEVEL SECURITY;

-- rls.no_policy
CALL fx.tenant_table('t_no_policy');
CALL fx.secure('t_no_policy');
DROP POLICY tenant_isolation ON t_no_policy;

-- rls.always_true (its only policy)
CALL fx.tenant_table('t_true');
CALL fx.secure('t_true');
DROP POLICY tenant_isolation ON t_true;
CREATE POLICY open ON t_true USING (true) WITH CHECK (true);

-- rls.user_metadata
CALL fx.tenant_table('t_metadata');
CALL fx.secure('t_metadata');
DROP POLICY tenant_isolation ON t_metadata;
CREATE POLICY by_metadata ON t_metadata
    USING (tenant_id = (select (auth.jwt() -> 'user_metadata' ->> 'tenant_id')::uuid))
    WITH CHECK (tenant_id = (select (auth.jwt() -> 'user_metadata' ->> 'tenant_id')::uuid));

-- rls.unwrapped_function
CALL fx.tenant_table('t_unwrapped');
CALL fx.secure('t_unwrapped');
DROP POLICY tenant_isolation ON t_unwrapped;
CREATE POLICY per_row ON t_unwrapped USING (tenant_id = (auth.jwt() ->> 'tenant_id')::uuid)
    WITH CHECK (tenant_id = (auth.jwt() ->> 'tenant_id')::uuid);

-- rls.overlapping_permissive
CALL fx.tenant_table('t_overlap');
CALL fx.secure('t_overlap');
CREATE POLICY also_select ON t_overlap FOR SELECT USING (tenant_id = (select (auth.jwt() ->> 'tenant_id')::uuid));

-- rls.missing_with_check
CALL fx.tenant_table('t_no_check');
CALL fx.secure('t_no_check');
DROP POLICY tenant_isolation ON t_no_check;
CREATE POLICY no_check ON t_no_check USING (tenant_id = (select (auth.jwt() ->> 'tenant_id')::uuid));

-- index.tenant_leading
CALL fx.tenant_table('t_no_index');
ALTER TABLE t_no_index DROP CONSTRAINT t_no_index_pkey, ADD PRIMARY KEY (id, tenant_id);
CALL fx.secure('t_no_index');

-- index.fk_unindexed
CALL fx.tenant_table('t_fk_noidx');
ALTER TABLE t_fk_noidx ADD COLUMN item_id uuid,
    ADD CONSTRAINT t_fk_noidx_item_fkey FOREIGN KEY (tenant_id, item_id) REFERENCES clean_items (tenant_id, id) ON DELETE CASCADE;
CALL fx.secure('t_fk_noidx');

-- bypass.view_definer
CREATE VIEW v_definer AS SELECT * FROM clean_items;

-- bypass.definer_search_path
CREATE FUNCTION public.leak() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS $$ SELECT count(*) FROM clean_items $$;

-- bypass.matview
CREATE MATERIALIZED VIEW mv_items AS SELECT * FROM clean_items;

-- roles.app_owns_tables
CALL fx.tenant_table('t_app_owned');
CALL fx.secure('t_app_owned');

-- grants.public
CALL fx.tenant_table('t_public');
CALL fx.secure('t_public');
GRANT SELECT ON t_public TO PUBLIC;

-- Owners: a NOLOGIN role, but for the planted one.
DO $$ DECLARE t record; BEGIN
    FOR t IN SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' LOOP
        EXECUTE format('ALTER TABLE %I OWNER TO fixture_owner', t.relname);
    END LOOP;
END $$;
ALTER TABLE t_app_owned OWNER TO fixture_app;

-- Rows: two tenants, clean rows, and the planted bad ones.
INSERT INTO tenants (id, name) VALUES ('00000000-0000-0000-0000-00000000000a', 'A'), ('00000000-0000-0000-0000-00000000000b', 'B');
INSERT INTO clean_items (tenant_id, id) VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1');
INSERT INTO clean_children (tenant_id, item_id) VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1');
INSERT INTO t_nullable (tenant_id) VALUES (NULL), ('00000000-0000-0000-0000-00000000000a');
INSERT INTO t_no_fk (tenant_id) VALUES ('00000000-0000-0000-0000-0000000000ff');
INSERT INTO t_parent (tenant_id, id) VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000c1');
INSERT INTO t_cross (tenant_id, parent_id) VALUES ('00000000-0000-0000-0000-00000000000b', '00000000-0000-0000-0000-0000000000c1'),
                                                   ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000c1');
