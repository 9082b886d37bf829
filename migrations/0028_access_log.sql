-- The access log of patient data: who read or changed what of a clinic's patients, how, when
-- and from where. A clinic's rows like any other (forced RLS, the one policy), but append-only
-- for the application: it may add records and read them, never change or remove one (no
-- UPDATE or DELETE grant). Erasing the clinic removes its log with it (the cascade from
-- organizations runs as the owner).
--
-- Tamper-evident: every record is sealed once into its clinic's chain, `hash = sha256(prev_hash
-- || the record)`, the first record's `prev_hash` 32 zero bytes. Sealing is a job
-- (app.seal_access_log), not the writer's work: a request adds its record in its own
-- transaction without waiting for the chain's head, which would make a clinic's requests
-- take turns. `voxanne audit` recomputes the chains (`access_log.chain`); a record altered or
-- removed by anyone, a superuser included, breaks its clinic's chain there.

CREATE TABLE access_log (
    org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    at            timestamptz NOT NULL DEFAULT now(),
    -- Who: a user (a member), the voice agent, a background job, an operator's CLI.
    actor_kind    text NOT NULL CHECK (actor_kind IN ('user', 'agent', 'system', 'cli')),
    actor_id      uuid,
    -- What: the kind of patient data and its id (NULL for a list).
    subject_kind  text NOT NULL CHECK (subject_kind ~ '^[a-z_]{1,40}$'),
    subject_id    uuid,
    action        text NOT NULL
                  CHECK (action IN ('read', 'list', 'create', 'update', 'delete', 'export', 'erase')),
    -- How: the route or the agent's tool; from where: the client's address, the request id.
    via           text NOT NULL CHECK (length(via) BETWEEN 1 AND 300),
    client_addr   inet,
    request_id    text CHECK (length(request_id) <= 200),
    -- The chain, set once by app.seal_access_log.
    seq           bigint,
    prev_hash     bytea CHECK (length(prev_hash) = 32),
    hash          bytea CHECK (length(hash) = 32),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, seq),
    CHECK ((seq IS NULL) = (prev_hash IS NULL) AND (seq IS NULL) = (hash IS NULL))
);
CREATE INDEX access_log_unsealed_idx ON access_log (org_id, at, id) WHERE seq IS NULL;
CREATE INDEX access_log_subject_idx ON access_log (org_id, subject_kind, subject_id, at);
CREATE INDEX access_log_at_idx ON access_log (org_id, at);
CALL app.secure_tenant_table('access_log');
-- The application adds records and reads them, nothing else; the sealer sets their chain.
-- (Table grants, not column grants: Citus passes only the former on to the shards. The
-- triggers below narrow them.)
REVOKE UPDATE, DELETE ON access_log FROM voxanne_app;
GRANT UPDATE ON access_log TO voxanne_system;

-- A record's digest in its chain: the previous hash, then every field in a fixed order, each
-- as text (NULL as the empty string), separated by a unit separator. (The fields one by one,
-- not the row: on Citus a shard's rows have the shard's own row type.)
CREATE FUNCTION app.access_record_hash(p_prev bytea, p_org uuid, p_id uuid, p_seq bigint,
                                       p_at timestamptz, p_actor_kind text, p_actor_id uuid,
                                       p_subject_kind text, p_subject_id uuid, p_action text,
                                       p_via text, p_client_addr inet, p_request_id text)
    RETURNS bytea
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sha256(p_prev || convert_to(concat_ws(chr(31),
        p_org::text, p_id::text, coalesce(p_seq::text, ''),
        to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        p_actor_kind, coalesce(p_actor_id::text, ''), p_subject_kind,
        coalesce(p_subject_id::text, ''), p_action, p_via,
        coalesce(host(p_client_addr), ''), coalesce(p_request_id, '')), 'UTF8'))
$$;

-- A new record is unsealed and stamped now: a writer names neither its place in the chain nor
-- its time.
CREATE FUNCTION app.access_log_new_record() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.seq IS NOT NULL OR NEW.prev_hash IS NOT NULL OR NEW.hash IS NOT NULL THEN
        RAISE EXCEPTION 'access log records are sealed by app.seal_access_log, not by their writer'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    NEW.at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER access_log_new_record BEFORE INSERT ON access_log
    FOR EACH ROW EXECUTE FUNCTION app.access_log_new_record();

-- Sealed once: a record's fields never change, and its chain columns only from unset.
CREATE FUNCTION app.access_log_sealed_once() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF OLD.seq IS NOT NULL
       OR (NEW.org_id, NEW.id, NEW.at, NEW.actor_kind, NEW.actor_id, NEW.subject_kind,
           NEW.subject_id, NEW.action, NEW.via, NEW.client_addr, NEW.request_id)
          IS DISTINCT FROM
          (OLD.org_id, OLD.id, OLD.at, OLD.actor_kind, OLD.actor_id, OLD.subject_kind,
           OLD.subject_id, OLD.action, OLD.via, OLD.client_addr, OLD.request_id) THEN
        RAISE EXCEPTION 'access log records are append-only'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER access_log_sealed_once BEFORE UPDATE ON access_log
    FOR EACH ROW EXECUTE FUNCTION app.access_log_sealed_once();

-- Seals up to `p_batch` unsealed records of each of up to `p_orgs` clinics, oldest first, into
-- their chains; how many. A clinic's chain is extended under its own advisory lock, so two
-- sealers never fork it; a record written meanwhile waits for the next run.
CREATE FUNCTION app.seal_access_log(p_orgs integer, p_batch integer)
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
            v_next := app.access_record_hash(v_hash, v_rec.org_id, v_rec.id, v_seq, v_rec.at,
                                             v_rec.actor_kind, v_rec.actor_id, v_rec.subject_kind,
                                             v_rec.subject_id, v_rec.action, v_rec.via,
                                             v_rec.client_addr, v_rec.request_id);
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
ALTER FUNCTION app.seal_access_log(integer, integer) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.seal_access_log(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.seal_access_log(integer, integer) TO voxanne_app;

-- The first record of each clinic whose chain does not hold (seq gaps, a prev_hash that is not
-- the previous record's hash, a hash that is not the record's): for `voxanne audit`. Reads
-- every clinic's log, as its owner; answers only ids, never contents.
CREATE FUNCTION app.broken_access_chains()
    RETURNS TABLE (org_id uuid, seq bigint, problem text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH sealed AS (
        SELECT l.org_id, l.seq, l.prev_hash, l.hash,
               app.access_record_hash(l.prev_hash, l.org_id, l.id, l.seq, l.at, l.actor_kind,
                                      l.actor_id, l.subject_kind, l.subject_id, l.action, l.via,
                                      l.client_addr, l.request_id) AS recomputed,
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
ALTER FUNCTION app.broken_access_chains() OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.broken_access_chains() FROM PUBLIC;
