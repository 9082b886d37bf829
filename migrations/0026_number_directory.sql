-- One number, one clinic, on both engines (docs/SCALING.md). The global key on
-- phone_numbers (number) cannot stay: Citus enforces a unique key within one shard, and
-- phone_numbers is sharded by clinic. The key moves to a directory of its own,
-- app.phone_number_directory: number -> clinic, a reference table on Citus (a copy on every
-- node, written on all of them in one transaction), a plain table on one server.
--
-- - The directory's primary key is the global key, under the constraint name it had
--   (`phone_numbers_number_key`, what the API maps to 409 number_taken).
-- - A clinic's number refers to its directory entry: phone_numbers (org_id, number)
--   REFERENCES the directory (org_id, number). A row of phone_numbers therefore exists only
--   for the clinic that the directory names; removing the entry removes the number.
-- - The directory is isolated like every tenant table (forced row level security, the one
--   policy): a clinic adds, sees and removes only its own entries, in its own tenant
--   transaction, as the application role (on Citus the entry and the number must be written
--   over the same connection to each node, which a function of another role would not use);
--   the key still refuses a number that another clinic holds. Erasing a clinic removes its
--   entries first (the cascade from organizations cannot reach a reference table).
-- - Which clinic holds a number is answered across clinics only by the named functions
--   (app.org_for_number, app.webhook_credentials), which now read the directory.

CREATE TABLE app.phone_number_directory (
    number      text NOT NULL CHECK (number ~ '^\+[1-9][0-9]{6,14}$'),
    org_id      uuid NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT phone_numbers_number_key PRIMARY KEY (number),
    CONSTRAINT phone_number_directory_org_number_key UNIQUE (org_id, number)
);
CALL app.secure_tenant_table('app.phone_number_directory');

-- The numbers already held (read as voxanne_system: the owner is bound by forced RLS).
CREATE FUNCTION app.fill_phone_number_directory() RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO app.phone_number_directory (number, org_id, claimed_at)
    SELECT number, org_id, created_at FROM public.phone_numbers
$$;
ALTER FUNCTION app.fill_phone_number_directory() OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.fill_phone_number_directory() FROM PUBLIC;
GRANT INSERT ON app.phone_number_directory TO voxanne_system;
SELECT app.fill_phone_number_directory();
REVOKE INSERT ON app.phone_number_directory FROM voxanne_system;
DROP FUNCTION app.fill_phone_number_directory();

ALTER TABLE phone_numbers
    DROP CONSTRAINT phone_numbers_number_key,
    ADD CONSTRAINT phone_numbers_org_number_key UNIQUE (org_id, number),
    ADD CONSTRAINT phone_numbers_claimed_fkey FOREIGN KEY (org_id, number)
        REFERENCES app.phone_number_directory (org_id, number) ON DELETE CASCADE;

-- The number's clinic from the directory, then the clinic's rows by that clinic (on Citus:
-- the directory's copy on the coordinator, then one shard).
CREATE OR REPLACE FUNCTION app.org_for_number(p_number text)
    RETURNS TABLE (org_id uuid, status text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_org uuid;
BEGIN
    SELECT d.org_id INTO v_org FROM app.phone_number_directory d WHERE d.number = p_number;
    IF v_org IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT o.id, o.status FROM public.organizations o WHERE o.id = v_org;
END
$$;

CREATE OR REPLACE FUNCTION app.webhook_credentials(p_number text, p_provider text)
    RETURNS TABLE (org_id uuid, status text, secrets_enc bytea, key_id text, config jsonb)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_org uuid;
BEGIN
    SELECT d.org_id INTO v_org FROM app.phone_number_directory d WHERE d.number = p_number;
    -- Always one row (NULLs for an unknown number), as before: callers cannot tell an unknown
    -- number from a clinic without the integration by the number of rows.
    RETURN QUERY
        SELECT o.id, o.status, i.secrets_enc, i.key_id, i.config
          FROM (SELECT 1) AS one
          LEFT JOIN public.organizations o ON o.id = v_org
          LEFT JOIN public.integration_settings i ON i.org_id = v_org AND i.provider = p_provider;
END
$$;
