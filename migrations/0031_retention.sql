-- Retention: how long each clinic keeps each kind of patient data, legal holds that suspend it,
-- and the record of what was purged. The purge itself is a job (voxanne_jobs::RetentionJob):
-- claimed one clinic at a time, round-robin by when each is due, a bounded step at a time.
--
-- The settings are columns of the clinic's own row: every clinic has them, from the day it is
-- created, with the defaults below. Each has a floor that the schema enforces whatever the
-- caller (docs/RETENTION.md says why each floor is what it is), and no kind of a call's data
-- may outlive the call itself.

ALTER TABLE organizations
    ADD COLUMN retain_recordings_days integer NOT NULL DEFAULT 365
        CHECK (retain_recordings_days BETWEEN 30 AND 36500),
    ADD COLUMN retain_transcripts_days integer NOT NULL DEFAULT 2190
        CHECK (retain_transcripts_days BETWEEN 30 AND 36500),
    ADD COLUMN retain_sms_days integer NOT NULL DEFAULT 365
        CHECK (retain_sms_days BETWEEN 30 AND 36500),
    ADD COLUMN retain_calls_days integer NOT NULL DEFAULT 2190
        CHECK (retain_calls_days BETWEEN 365 AND 36500),
    ADD COLUMN retain_access_log_days integer NOT NULL DEFAULT 2190
        CHECK (retain_access_log_days BETWEEN 2190 AND 36500),
    -- The purge job's schedule: due now for a clinic never purged ('-infinity': a constant,
    -- so adding the column rewrites nothing), then about hourly.
    ADD COLUMN purge_due_at timestamptz NOT NULL DEFAULT '-infinity',
    ADD COLUMN purge_lease_until timestamptz,
    ADD COLUMN purge_claims integer NOT NULL DEFAULT 0 CHECK (purge_claims >= 0),
    ADD CONSTRAINT organizations_retention_within_calls
        CHECK (retain_recordings_days <= retain_calls_days
               AND retain_transcripts_days <= retain_calls_days);

-- A recording the purge removed from storage.
ALTER TABLE calls DROP CONSTRAINT calls_recording_status_check;
ALTER TABLE calls ADD CONSTRAINT calls_recording_status_check
    CHECK (recording_status IN ('none', 'queued', 'processing', 'stored', 'failed', 'purged'));

-- A legal hold on a patient (a contact) or on one call: nothing of it is purged while the hold
-- stands, and the contact or call cannot be deleted (the foreign keys refuse it; deleting the
-- clinic removes all three). Releasing a hold removes it; the access log keeps who placed and
-- who released it.
CREATE TABLE legal_holds (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    contact_id  uuid,
    call_id     uuid,
    reason      text NOT NULL
                CHECK (length(btrim(reason)) BETWEEN 1 AND 500 AND reason !~ '[[:cntrl:]]'),
    placed_by   uuid,
    placed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    CHECK (num_nonnulls(contact_id, call_id) = 1),
    CONSTRAINT legal_holds_contact_fkey
        FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id),
    CONSTRAINT legal_holds_call_fkey
        FOREIGN KEY (org_id, call_id) REFERENCES calls (org_id, id)
);
CREATE UNIQUE INDEX legal_holds_contact_key ON legal_holds (org_id, contact_id)
    WHERE contact_id IS NOT NULL;
CREATE UNIQUE INDEX legal_holds_call_key ON legal_holds (org_id, call_id)
    WHERE call_id IS NOT NULL;
CREATE INDEX legal_holds_org_placed_idx ON legal_holds (org_id, placed_at DESC, id DESC);
CALL app.secure_tenant_table('legal_holds');

-- What the purge removed: one row per step and kind, with the ids it purged. Append-only for
-- the application, like the access log.
CREATE TABLE retention_purges (
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    at           timestamptz NOT NULL DEFAULT now(),
    kind         text NOT NULL
                 CHECK (kind IN ('recording', 'transcript', 'sms_body', 'call', 'access_log')),
    -- Everything of this kind older than this was due.
    cutoff       timestamptz NOT NULL,
    items        integer NOT NULL CHECK (items BETWEEN 1 AND 10000),
    subject_ids  uuid[] NOT NULL CHECK (cardinality(subject_ids) BETWEEN 1 AND 10000),
    PRIMARY KEY (org_id, id)
);
CREATE INDEX retention_purges_org_at_idx ON retention_purges (org_id, at DESC, id DESC);
CALL app.secure_tenant_table('retention_purges');
REVOKE UPDATE, DELETE ON retention_purges FROM voxanne_app;

-- Claims up to `p_batch` clinics whose purge is due, the longest due first (so every clinic
-- takes its turn, whatever the size of the others), each with a lease of `p_lease`. One
-- statement under the claim's advisory lock, like the other claims (migrations/0027).
CREATE FUNCTION app.claim_retention(p_batch integer, p_lease interval)
    RETURNS TABLE (org_id uuid, claim integer, recordings_days integer, transcripts_days integer,
                   sms_days integer, calls_days integer, access_log_days integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('voxanne.claim_retention'));
    RETURN QUERY
    WITH picked AS (
        SELECT o.id FROM public.organizations o
         WHERE o.status = 'active'
           AND o.purge_due_at <= now()
           AND coalesce(o.purge_lease_until, '-infinity') < now()
         ORDER BY o.purge_due_at, o.id
         LIMIT greatest(p_batch, 0)
    )
    UPDATE public.organizations o
       SET purge_claims = o.purge_claims + 1,
           purge_lease_until = now() + p_lease
      FROM picked p
     WHERE o.id = p.id
       AND coalesce(o.purge_lease_until, '-infinity') < now()
    RETURNING o.id, o.purge_claims, o.retain_recordings_days, o.retain_transcripts_days,
              o.retain_sms_days, o.retain_calls_days, o.retain_access_log_days;
END
$$;
ALTER FUNCTION app.claim_retention(integer, interval) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.claim_retention(integer, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.claim_retention(integer, interval) TO voxanne_app;
GRANT UPDATE ON organizations TO voxanne_system;
