-- The access records of reads, written in batches across requests and clinics.
--
-- A transaction that changes patient data writes its records itself, before its COMMIT, so the
-- change and its record commit together. A transaction that only reads would have to become a
-- writing transaction for its record, and that is most of the cost of a read (its own WAL
-- flush at commit). Its records go instead to the server's access writer, which writes the
-- records of many requests in one statement: this function. The request answers only once
-- the statement has committed: nothing is shown without its record.
--
-- Cross-clinic by design, so it is a SECURITY DEFINER function of voxanne_system executable
-- by the application role alone. It takes the records as columns (arrays of scalars: on
-- Citus a row-typed argument does not reach the shards), checks that every record naming a
-- user as its actor names a member of that record's clinic, and adds them unsealed, stamped
-- with this transaction's time by the insert trigger. It can add records and nothing else:
-- no record is read, changed or removed, and the chain is still the sealer's.
-- (A record of the agent, a job or the CLI names no member; the application role may
-- already open any clinic's job transaction, so this function gives it no power it did not
-- have.)

GRANT INSERT ON access_log TO voxanne_system;

CREATE FUNCTION app.write_access_records(p_org uuid[], p_actor_kind text[], p_actor_id uuid[],
                                         p_subject_kind text[], p_subject_id uuid[],
                                         p_action text[], p_via text[], p_client_addr inet[],
                                         p_request_id text[], p_patients text[])
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_n integer := coalesce(cardinality(p_org), 0);
    v_pair record;
    v_written bigint;
BEGIN
    IF coalesce(cardinality(p_actor_kind), 0) <> v_n OR coalesce(cardinality(p_actor_id), 0) <> v_n
       OR coalesce(cardinality(p_subject_kind), 0) <> v_n
       OR coalesce(cardinality(p_subject_id), 0) <> v_n OR coalesce(cardinality(p_action), 0) <> v_n
       OR coalesce(cardinality(p_via), 0) <> v_n OR coalesce(cardinality(p_client_addr), 0) <> v_n
       OR coalesce(cardinality(p_request_id), 0) <> v_n
       OR coalesce(cardinality(p_patients), 0) <> v_n THEN
        RAISE EXCEPTION 'the columns of the access records differ in length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A user's record needs a live membership of its clinic (one lookup per pair: on Citus
    -- each goes to the clinic's one shard).
    FOR v_pair IN
        SELECT DISTINCT r.org, r.actor
          FROM unnest(p_org, p_actor_kind, p_actor_id) AS r (org, kind, actor)
         WHERE r.kind = 'user'
    LOOP
        PERFORM 1 FROM public.organization_members m
         WHERE m.org_id = v_pair.org AND m.user_id = v_pair.actor;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'an access record names a user who is not a member of its clinic'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END LOOP;
    INSERT INTO public.access_log (org_id, actor_kind, actor_id, subject_kind, subject_id, action,
                                   via, client_addr, request_id, patients)
    SELECT r.org, r.kind, r.actor, r.subject_kind, r.subject_id, r.action, r.via, r.addr,
           r.request_id, r.patients::uuid[]
      FROM unnest(p_org, p_actor_kind, p_actor_id, p_subject_kind, p_subject_id, p_action, p_via,
                  p_client_addr, p_request_id, p_patients)
           AS r (org, kind, actor, subject_kind, subject_id, action, via, addr, request_id,
                 patients);
    GET DIAGNOSTICS v_written = ROW_COUNT;
    RETURN v_written;
END
$$;
ALTER FUNCTION app.write_access_records(uuid[], text[], uuid[], text[], uuid[], text[], text[],
                                        inet[], text[], text[]) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.write_access_records(uuid[], text[], uuid[], text[], uuid[], text[],
                                                text[], inet[], text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.write_access_records(uuid[], text[], uuid[], text[], uuid[], text[],
                                                   text[], inet[], text[], text[]) TO voxanne_app;
