-- The tenant context helpers, made inlinable. PostgreSQL inlines a LANGUAGE sql function into
-- the query that calls it only when the function has no SET clause; with `SET search_path`
-- every call saved and restored the setting, and the policy of every table a request touched
-- paid for it (several calls a request). The helpers run with the caller's rights (they are
-- not SECURITY DEFINER), so a fixed search_path guarded nothing: whoever could plant objects
-- on the search_path of a session could as well set that session's context. The names they
-- use are schema-qualified all the same.
CREATE OR REPLACE FUNCTION app.current_org_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(pg_catalog.current_setting('app.org_id', true), '')::pg_catalog.uuid $$;
ALTER FUNCTION app.current_org_id() RESET ALL;

CREATE OR REPLACE FUNCTION app.current_user_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(pg_catalog.current_setting('app.user_id', true), '')::pg_catalog.uuid $$;
ALTER FUNCTION app.current_user_id() RESET ALL;
