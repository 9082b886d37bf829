-- Patient text encrypted at rest (crates/db/src/encrypted.rs): transcripts, summaries, live
-- transcript lines, contact, appointment and lead notes, SMS bodies, the inbox's messages and
-- replies. Each such column becomes bytea and holds one of two forms, told apart by the first
-- byte:
--
--   1, the key id's length, the key id, nonce || AES-256-GCM ciphertext: encrypted by the
--      application with its keyring, for the value's place (table, column, clinic, row);
--   0, then the UTF-8 text: written before this migration (converted here as it was), or the
--      empty text a purge leaves.
--
-- The database never sees a key, so this migration cannot encrypt: it keeps the old text in
-- the second form, and the encryption job (voxanne_jobs::EncryptionJob) encrypts it, clinic
-- by clinic. The same job encrypts again what an older key encrypted after a rotation.
--
-- The length limits move to the application (the edge refuses longer text, naming the field):
-- the stored length is the ciphertext's.

ALTER TABLE calls
    ALTER COLUMN transcript TYPE bytea USING '\x00'::bytea || convert_to(transcript, 'UTF8'),
    ALTER COLUMN summary TYPE bytea USING '\x00'::bytea || convert_to(summary, 'UTF8'),
    ADD CONSTRAINT calls_transcript_stored CHECK (substring(transcript FROM 1 FOR 1) IN ('\x00', '\x01')),
    ADD CONSTRAINT calls_summary_stored CHECK (substring(summary FROM 1 FOR 1) IN ('\x00', '\x01'));

ALTER TABLE call_transcript_lines
    DROP CONSTRAINT call_transcript_lines_text_check,
    ALTER COLUMN text TYPE bytea USING '\x00'::bytea || convert_to(text, 'UTF8'),
    ADD CONSTRAINT call_transcript_lines_text_stored CHECK (substring(text FROM 1 FOR 1) IN ('\x00', '\x01'));

ALTER TABLE contacts
    ALTER COLUMN notes TYPE bytea USING '\x00'::bytea || convert_to(notes, 'UTF8'),
    ADD CONSTRAINT contacts_notes_stored CHECK (substring(notes FROM 1 FOR 1) IN ('\x00', '\x01'));

ALTER TABLE appointments
    ALTER COLUMN notes TYPE bytea USING '\x00'::bytea || convert_to(notes, 'UTF8'),
    ADD CONSTRAINT appointments_notes_stored CHECK (substring(notes FROM 1 FOR 1) IN ('\x00', '\x01'));

ALTER TABLE sms_confirmation_logs
    ALTER COLUMN body TYPE bytea USING '\x00'::bytea || convert_to(body, 'UTF8'),
    ADD CONSTRAINT sms_confirmation_logs_body_stored CHECK (substring(body FROM 1 FOR 1) IN ('\x00', '\x01'));

ALTER TABLE inbox_messages
    DROP CONSTRAINT inbox_messages_body_check,
    DROP CONSTRAINT inbox_messages_reply_check,
    ALTER COLUMN body TYPE bytea USING '\x00'::bytea || convert_to(body, 'UTF8'),
    ALTER COLUMN reply TYPE bytea USING '\x00'::bytea || convert_to(reply, 'UTF8'),
    ADD CONSTRAINT inbox_messages_body_stored CHECK (substring(body FROM 1 FOR 1) IN ('\x00', '\x01')),
    ADD CONSTRAINT inbox_messages_reply_stored CHECK (substring(reply FROM 1 FOR 1) IN ('\x00', '\x01'));

ALTER TABLE leads
    DROP CONSTRAINT leads_notes_check,
    ALTER COLUMN notes DROP DEFAULT,
    ALTER COLUMN notes TYPE bytea USING '\x00'::bytea || convert_to(notes, 'UTF8'),
    ALTER COLUMN notes SET DEFAULT '\x00',
    ADD CONSTRAINT leads_notes_stored CHECK (substring(notes FROM 1 FOR 1) IN ('\x00', '\x01'));

-- The encryption job's state, on the clinic's own row: the key every patient text of the clinic
-- is known to be encrypted with (NULL: not known, so the job goes through the clinic), and the
-- progress of a pass under way (the key it encrypts with, the field it is at and the last row id
-- it has done), so that a pass resumes where it stopped; the claims so far (a claim's writes
-- are conditional on its number) and the lease of the one under way.
ALTER TABLE organizations
    ADD COLUMN encrypted_with text,
    ADD COLUMN encrypt_key text,
    ADD COLUMN encrypt_field integer CHECK (encrypt_field >= 0),
    ADD COLUMN encrypt_after uuid,
    ADD COLUMN encrypt_claims integer NOT NULL DEFAULT 0 CHECK (encrypt_claims >= 0),
    ADD COLUMN encrypt_lease_until timestamptz;

-- Claims up to `p_batch` active clinics whose patient text is not known to be encrypted with the
-- key `p_key`, the longest waiting first, each with a lease of `p_lease`; a pass begun with
-- another key starts again from the beginning. One statement under the claim's advisory lock,
-- like the other claims (migrations/0027).
CREATE FUNCTION app.claim_encryption(p_key text, p_batch integer, p_lease interval)
    RETURNS TABLE (org_id uuid, claim integer, field integer, after uuid)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('voxanne.claim_encryption'));
    RETURN QUERY
    WITH picked AS (
        SELECT o.id FROM public.organizations o
         WHERE o.status = 'active'
           AND o.encrypted_with IS DISTINCT FROM p_key
           AND coalesce(o.encrypt_lease_until, '-infinity') < now()
         ORDER BY o.encrypt_lease_until NULLS FIRST, o.id
         LIMIT greatest(p_batch, 0)
    )
    UPDATE public.organizations o
       SET encrypt_lease_until = now() + p_lease,
           encrypt_claims = o.encrypt_claims + 1,
           encrypt_field = CASE WHEN o.encrypt_key IS DISTINCT FROM p_key THEN 0 ELSE o.encrypt_field END,
           encrypt_after = CASE WHEN o.encrypt_key IS DISTINCT FROM p_key THEN NULL ELSE o.encrypt_after END,
           encrypt_key = p_key
      FROM picked p
     WHERE o.id = p.id
       AND coalesce(o.encrypt_lease_until, '-infinity') < now()
    RETURNING o.id, o.encrypt_claims, o.encrypt_field, o.encrypt_after;
END
$$;
ALTER FUNCTION app.claim_encryption(text, integer, interval) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.claim_encryption(text, integer, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.claim_encryption(text, integer, interval) TO voxanne_app;

-- The SMS worker's claim returns the stored body; the worker opens it in the clinic's tenant
-- transaction. (A function's result type cannot be changed in place.)
DROP FUNCTION app.claim_sms(integer, interval);
CREATE FUNCTION app.claim_sms(p_batch integer, p_lease interval)
    RETURNS TABLE (org_id uuid, sms_id uuid, appointment_id uuid, to_number text, body bytea, attempt integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('voxanne.claim_sms'));
    RETURN QUERY
    WITH candidates AS (
        SELECT due.org_id, due.id,
               row_number() OVER (PARTITION BY due.org_id
                                  ORDER BY due.next_attempt_at NULLS FIRST, due.created_at, due.id) AS rank
          FROM public.organizations o
          CROSS JOIN LATERAL (
                SELECT s.org_id, s.id, s.next_attempt_at, s.created_at
                  FROM public.sms_confirmation_logs s
                 WHERE s.org_id = o.id
                   AND s.status = 'queued'
                   AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())
                 ORDER BY s.next_attempt_at NULLS FIRST, s.created_at, s.id
                 LIMIT greatest(p_batch, 0)) due
         WHERE o.status = 'active'
    ),
    picked AS (
        SELECT cand.org_id, cand.id FROM candidates cand ORDER BY cand.rank, random() LIMIT greatest(p_batch, 0)
    )
    UPDATE public.sms_confirmation_logs s
       SET status = 'sending',
           attempts = s.attempts + 1,
           lease_until = now() + p_lease,
           next_attempt_at = NULL,
           updated_at = now()
      FROM picked l
     WHERE s.org_id = l.org_id AND s.id = l.id
       AND s.status = 'queued'
    RETURNING s.org_id, s.id, s.appointment_id, s.to_number, s.body, s.attempts;
END
$$;
ALTER FUNCTION app.claim_sms(integer, interval) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.claim_sms(integer, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.claim_sms(integer, interval) TO voxanne_app;

-- The active clinics whose patient text is not yet known to be encrypted with the key `p_key`
-- (a count only), for /metrics: a rotation is complete when it is 0.
CREATE FUNCTION app.encryption_backlog(p_key text)
    RETURNS bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT count(*) FROM public.organizations o
             WHERE o.status = 'active' AND o.encrypted_with IS DISTINCT FROM p_key);
END
$$;
ALTER FUNCTION app.encryption_backlog(text) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.encryption_backlog(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.encryption_backlog(text) TO voxanne_app;
