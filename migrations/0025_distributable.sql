-- The schema in a form that Citus can distribute by clinic (docs/SCALING.md), on both engines:
-- one schema, whether the database is one server or a coordinator with workers.
--
-- 1. Policies compare the tenant column with app.current_org_id() directly, not with
--    (select app.current_org_id()): Citus refuses subqueries in the policies of distributed
--    tables. Since migration 0023 the helper is inlined, so the policy reads
--    `org_id = nullif(current_setting('app.org_id', true), '')::uuid`: a stable expression
--    that an index scan evaluates once, as it did the initplan of the wrapped form, and that a
--    sequential scan evaluates as one setting lookup per row (no function call).
-- 2. Foreign keys that set a reference to NULL when its target is deleted become NO ACTION:
--    Citus refuses SET NULL and SET DEFAULT on a foreign key that includes the distribution
--    column, and every tenant key includes it. Where the application deletes such a row (a
--    contact, a lead), it clears the references first, in the same transaction (crates/db,
--    `tenant_row!`'s detach list); otherwise a clinic's rows go together, by the cascade from
--    organizations, where NO ACTION is satisfied at the end of the statement. A hand-written
--    DELETE of a row that others still refer to is now refused.

CREATE OR REPLACE PROCEDURE app.secure_tenant_table(tbl regclass, tenant_column name DEFAULT 'org_id')
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %s AS PERMISSIVE FOR ALL TO PUBLIC '
        'USING (%I = app.current_org_id()) '
        'WITH CHECK (%I = app.current_org_id())',
        tbl, tenant_column, tenant_column);
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', tbl);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO voxanne_app', tbl);
    EXECUTE format('GRANT SELECT ON %s TO voxanne_system', tbl);
END
$$;

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT p.polrelid::regclass AS tbl,
               CASE WHEN p.polrelid = 'public.organizations'::regclass THEN 'id' ELSE 'org_id' END AS col
          FROM pg_policy p
         WHERE p.polname = 'tenant_isolation'
    LOOP
        EXECUTE format('ALTER POLICY tenant_isolation ON %s USING (%I = app.current_org_id()) '
                       'WITH CHECK (%I = app.current_org_id())', r.tbl, r.col, r.col);
    END LOOP;

    FOR r IN
        SELECT k.conrelid::regclass AS tbl, k.conname, pg_get_constraintdef(k.oid) AS def
          FROM pg_constraint k
         WHERE k.contype = 'f' AND k.confdeltype IN ('n', 'd')
           AND k.connamespace IN ('public'::regnamespace, 'app'::regnamespace)
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I, ADD CONSTRAINT %I %s', r.tbl, r.conname,
                       r.conname, regexp_replace(r.def, ' ON DELETE SET (NULL|DEFAULT)( \([^)]*\))?', ''));
    END LOOP;
END
$$;

-- 3. A calendar watch is unique per clinic, no longer across clinics (Citus enforces a unique
--    key on one shard, so every unique key includes the tenant column). The watch id is
--    unique in practice: a random UUID of ours for Google's channels, Graph's own id for a
--    subscription. What ties a push notification to a connection is its secret, compared by
--    sha256 in the same statement (app.calendar_notified), and that does not change; the
--    lookup by watch id keeps its index.
DROP INDEX calendar_connections_watch_key;
CREATE UNIQUE INDEX calendar_connections_watch_key ON calendar_connections (org_id, provider, watch_id)
    WHERE watch_id IS NOT NULL;
CREATE INDEX calendar_connections_watch_idx ON calendar_connections (provider, watch_id)
    WHERE watch_id IS NOT NULL;

-- 4. The booking guards name their constraint in the message too. Citus relays a worker's
--    error with its code and message but without its constraint field, and the application
--    tells a taken slot (409) from a failure by the constraint's name
--    (crates/db/src/lib.rs reads it from the message, as PostgreSQL writes it for its own
--    constraints). The bodies are migration 0006's otherwise.
CREATE OR REPLACE FUNCTION app.appointments_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- A cancelled appointment blocks nothing; an empty range is the CHECK's business.
    IF NEW.status = 'cancelled' OR NEW.ends_at <= NEW.starts_at THEN
        RETURN NEW;
    END IF;
    PERFORM app.require_read_committed();
    PERFORM app.lock_booking(NEW.org_id, NEW.resource);
    DELETE FROM public.appointment_holds h
     WHERE h.org_id = NEW.org_id AND h.resource = NEW.resource AND h.expires_at <= now()
       AND tstzrange(h.starts_at, h.ends_at) && tstzrange(NEW.starts_at, NEW.ends_at);
    IF EXISTS (SELECT 1 FROM public.appointment_holds h
                WHERE h.org_id = NEW.org_id AND h.resource = NEW.resource
                  AND tstzrange(h.starts_at, h.ends_at) && tstzrange(NEW.starts_at, NEW.ends_at)) THEN
        RAISE EXCEPTION 'the slot is held (constraint "appointments_held_slot")'
            USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'appointments_held_slot',
                  TABLE = 'appointments', SCHEMA = 'public';
    END IF;
    RETURN NEW;
END
$$;
CREATE OR REPLACE FUNCTION app.appointment_holds_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.ends_at <= NEW.starts_at THEN
        RETURN NEW;
    END IF;
    PERFORM app.require_read_committed();
    PERFORM app.lock_booking(NEW.org_id, NEW.resource);
    DELETE FROM public.appointment_holds h
     WHERE h.org_id = NEW.org_id AND h.resource = NEW.resource AND h.expires_at <= now()
       AND h.id <> NEW.id
       AND tstzrange(h.starts_at, h.ends_at) && tstzrange(NEW.starts_at, NEW.ends_at);
    IF EXISTS (SELECT 1 FROM public.appointments a
                WHERE a.org_id = NEW.org_id AND a.resource = NEW.resource AND a.status <> 'cancelled'
                  AND tstzrange(a.starts_at, a.ends_at) && tstzrange(NEW.starts_at, NEW.ends_at)) THEN
        RAISE EXCEPTION 'the slot is booked (constraint "appointment_holds_booked_slot")'
            USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'appointment_holds_booked_slot',
                  TABLE = 'appointment_holds', SCHEMA = 'public';
    END IF;
    RETURN NEW;
END
$$;
