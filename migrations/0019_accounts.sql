-- Built-in accounts for the dashboard: email and password (an argon2id hash), sessions, password
-- resets, and invitations into a clinic.
--
-- An account's id is the user id memberships name (`organization_members.user_id`), the same
-- space as the `sub` of an external identity provider's JWTs: an account is one more way to
-- prove who one is, and which clinics one may act in is still decided by the memberships,
-- checked in every tenant transaction.
--
-- Accounts, sessions and resets belong to no clinic. The application role holds no grant on
-- them: it reaches them only through the functions below (SECURITY DEFINER, owned by
-- voxanne_system), each one statement, each taking a secret's hash, never listing anything.
-- Invitations are a clinic's rows like any other (RLS, the clinic's admins make them); taking
-- one from its link, by someone who is not yet a member, is a function too.

CREATE TABLE accounts (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Lower case, trimmed: one account per address whatever its spelling.
    email                text NOT NULL UNIQUE
                         CHECK (email = lower(btrim(email)) AND length(email) BETWEEN 3 AND 320),
    display_name         text CHECK (length(display_name) <= 200),
    -- A PHC string (`$argon2id$…`); `!` for an account that cannot sign in with a password.
    password_hash        text NOT NULL CHECK (length(password_hash) BETWEEN 1 AND 500),
    password_changed_at  timestamptz NOT NULL DEFAULT now(),
    created_at           timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE accounts FORCE ROW LEVEL SECURITY;

-- A signed-in browser: the sha256 of the cookie's random token (the token itself is never
-- stored).
CREATE TABLE account_sessions (
    token_hash   bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- The clinic the session acts in when a request names none (the dashboard's switcher):
    -- like a token's app_metadata.org_id, it counts only with a live membership, checked in
    -- every tenant transaction.
    active_org   uuid,
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_sessions_account_idx ON account_sessions (account_id);
CREATE INDEX account_sessions_expiry_idx ON account_sessions (expires_at);
ALTER TABLE account_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE account_sessions FORCE ROW LEVEL SECURITY;

-- A password reset link: the sha256 of its random token.
CREATE TABLE password_resets (
    token_hash   bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX password_resets_account_idx ON password_resets (account_id);
ALTER TABLE password_resets ENABLE ROW LEVEL SECURITY;
ALTER TABLE password_resets FORCE ROW LEVEL SECURITY;

-- An invitation into a clinic, with a role, for an email address. Its link carries the org,
-- the invitation's id and a random secret; the row keeps the secret's sha256. Used once.
CREATE TABLE invitations (
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    email        text NOT NULL
                 CHECK (email = lower(btrim(email)) AND length(email) BETWEEN 3 AND 320),
    role         text NOT NULL CHECK (role IN ('owner', 'admin', 'staff')),
    secret_hash  bytea NOT NULL CHECK (length(secret_hash) = 32),
    invited_by   uuid NOT NULL,
    expires_at   timestamptz NOT NULL,
    accepted_at  timestamptz,
    accepted_by  uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    CHECK ((accepted_at IS NULL) = (accepted_by IS NULL))
);
CREATE INDEX invitations_org_email_idx ON invitations (org_id, email);
CALL app.secure_tenant_table('invitations');

GRANT SELECT, INSERT, UPDATE, DELETE ON accounts, account_sessions, password_resets TO voxanne_system;
GRANT SELECT, UPDATE ON invitations TO voxanne_system;
GRANT SELECT, INSERT ON organization_members TO voxanne_system;

-- Signing in: the account of an address, with its hash to verify (no row: no such account).
CREATE FUNCTION app.account_for_sign_in(p_email text)
    RETURNS TABLE (id uuid, password_hash text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.id, a.password_hash FROM public.accounts a WHERE a.email = lower(btrim(p_email))
$$;

-- A new account (`p_id`: a given user id, for the demo's users); NULL when the address is
-- taken.
CREATE FUNCTION app.create_account(p_id uuid, p_email text, p_name text, p_hash text)
    RETURNS uuid
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.accounts (id, email, display_name, password_hash)
    VALUES (coalesce(p_id, gen_random_uuid()), lower(btrim(p_email)), p_name, p_hash)
    ON CONFLICT DO NOTHING
    RETURNING id
$$;

-- A session for an account, until `p_expires_at`; expired sessions of every account are
-- cleared on the way (a bounded number, by the expiry index).
CREATE FUNCTION app.open_account_session(p_account uuid, p_token_hash bytea, p_expires_at timestamptz)
    RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH expired AS (
        DELETE FROM public.account_sessions s
         WHERE s.token_hash IN (SELECT e.token_hash FROM public.account_sessions e
                                 WHERE e.expires_at <= now() LIMIT 100)
    )
    INSERT INTO public.account_sessions (token_hash, account_id, expires_at)
    VALUES (p_token_hash, p_account, p_expires_at)
$$;

-- The account a live session is of (no row: no such session, or expired).
CREATE FUNCTION app.account_of_session(p_token_hash bytea)
    RETURNS TABLE (id uuid, email text, display_name text, active_org uuid, expires_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.id, a.email, a.display_name, s.active_org, s.expires_at
      FROM public.account_sessions s JOIN public.accounts a ON a.id = s.account_id
     WHERE s.token_hash = p_token_hash AND s.expires_at > now()
$$;

-- The switcher: the clinic a session acts in, if its account is a member of it (whether it
-- was set).
CREATE FUNCTION app.set_session_org(p_token_hash bytea, p_org uuid)
    RETURNS boolean
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH set AS (
        UPDATE public.account_sessions s SET active_org = p_org
         WHERE s.token_hash = p_token_hash AND s.expires_at > now()
           AND EXISTS (SELECT 1 FROM public.organization_members m
                        WHERE m.org_id = p_org AND m.user_id = s.account_id)
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM set)
$$;

CREATE FUNCTION app.close_account_session(p_token_hash bytea)
    RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM public.account_sessions WHERE token_hash = p_token_hash
$$;

-- A reset link for the account of an address: its email when there is one (else NULL, and
-- nothing is stored).
CREATE FUNCTION app.start_password_reset(p_email text, p_token_hash bytea, p_expires_at timestamptz)
    RETURNS text
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH account AS (
        SELECT a.id, a.email FROM public.accounts a WHERE a.email = lower(btrim(p_email))
    ), stored AS (
        INSERT INTO public.password_resets (token_hash, account_id, expires_at)
        SELECT p_token_hash, account.id, p_expires_at FROM account
    )
    SELECT email FROM account
$$;

-- Using a reset link: in one statement the link is taken (used once), the password replaced
-- and every session of the account closed. The account's id, or NULL (unknown or expired).
CREATE FUNCTION app.take_password_reset(p_token_hash bytea, p_hash text)
    RETURNS uuid
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH taken AS (
        DELETE FROM public.password_resets r WHERE r.token_hash = p_token_hash
        RETURNING r.account_id, r.expires_at
    ), changed AS (
        UPDATE public.accounts a SET password_hash = p_hash, password_changed_at = now()
          FROM taken t WHERE a.id = t.account_id AND t.expires_at > now()
        RETURNING a.id
    ), closed AS (
        DELETE FROM public.account_sessions s USING changed c WHERE s.account_id = c.id
    )
    SELECT id FROM changed
$$;

-- What an invitation's link shows before it is used: the clinic's name, the address and role,
-- whether it can still be used. Only with the right secret (no row otherwise).
CREATE FUNCTION app.invitation_for_link(p_org uuid, p_id uuid, p_secret_hash bytea)
    RETURNS TABLE (org_name text, email text, role text, usable boolean)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.name, i.email, i.role,
           i.accepted_at IS NULL AND i.expires_at > now() AND o.status = 'active'
      FROM public.invitations i JOIN public.organizations o ON o.id = i.org_id
     WHERE i.org_id = p_org AND i.id = p_id AND i.secret_hash = p_secret_hash
$$;

-- Taking an invitation: in one statement it is marked used by the account, and the account
-- becomes a member with its role (an existing membership is kept as it is). Only with the
-- right secret, unused, unexpired, for an active clinic, and for the account whose address it
-- was sent to. The role, or NULL.
CREATE FUNCTION app.accept_invitation(p_org uuid, p_id uuid, p_secret_hash bytea, p_account uuid)
    RETURNS text
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH taken AS (
        UPDATE public.invitations i SET accepted_at = now(), accepted_by = p_account
          FROM public.organizations o, public.accounts a
         WHERE i.org_id = p_org AND i.id = p_id AND i.secret_hash = p_secret_hash
           AND i.accepted_at IS NULL AND i.expires_at > now()
           AND o.id = i.org_id AND o.status = 'active'
           AND a.id = p_account AND a.email = i.email
        RETURNING i.org_id, i.role
    ), joined AS (
        INSERT INTO public.organization_members (org_id, user_id, role)
        SELECT t.org_id, p_account, t.role FROM taken t
        ON CONFLICT (org_id, user_id) DO NOTHING
    )
    SELECT role FROM taken
$$;

-- Taking an invitation with a new account: in one statement the account is made with the
-- invited address (`p_name`, `p_hash`), the invitation marked used by it, and the account
-- made a member with its role. Only with the right secret, unused, unexpired, for an active
-- clinic, and when the address has no account yet. (account, role), or no row.
CREATE FUNCTION app.accept_invitation_as_new_account(p_org uuid, p_id uuid, p_secret_hash bytea,
                                                     p_name text, p_hash text)
    RETURNS TABLE (account_id uuid, role text)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH invitation AS (
        SELECT i.org_id, i.id, i.email, i.role
          FROM public.invitations i JOIN public.organizations o ON o.id = i.org_id
         WHERE i.org_id = p_org AND i.id = p_id AND i.secret_hash = p_secret_hash
           AND i.accepted_at IS NULL AND i.expires_at > now() AND o.status = 'active'
           FOR UPDATE OF i
    ), account AS (
        INSERT INTO public.accounts (email, display_name, password_hash)
        SELECT email, p_name, p_hash FROM invitation
        ON CONFLICT DO NOTHING
        RETURNING id
    ), taken AS (
        UPDATE public.invitations i SET accepted_at = now(), accepted_by = a.id
          FROM account a, invitation v
         WHERE i.org_id = v.org_id AND i.id = v.id
        RETURNING i.org_id, i.role, a.id AS account_id
    ), joined AS (
        INSERT INTO public.organization_members (org_id, user_id, role)
        SELECT t.org_id, t.account_id, t.role FROM taken t
    )
    SELECT account_id, role FROM taken
$$;

-- The built-in accounts of the current clinic's members (their address and name, for the
-- member list): only within a tenant transaction, only that clinic's members.
CREATE FUNCTION app.member_accounts()
    RETURNS TABLE (user_id uuid, email text, display_name text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.id, a.email, a.display_name
      FROM public.organization_members m JOIN public.accounts a ON a.id = m.user_id
     WHERE m.org_id = app.current_org_id()
$$;

DO $$
DECLARE f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'app.account_for_sign_in(text)',
        'app.create_account(uuid, text, text, text)',
        'app.open_account_session(uuid, bytea, timestamptz)',
        'app.account_of_session(bytea)',
        'app.close_account_session(bytea)',
        'app.set_session_org(bytea, uuid)',
        'app.start_password_reset(text, bytea, timestamptz)',
        'app.take_password_reset(bytea, text)',
        'app.invitation_for_link(uuid, uuid, bytea)',
        'app.accept_invitation(uuid, uuid, bytea, uuid)',
        'app.accept_invitation_as_new_account(uuid, uuid, bytea, text, text)',
        'app.member_accounts()'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO voxanne_system', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO voxanne_app', f);
    END LOOP;
END
$$;
