-- Calendar sync: a linked calendar is read (its busy times) and written (one event per
-- appointment) by two background jobs, claimed fairly across the clinics like the recordings
-- and the SMS (TENANCY.md section 5).
--
-- A connection is the diary of one bookable resource of its clinic (`resource`, the
-- appointments' own column): its busy times make that resource busy, and that resource's
-- appointments are written to it. `calendar_id` is which of the account's calendars
-- ('primary': its default one).
--
-- A connection is `active`, or `broken`: the provider refused its refresh token
-- (`invalid_grant`: the grant was revoked or expired), so nothing calls the provider with it
-- any more until the clinic links the account again (which makes it active). Its last known
-- busy times still count: a time known to be busy is never offered.

ALTER TABLE calendar_connections
    ADD COLUMN status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'broken')),
    ADD COLUMN broken_reason text CHECK (length(broken_reason) <= 500),
    ADD COLUMN broken_at timestamptz,
    ADD COLUMN resource text NOT NULL DEFAULT 'default' CHECK (length(resource) BETWEEN 1 AND 100),
    ADD COLUMN calendar_id text NOT NULL DEFAULT 'primary' CHECK (length(calendar_id) BETWEEN 1 AND 1024),
    -- The sync job: due at `sync_due_at`; a claim holds the row until `sync_lease_until` and
    -- is named by `sync_claims` (every write of the claim is conditional on it).
    ADD COLUMN sync_due_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN sync_lease_until timestamptz,
    ADD COLUMN sync_claims integer NOT NULL DEFAULT 0 CHECK (sync_claims >= 0),
    -- Failed syncs in a row (the backoff); 0 after a success.
    ADD COLUMN sync_failures integer NOT NULL DEFAULT 0 CHECK (sync_failures >= 0),
    ADD COLUMN last_sync_error text CHECK (length(last_sync_error) <= 2000),
    -- The busy times held for this connection cover [busy_from, busy_until), read at
    -- busy_synced_at; NULL before the first sync.
    ADD COLUMN busy_synced_at timestamptz,
    ADD COLUMN busy_from timestamptz,
    ADD COLUMN busy_until timestamptz,
    -- Push notifications: Google's channel (our id, its resourceId) or Graph's subscription
    -- (its id) on the calendar's events, until `watch_expires_at`; the notifications carry a
    -- secret whose sha256 is `watch_token_hash`. `watch_attempted_at`: the last try to start
    -- one (a failing provider is not asked again at every sync).
    ADD COLUMN watch_id text CHECK (length(watch_id) <= 1024),
    ADD COLUMN watch_resource_id text CHECK (length(watch_resource_id) <= 1024),
    ADD COLUMN watch_expires_at timestamptz,
    ADD COLUMN watch_token_hash bytea CHECK (length(watch_token_hash) = 32),
    ADD COLUMN watch_attempted_at timestamptz,
    -- Notifications received, and how many of them the last check of the events had seen:
    -- more received means an event may have been moved or deleted by staff.
    ADD COLUMN notifications integer NOT NULL DEFAULT 0 CHECK (notifications >= 0),
    ADD COLUMN notifications_checked integer NOT NULL DEFAULT 0 CHECK (notifications_checked >= 0),
    -- When every upcoming event of the calendar was last compared with its appointment.
    ADD COLUMN events_checked_at timestamptz,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

CREATE INDEX calendar_connections_org_sync_idx ON calendar_connections (org_id, sync_due_at)
    WHERE status = 'active';
CREATE INDEX calendar_connections_org_resource_idx ON calendar_connections (org_id, resource);
-- A notification names its watch, not its clinic.
CREATE UNIQUE INDEX calendar_connections_watch_key ON calendar_connections (provider, watch_id)
    WHERE watch_id IS NOT NULL;

-- The busy times of a connection's calendar, as the provider last answered them (Google's
-- freeBusy.query, Microsoft Graph's getSchedule): the cache availability reads, replaced
-- whole by each sync.
CREATE TABLE calendar_busy (
    org_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id             uuid NOT NULL DEFAULT gen_random_uuid(),
    connection_id  uuid NOT NULL,
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    CHECK (ends_at > starts_at),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, connection_id) REFERENCES calendar_connections (org_id, id) ON DELETE CASCADE
);
CREATE INDEX calendar_busy_org_connection_idx ON calendar_busy (org_id, connection_id, starts_at);
CALL app.secure_tenant_table('calendar_busy');

-- One appointment's event in one connected calendar. Booking, moving or cancelling an
-- appointment (in the booking's own transaction) asks for a write: `wanted` counts the
-- appointment's versions, `written` the version the calendar has. A 'pending' row is a job;
-- the writer makes the calendar match the appointment as it is then (an event where it is
-- booked, none where it is cancelled or no longer this calendar's resource).
--
-- pending -> writing (claimed, with a lease) -> synced, or back to pending (a retry after a
-- backoff, or a newer version asked for meanwhile), or failed (refused for good: visible on
-- the appointment, with the provider's message).
CREATE TABLE calendar_event_writes (
    org_id            uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    appointment_id    uuid NOT NULL,
    connection_id     uuid NOT NULL,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'writing', 'synced', 'failed')),
    -- The provider's id of the event, once it exists.
    event_id          text CHECK (length(event_id) <= 1024),
    -- The span the calendar's event has, as last written (its own busy time).
    written_starts_at timestamptz,
    written_ends_at   timestamptz,
    wanted            integer NOT NULL DEFAULT 1 CHECK (wanted >= 1),
    written           integer NOT NULL DEFAULT 0 CHECK (written >= 0),
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at   timestamptz,
    lease_until       timestamptz,
    last_error        text CHECK (length(last_error) <= 2000),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, appointment_id, connection_id),
    FOREIGN KEY (org_id, appointment_id) REFERENCES appointments (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, connection_id) REFERENCES calendar_connections (org_id, id) ON DELETE CASCADE
);
CREATE INDEX calendar_event_writes_org_queue_idx ON calendar_event_writes (org_id, next_attempt_at NULLS FIRST, created_at)
    WHERE status = 'pending';
CREATE INDEX calendar_event_writes_org_lease_idx ON calendar_event_writes (org_id, lease_until)
    WHERE status = 'writing';
CREATE INDEX calendar_event_writes_org_connection_idx ON calendar_event_writes (org_id, connection_id);
CALL app.secure_tenant_table('calendar_event_writes');

GRANT UPDATE (sync_lease_until, sync_claims, sync_due_at, notifications, updated_at)
    ON calendar_connections TO voxanne_system;
GRANT UPDATE (status, attempts, lease_until, next_attempt_at, updated_at)
    ON calendar_event_writes TO voxanne_system;

-- Claims up to p_batch connections of active orgs whose sync is due, shared out round-robin
-- across the orgs (as app.claim_sms): rank 1 of every org before rank 2 of any. A connection
-- whose lease ran out (its worker died) is due again as it is. Rows another worker holds are
-- skipped, not waited for. A claim counts in `sync_claims`, which names it; it returns the
-- `sync_due_at` it was claimed for, so that a sync asked for while it runs (a push
-- notification moves `sync_due_at`) is not lost when it finishes.
CREATE FUNCTION app.claim_calendar_syncs(p_batch integer, p_lease interval)
    RETURNS TABLE (org_id uuid, connection_id uuid, claim integer, failures integer, due_at timestamptz)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH candidates AS (
        SELECT due.org_id, due.id,
               row_number() OVER (PARTITION BY due.org_id ORDER BY due.sync_due_at, due.id) AS rank
          FROM public.organizations o
          CROSS JOIN LATERAL (
                SELECT c.org_id, c.id, c.sync_due_at
                  FROM public.calendar_connections c
                 WHERE c.org_id = o.id
                   AND c.status = 'active'
                   AND c.sync_due_at <= now()
                   AND coalesce(c.sync_lease_until, '-infinity') < now()
                 ORDER BY c.sync_due_at, c.id
                 LIMIT greatest(p_batch, 0)) due
         WHERE o.status = 'active'
    ),
    picked AS (
        SELECT cand.org_id, cand.id FROM candidates cand ORDER BY cand.rank, random() LIMIT greatest(p_batch, 0)
    ),
    locked AS (
        SELECT c.org_id, c.id
          FROM public.calendar_connections c
         WHERE (c.org_id, c.id) IN (SELECT p.org_id, p.id FROM picked p)
           AND c.status = 'active'
           AND coalesce(c.sync_lease_until, '-infinity') < now()
           FOR UPDATE OF c SKIP LOCKED
    )
    UPDATE public.calendar_connections c
       SET sync_claims = c.sync_claims + 1,
           sync_lease_until = now() + p_lease,
           updated_at = now()
      FROM locked l
     WHERE c.org_id = l.org_id AND c.id = l.id
    RETURNING c.org_id, c.id, c.sync_claims, c.sync_failures, c.sync_due_at
$$;
ALTER FUNCTION app.claim_calendar_syncs(integer, interval) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.claim_calendar_syncs(integer, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.claim_calendar_syncs(integer, interval) TO voxanne_app;

-- Claims up to p_batch pending event writes of active orgs whose time has come, round-robin
-- across the orgs as above. The claimed rows become 'writing' with a lease; their attempt is
-- counted. Returns the version each claim writes.
CREATE FUNCTION app.claim_calendar_writes(p_batch integer, p_lease interval)
    RETURNS TABLE (org_id uuid, appointment_id uuid, connection_id uuid, wanted integer, attempt integer)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH candidates AS (
        SELECT due.org_id, due.appointment_id, due.connection_id,
               row_number() OVER (PARTITION BY due.org_id
                                  ORDER BY due.next_attempt_at NULLS FIRST, due.created_at) AS rank
          FROM public.organizations o
          CROSS JOIN LATERAL (
                SELECT w.org_id, w.appointment_id, w.connection_id, w.next_attempt_at, w.created_at
                  FROM public.calendar_event_writes w
                 WHERE w.org_id = o.id
                   AND w.status = 'pending'
                   AND (w.next_attempt_at IS NULL OR w.next_attempt_at <= now())
                 ORDER BY w.next_attempt_at NULLS FIRST, w.created_at
                 LIMIT greatest(p_batch, 0)) due
         WHERE o.status = 'active'
    ),
    picked AS (
        SELECT cand.org_id, cand.appointment_id, cand.connection_id
          FROM candidates cand ORDER BY cand.rank, random() LIMIT greatest(p_batch, 0)
    ),
    locked AS (
        SELECT w.org_id, w.appointment_id, w.connection_id
          FROM public.calendar_event_writes w
         WHERE (w.org_id, w.appointment_id, w.connection_id)
               IN (SELECT p.org_id, p.appointment_id, p.connection_id FROM picked p)
           AND w.status = 'pending'
           FOR UPDATE OF w SKIP LOCKED
    )
    UPDATE public.calendar_event_writes w
       SET status = 'writing',
           attempts = w.attempts + 1,
           lease_until = now() + p_lease,
           next_attempt_at = NULL,
           updated_at = now()
      FROM locked l
     WHERE w.org_id = l.org_id AND w.appointment_id = l.appointment_id
       AND w.connection_id = l.connection_id
    RETURNING w.org_id, w.appointment_id, w.connection_id, w.wanted, w.attempts
$$;
ALTER FUNCTION app.claim_calendar_writes(integer, interval) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.claim_calendar_writes(integer, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.claim_calendar_writes(integer, interval) TO voxanne_app;

-- Puts back in the queue the event writes of active orgs left 'writing' by a worker that
-- died (lease run out). Writes are idempotent (a deterministic event id, or Graph's
-- transactionId), so writing again is safe. Returns how many.
CREATE FUNCTION app.requeue_stale_calendar_writes()
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH requeued AS (
        UPDATE public.calendar_event_writes w
           SET status = 'pending', lease_until = NULL, updated_at = now()
          FROM public.organizations o
         WHERE o.id = w.org_id AND o.status = 'active'
           AND w.status = 'writing'
           AND coalesce(w.lease_until, '-infinity') < now()
        RETURNING 1
    )
    SELECT count(*) FROM requeued
$$;
ALTER FUNCTION app.requeue_stale_calendar_writes() OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.requeue_stale_calendar_writes() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.requeue_stale_calendar_writes() TO voxanne_app;

-- For /metrics, counts only, over all orgs: linked calendars by state (`active`, `broken`,
-- and `stale`: active, but without a sync in the last 10 minutes, so availability answers
-- from old busy times) and event writes by status.
CREATE FUNCTION app.calendar_queue_depth()
    RETURNS TABLE (kind text, status text, depth bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'connections', c.status, count(*) FROM public.calendar_connections c GROUP BY c.status
    UNION ALL
    SELECT 'connections', 'stale', count(*) FROM public.calendar_connections c
     WHERE c.status = 'active'
       AND coalesce(c.busy_synced_at, '-infinity') < now() - interval '10 minutes'
    UNION ALL
    SELECT 'event_writes', w.status, count(*) FROM public.calendar_event_writes w GROUP BY w.status
$$;
ALTER FUNCTION app.calendar_queue_depth() OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.calendar_queue_depth() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.calendar_queue_depth() TO voxanne_app;

-- A push notification from a provider (Google's channel headers, a Graph change
-- notification) carries no clinic: its watch id names the connection, and its secret must
-- be the one given when the watch was started (compared by sha256). In one statement, a
-- notification that matches asks for the connection's sync at once and counts itself (the
-- sync then compares the upcoming events with their appointments). Returns the connection's
-- org and id, or nothing when the watch is unknown or the secret is not its own.
CREATE FUNCTION app.calendar_notified(p_provider text, p_watch_id text, p_token_hash bytea)
    RETURNS TABLE (org_id uuid, connection_id uuid)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.calendar_connections c
       SET sync_due_at = now(),
           notifications = c.notifications + 1,
           updated_at = now()
     WHERE c.provider = p_provider AND c.watch_id = p_watch_id
       AND c.watch_token_hash = p_token_hash
       AND c.status = 'active'
    RETURNING c.org_id, c.id
$$;
ALTER FUNCTION app.calendar_notified(text, text, bytea) OWNER TO voxanne_system;
REVOKE ALL ON FUNCTION app.calendar_notified(text, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.calendar_notified(text, text, bytea) TO voxanne_app;
