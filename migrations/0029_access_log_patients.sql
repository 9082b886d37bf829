-- Whose data a record is about: `patients`, the contacts whose data the access showed or
-- changed (a page of 25 calls names the contacts of those calls). The access log's filter by
-- patient reads it. NULL when no contact is known (a call from an unknown number).
--
-- The digest of a record takes `patients` as its last field, and only when it is set:
-- concat_ws skips a NULL, so every record sealed before this migration keeps its digest and
-- its chain still verifies. Control characters are refused in the free-text fields, so that
-- no text can pass for the separator between two fields.

ALTER TABLE access_log ADD COLUMN patients uuid[];
ALTER TABLE access_log ADD CONSTRAINT access_log_patients_bounded
    CHECK (cardinality(patients) BETWEEN 1 AND 1000);
ALTER TABLE access_log ADD CONSTRAINT access_log_via_printable CHECK (via !~ '[[:cntrl:]]');
ALTER TABLE access_log ADD CONSTRAINT access_log_request_id_printable
    CHECK (request_id !~ '[[:cntrl:]]');
CREATE INDEX access_log_patients_idx ON access_log USING gin (patients);

CREATE FUNCTION app.access_record_digest(p_prev bytea, p_org uuid, p_id uuid, p_seq bigint,
                                         p_at timestamptz, p_actor_kind text, p_actor_id uuid,
                                         p_subject_kind text, p_subject_id uuid, p_action text,
                                         p_via text, p_client_addr inet, p_request_id text,
                                         p_patients uuid[])
    RETURNS bytea
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sha256(p_prev || convert_to(concat_ws(chr(31),
        p_org::text, p_id::text, coalesce(p_seq::text, ''),
        to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        p_actor_kind, coalesce(p_actor_id::text, ''), p_subject_kind,
        coalesce(p_subject_id::text, ''), p_action, p_via,
        coalesce(host(p_client_addr), ''), coalesce(p_request_id, ''),
        array_to_string(p_patients, ',')), 'UTF8'))
$$;

-- A new record: unsealed, stamped now, and an empty list of patients is no list.
CREATE OR REPLACE FUNCTION app.access_log_new_record() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.seq IS NOT NULL OR NEW.prev_hash IS NOT NULL OR NEW.hash IS NOT NULL THEN
        RAISE EXCEPTION 'access log records are sealed by app.seal_access_log, not by their writer'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    NEW.at := now();
    IF cardinality(NEW.patients) = 0 THEN
        NEW.patients := NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION app.access_log_sealed_once() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF OLD.seq IS NOT NULL
       OR (NEW.org_id, NEW.id, NEW.at, NEW.actor_kind, NEW.actor_id, NEW.subject_kind,
           NEW.subject_id, NEW.action, NEW.via, NEW.client_addr, NEW.request_id, NEW.patients)
          IS DISTINCT FROM
          (OLD.org_id, OLD.id, OLD.at, OLD.actor_kind, OLD.actor_id, OLD.subject_kind,
           OLD.subject_id, OLD.action, OLD.via, OLD.client_addr, OLD.request_id, OLD.patients) THEN
        RAISE EXCEPTION 'access log records are append-only'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION app.seal_access_log(p_orgs integer, p_batch integer)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_org uuid;
    v_seq bigint;
    v_hash bytea;
    v_next bytea;
    v_rec record;
    v_sealed bigint := 0;
BEGIN
    FOR v_org IN
        SELECT DISTINCT l.org_id FROM public.access_log l WHERE l.seq IS NULL LIMIT greatest(p_orgs, 0)
    LOOP
        PERFORM pg_advisory_xact_lock(hashtext('voxanne.access_log'), hashtext(v_org::text));
        SELECT l.seq, l.hash INTO v_seq, v_hash
          FROM public.access_log l
         WHERE l.org_id = v_org AND l.seq IS NOT NULL
         ORDER BY l.seq DESC LIMIT 1;
        v_seq := coalesce(v_seq, 0);
        v_hash := coalesce(v_hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
        FOR v_rec IN
            SELECT * FROM public.access_log l
             WHERE l.org_id = v_org AND l.seq IS NULL
             ORDER BY l.at, l.id LIMIT greatest(p_batch, 0)
        LOOP
            v_seq := v_seq + 1;
            v_next := app.access_record_digest(v_hash, v_rec.org_id, v_rec.id, v_seq, v_rec.at,
                                               v_rec.actor_kind, v_rec.actor_id, v_rec.subject_kind,
                                               v_rec.subject_id, v_rec.action, v_rec.via,
                                               v_rec.client_addr, v_rec.request_id, v_rec.patients);
            UPDATE public.access_log l
               SET seq = v_seq, prev_hash = v_hash, hash = v_next
             WHERE l.org_id = v_org AND l.id = v_rec.id;
            v_hash := v_next;
            v_sealed := v_sealed + 1;
        END LOOP;
    END LOOP;
    RETURN v_sealed;
END
$$;

CREATE OR REPLACE FUNCTION app.broken_access_chains()
    RETURNS TABLE (org_id uuid, seq bigint, problem text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH sealed AS (
        SELECT l.org_id, l.seq, l.prev_hash, l.hash,
               app.access_record_digest(l.prev_hash, l.org_id, l.id, l.seq, l.at, l.actor_kind,
                                        l.actor_id, l.subject_kind, l.subject_id, l.action, l.via,
                                        l.client_addr, l.request_id, l.patients) AS recomputed,
               lag(l.seq) OVER w AS prev_seq, lag(l.hash) OVER w AS prev_record_hash
          FROM public.access_log l
         WHERE l.seq IS NOT NULL
        WINDOW w AS (PARTITION BY l.org_id ORDER BY l.seq)
    ), checked AS (
        SELECT s.org_id, s.seq,
               CASE WHEN s.seq <> coalesce(s.prev_seq, 0) + 1 THEN 'a record is missing before it'
                    WHEN s.prev_hash IS DISTINCT FROM coalesce(s.prev_record_hash,
                         '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
                         THEN 'its prev_hash is not the previous record''s hash'
                    WHEN s.hash IS DISTINCT FROM s.recomputed
                         THEN 'its hash does not match its contents'
               END AS problem
          FROM sealed s
    )
    SELECT DISTINCT ON (c.org_id) c.org_id, c.seq, c.problem
      FROM checked c WHERE c.problem IS NOT NULL
     ORDER BY c.org_id, c.seq
$$;

DROP FUNCTION app.access_record_hash(bytea, uuid, uuid, bigint, timestamptz, text, uuid, text,
                                     uuid, text, text, inet, text);
