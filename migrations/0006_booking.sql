-- Booking: no double booking, ever, enforced by the database.
--
-- Three rules, for one org and one resource (a room, a practitioner, "default"):
--   1. two live appointments never overlap: an exclusion constraint on appointments;
--   2. two holds never overlap: an exclusion constraint on appointment_holds (expired holds
--      are deleted lazily, by the trigger below, before a new hold or appointment needs the
--      slot: a constraint cannot depend on now());
--   3. an appointment and an unexpired hold never overlap. An exclusion constraint cannot
--      span two tables, so a BEFORE trigger on each table checks the other one. A check alone
--      races (two transactions each check, neither sees the other's uncommitted row), so
--      the trigger first takes a transaction-scoped advisory lock per (org, resource): every
--      writer of a slot of that resource takes it, so they run one after another, and each
--      check (its own statement, hence its own READ COMMITTED snapshot, taken after the lock
--      was granted) sees whatever the previous holder of the lock committed. The lock is
--      released at COMMIT or ROLLBACK. It lives in the trigger, not in application code, so
--      no code path (nor a hand-written INSERT) can forget it. Why not one table of "claims"
--      with one constraint: holds and appointments have different lives (TTL, status,
--      confirm), and the lock costs one uncontended lock per booking write.
--      This needs READ COMMITTED (the application's level): at a stricter level a
--      transaction's snapshot could predate the lock, so the trigger refuses to run there.
-- Overlap is on half-open ranges [starts_at, ends_at): back-to-back slots do not overlap.

-- btree_gist gives uuid and text the gist operator classes that the constraints combine with
-- range overlap. A trusted extension: the database owner's CREATE right is enough.
CREATE EXTENSION IF NOT EXISTS btree_gist;

ALTER TABLE appointments
    ADD CONSTRAINT appointments_no_overlap EXCLUDE USING gist
        (org_id WITH =, resource WITH =, tstzrange(starts_at, ends_at) WITH &&)
        WHERE (status <> 'cancelled');

ALTER TABLE appointment_holds
    ADD CONSTRAINT appointment_holds_no_overlap EXCLUDE USING gist
        (org_id WITH =, resource WITH =, tstzrange(starts_at, ends_at) WITH &&);

ALTER TABLE appointment_holds
    ADD CONSTRAINT appointment_holds_resource_check CHECK (length(resource) BETWEEN 1 AND 100);
ALTER TABLE appointments
    ADD CONSTRAINT appointments_resource_check CHECK (length(resource) BETWEEN 1 AND 100);

-- The hold an appointment was confirmed from. Not a foreign key: confirming deletes the hold.
-- Unique, so a hold is confirmed at most once even if its row were somehow back.
ALTER TABLE appointments ADD COLUMN hold_id uuid;
CREATE UNIQUE INDEX appointments_org_hold_key ON appointments (org_id, hold_id) WHERE hold_id IS NOT NULL;

-- Live holds by expiry (lazy cleanup, the live list).
CREATE INDEX appointment_holds_org_expires_idx ON appointment_holds (org_id, expires_at);

-- The per-(org, resource) booking lock. Two-key advisory locks are a key space of their own
-- (the one-key lock of the migrator never collides); 7286 names this use. A hash collision
-- only makes two resources wait for each other, never lets a conflict through.
CREATE FUNCTION app.lock_booking(p_org uuid, p_resource text) RETURNS void
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_advisory_xact_lock(7286, hashtext(p_org::text || '/' || p_resource)) $$;
REVOKE ALL ON FUNCTION app.lock_booking(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.lock_booking(uuid, text) TO voxanne_app;

CREATE FUNCTION app.require_read_committed() RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'booking writes need READ COMMITTED'
            USING ERRCODE = 'serialization_failure';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION app.require_read_committed() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.require_read_committed() TO voxanne_app;

-- Runs as the caller (under the tenant's row level security), never as its owner.
CREATE FUNCTION app.appointments_guard() RETURNS trigger
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
        RAISE EXCEPTION 'the slot is held'
            USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'appointments_held_slot',
                  TABLE = 'appointments', SCHEMA = 'public';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION app.appointments_guard() FROM PUBLIC;

CREATE FUNCTION app.appointment_holds_guard() RETURNS trigger
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
        RAISE EXCEPTION 'the slot is booked'
            USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'appointment_holds_booked_slot',
                  TABLE = 'appointment_holds', SCHEMA = 'public';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION app.appointment_holds_guard() FROM PUBLIC;

CREATE TRIGGER appointments_guard_insert BEFORE INSERT ON appointments
    FOR EACH ROW EXECUTE FUNCTION app.appointments_guard();
CREATE TRIGGER appointments_guard_update BEFORE UPDATE ON appointments
    FOR EACH ROW
    WHEN (OLD.starts_at IS DISTINCT FROM NEW.starts_at OR OLD.ends_at IS DISTINCT FROM NEW.ends_at
          OR OLD.resource IS DISTINCT FROM NEW.resource OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.org_id IS DISTINCT FROM NEW.org_id)
    EXECUTE FUNCTION app.appointments_guard();
CREATE TRIGGER appointment_holds_guard_insert BEFORE INSERT ON appointment_holds
    FOR EACH ROW EXECUTE FUNCTION app.appointment_holds_guard();
CREATE TRIGGER appointment_holds_guard_update BEFORE UPDATE ON appointment_holds
    FOR EACH ROW
    WHEN (OLD.starts_at IS DISTINCT FROM NEW.starts_at OR OLD.ends_at IS DISTINCT FROM NEW.ends_at
          OR OLD.resource IS DISTINCT FROM NEW.resource OR OLD.org_id IS DISTINCT FROM NEW.org_id)
    EXECUTE FUNCTION app.appointment_holds_guard();

-- Idempotency-Key: the first response to a key is replayed for the same request, and the
-- same key with another request is refused. A key is claimed (status NULL) in the same
-- transaction as the work it guards and filled in before COMMIT, so a committed row always
-- has its response; a concurrent request with the key waits on the claim, then replays.
-- Keys older than a day are deleted lazily when the org claims a new one.
CREATE TABLE idempotency_keys (
    org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    request_hash  text NOT NULL,
    status        smallint CHECK (status BETWEEN 200 AND 599),
    response      jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, key)
);
CREATE INDEX idempotency_keys_org_created_idx ON idempotency_keys (org_id, created_at);
CALL app.secure_tenant_table('idempotency_keys');
