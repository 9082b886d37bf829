-- The access log's retention: a clinic's oldest records, once past its `retain_access_log_days`
-- (six years at least), are removed from the front of its chain, and a checkpoint keeps the
-- place and hash of the last one removed, so that the rest of the chain still verifies from
-- there (app.broken_access_chains below). The chain's newest record always stays, so that the
-- sealer goes on from it.

CREATE TABLE access_log_checkpoints (
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- The chain was purged through this record; the next one's prev_hash is `hash`. (0 and
    -- 32 zero bytes: the chain's start, as if nothing had been purged.)
    through_seq  bigint NOT NULL CHECK (through_seq >= 0),
    hash         bytea NOT NULL CHECK (length(hash) = 32),
    at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, through_seq)
);
CALL app.secure_tenant_table('access_log_checkpoints');
-- Only app.purge_access_log writes them.
REVOKE INSERT, UPDATE, DELETE ON access_log_checkpoints FROM voxanne_app;
GRANT INSERT ON access_log_checkpoints TO voxanne_system;
GRANT DELETE ON access_log TO voxanne_system;
GRANT INSERT ON retention_purges TO voxanne_system;

-- Removes up to `p_limit` of the current clinic's oldest sealed records that are past its
-- retention, from the front of its chain, checkpoints the chain, and records the purge (a row
-- of retention_purges, and one access record by the system through `p_via`); how many. It acts
-- on the clinic of the current tenant transaction only, and computes the cutoff itself from the
-- clinic's setting, so no caller can remove a record sooner. Under the clinic's chain lock,
-- like the sealer. (It writes the records itself: on Citus, a transaction may not go on to
-- write a table's shards as another role after this function changed them.)
CREATE FUNCTION app.purge_access_log(p_limit integer, p_via text)
    RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_org uuid := app.current_org_id();
    v_cutoff timestamptz;
    v_keep bigint;
    v_ids uuid[];
    v_seq bigint;
    v_hash bytea;
BEGIN
    IF v_org IS NULL THEN
        RAISE EXCEPTION 'app.purge_access_log runs in a clinic''s tenant transaction'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT now() - make_interval(days => o.retain_access_log_days) INTO v_cutoff
      FROM public.organizations o WHERE o.id = v_org;
    IF v_cutoff IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('voxanne.access_log'), hashtext(v_org::text));
    -- The first record that stays: the oldest sealed one not yet due, else the chain's head.
    SELECT coalesce(min(l.seq) FILTER (WHERE l.at >= v_cutoff), max(l.seq)) INTO v_keep
      FROM public.access_log l WHERE l.org_id = v_org AND l.seq IS NOT NULL;
    IF v_keep IS NULL THEN
        RETURN 0;
    END IF;
    SELECT array_agg(x.id ORDER BY x.seq), max(x.seq) INTO v_ids, v_seq
      FROM (SELECT l.id, l.seq FROM public.access_log l
             WHERE l.org_id = v_org AND l.seq IS NOT NULL AND l.seq < v_keep
             ORDER BY l.seq LIMIT least(greatest(p_limit, 0), 10000)) x;
    IF v_seq IS NULL THEN
        RETURN 0;
    END IF;
    SELECT l.hash INTO v_hash FROM public.access_log l WHERE l.org_id = v_org AND l.seq = v_seq;
    DELETE FROM public.access_log l WHERE l.org_id = v_org AND l.id = ANY (v_ids);
    INSERT INTO public.access_log_checkpoints (org_id, through_seq, hash)
        VALUES (v_org, v_seq, v_hash);
    INSERT INTO public.retention_purges (org_id, kind, cutoff, items, subject_ids)
        VALUES (v_org, 'access_log', v_cutoff, cardinality(v_ids), v_ids);
    INSERT INTO public.access_log (org_id, actor_kind, subject_kind, action, via)
        VALUES (v_org, 'system', 'access_log', 'delete', p_via);
    RETURN cardinality(v_ids);
END
$$;
ALTER FUNCTION app.purge_access_log(integer, text) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.purge_access_log(integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.purge_access_log(integer, text) TO voxanne_app;

-- The chains again, each from its clinic's latest checkpoint (or from the start): the first
-- remaining record must follow the checkpoint's place and hash.
CREATE OR REPLACE FUNCTION app.broken_access_chains()
    RETURNS TABLE (org_id uuid, seq bigint, problem text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH latest AS (
        SELECT DISTINCT ON (k.org_id) k.org_id, k.through_seq, k.hash
          FROM public.access_log_checkpoints k
         ORDER BY k.org_id, k.through_seq DESC
    ), sealed AS (
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
               CASE WHEN s.seq <> coalesce(s.prev_seq, k.through_seq, 0) + 1
                         THEN 'a record is missing before it'
                    WHEN s.prev_hash IS DISTINCT FROM coalesce(s.prev_record_hash, k.hash,
                         '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
                         THEN 'its prev_hash is not the previous record''s hash'
                    WHEN s.hash IS DISTINCT FROM s.recomputed
                         THEN 'its hash does not match its contents'
               END AS problem
          FROM sealed s LEFT JOIN latest k ON k.org_id = s.org_id
    )
    SELECT DISTINCT ON (c.org_id) c.org_id, c.seq, c.problem
      FROM checked c WHERE c.problem IS NOT NULL
     ORDER BY c.org_id, c.seq
$$;
