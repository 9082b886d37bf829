-- The scheduling model a clinic has: practitioners who give services at locations, each with
-- opening hours, and closures (holidays, a day off) as dated exceptions.
--
-- A practitioner is the bookable resource of the appointments (`appointments.resource`, the
-- key the no-double-booking rules of 0006 already use): `practitioners.resource` names it,
-- so every appointment, hold and linked calendar keeps working as it was. The migration makes
-- a practitioner of every resource a clinic already books (and of 'default'), so nothing is
-- lost; a resource no practitioner names still books as before, with the clinic's hours.
--
-- Hours fall back: a practitioner's own, else their location's, else the clinic's
-- (agent_configurations.opening_hours). Closures cut whole days out of them, in the clinic's
-- time zone: one with no practitioner closes the clinic.

CREATE TABLE locations (
    org_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id             uuid NOT NULL DEFAULT gen_random_uuid(),
    name           text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    address        text CHECK (length(address) <= 500),
    -- `{"mon": [["09:00","17:00"]], ...}`; NULL: the clinic's.
    opening_hours  jsonb CHECK (opening_hours IS NULL OR jsonb_typeof(opening_hours) = 'object'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, name)
);
CALL app.secure_tenant_table('locations');

CREATE TABLE practitioners (
    org_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id             uuid NOT NULL DEFAULT gen_random_uuid(),
    name           text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    -- The appointments' resource this practitioner is.
    resource       text NOT NULL CHECK (length(resource) BETWEEN 1 AND 100),
    location_id    uuid,
    -- NULL: their location's, else the clinic's.
    opening_hours  jsonb CHECK (opening_hours IS NULL OR jsonb_typeof(opening_hours) = 'object'),
    -- An inactive practitioner is offered to nobody; their appointments stay.
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, resource),
    FOREIGN KEY (org_id, location_id) REFERENCES locations (org_id, id)
);
CREATE INDEX practitioners_org_location_idx ON practitioners (org_id, location_id);
CALL app.secure_tenant_table('practitioners');

CREATE TABLE services (
    org_id            uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id                uuid NOT NULL DEFAULT gen_random_uuid(),
    name              text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    duration_minutes  integer NOT NULL CHECK (duration_minutes BETWEEN 5 AND 480),
    -- Kept free after each appointment of the service (cleaning the room, notes).
    buffer_minutes    integer NOT NULL DEFAULT 0 CHECK (buffer_minutes BETWEEN 0 AND 240),
    active            boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, name)
);
CALL app.secure_tenant_table('services');

-- Who gives what.
CREATE TABLE practitioner_services (
    org_id           uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    practitioner_id  uuid NOT NULL,
    service_id       uuid NOT NULL,
    PRIMARY KEY (org_id, practitioner_id, service_id),
    FOREIGN KEY (org_id, practitioner_id) REFERENCES practitioners (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, service_id) REFERENCES services (org_id, id) ON DELETE CASCADE
);
CREATE INDEX practitioner_services_org_service_idx ON practitioner_services (org_id, service_id);
CALL app.secure_tenant_table('practitioner_services', 'org_id');

-- Whole days off, from `starts_on` to `ends_on` inclusive, in the clinic's time zone.
CREATE TABLE closures (
    org_id           uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    -- NULL: the whole clinic is closed.
    practitioner_id  uuid,
    starts_on        date NOT NULL,
    ends_on          date NOT NULL,
    reason           text CHECK (length(reason) <= 200),
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on >= starts_on AND ends_on - starts_on <= 366),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, practitioner_id) REFERENCES practitioners (org_id, id) ON DELETE CASCADE
);
CREATE INDEX closures_org_dates_idx ON closures (org_id, ends_on, starts_on);
CREATE INDEX closures_org_practitioner_idx ON closures (org_id, practitioner_id);
CALL app.secure_tenant_table('closures');

-- The service an appointment (or the hold it is confirmed from) is for, when it was booked
-- as one. A service in use is not deleted (deactivate it instead): the FK refuses.
ALTER TABLE appointments ADD COLUMN service_id uuid,
    ADD CONSTRAINT appointments_service_fkey FOREIGN KEY (org_id, service_id)
        REFERENCES services (org_id, id);
CREATE INDEX appointments_org_service_idx ON appointments (org_id, service_id)
    WHERE service_id IS NOT NULL;
ALTER TABLE appointment_holds ADD COLUMN service_id uuid,
    ADD CONSTRAINT appointment_holds_service_fkey FOREIGN KEY (org_id, service_id)
        REFERENCES services (org_id, id) ON DELETE SET NULL (service_id);
CREATE INDEX appointment_holds_org_service_idx ON appointment_holds (org_id, service_id)
    WHERE service_id IS NOT NULL;

-- Every resource already in use, and 'default', becomes a practitioner named after it (a
-- resource of only blanks, which the name check refuses, is named "Unnamed"). The rows of
-- every clinic at once: as voxanne_system (BYPASSRLS), for this statement only.
GRANT INSERT ON practitioners TO voxanne_system;
SET ROLE voxanne_system;
INSERT INTO practitioners (org_id, name, resource)
SELECT DISTINCT r.org_id, coalesce(nullif(btrim(r.resource), ''), 'Unnamed'), r.resource
  FROM (SELECT org_id, resource FROM appointments
        UNION SELECT org_id, resource FROM appointment_holds
        UNION SELECT org_id, resource FROM calendar_connections
        UNION SELECT id, 'default' FROM organizations) r;
RESET ROLE;
SET ROLE voxanne_owner;
REVOKE INSERT ON practitioners FROM voxanne_system;
