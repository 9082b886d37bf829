-- The clinic's data. Rules for every tenant table (shared/design/TENANCY.md section 3):
--   org_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE;
--   PRIMARY KEY (org_id, id), so references to it can (and must) include org_id;
--   references to other tenant tables are composite foreign keys (org_id, x_id);
--   an index leading with org_id for every list query and every foreign key;
--   app.secure_tenant_table(...): RLS enabled + forced, one policy, app-role grants.
-- tests/schema.rs walks the catalog and fails if a table breaks one of these.

CREATE TABLE organizations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CALL app.secure_tenant_table('organizations', 'id');

CREATE TABLE organization_members (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL,
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'staff')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);
-- "Which orgs does this user belong to" (app.my_memberships) looks up by user.
CREATE INDEX organization_members_user_idx ON organization_members (user_id);
CALL app.secure_tenant_table('organization_members');

CREATE TABLE contacts (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    phone       text CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    email       text,
    notes       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    CONSTRAINT contacts_org_phone_key UNIQUE (org_id, phone)
);
CREATE INDEX contacts_org_name_idx ON contacts (org_id, lower(name), id);
CALL app.secure_tenant_table('contacts');

CREATE TABLE calls (
    org_id            uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id                uuid NOT NULL DEFAULT gen_random_uuid(),
    contact_id        uuid,
    direction         text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    status            text NOT NULL CHECK (status IN
                        ('queued', 'ringing', 'in_progress', 'completed', 'missed', 'failed', 'voicemail')),
    from_number       text NOT NULL,
    to_number         text NOT NULL,
    started_at        timestamptz NOT NULL,
    ended_at          timestamptz,
    duration_seconds  integer CHECK (duration_seconds >= 0),
    recording_status  text NOT NULL DEFAULT 'none' CHECK (recording_status IN
                        ('none', 'queued', 'processing', 'stored', 'failed')),
    recording_url     text,
    recording_path    text,
    transcript        text,
    summary           text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    CHECK (ended_at IS NULL OR ended_at >= started_at),
    FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id) ON DELETE SET NULL (contact_id)
);
-- The calls list: newest first, keyset on (started_at, id).
CREATE INDEX calls_org_started_idx ON calls (org_id, started_at DESC, id DESC);
CREATE INDEX calls_org_contact_idx ON calls (org_id, contact_id);
CREATE INDEX calls_org_recording_idx ON calls (org_id, recording_status) WHERE recording_status IN ('queued', 'processing');
CALL app.secure_tenant_table('calls');

CREATE TABLE appointments (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    contact_id  uuid,
    call_id     uuid,
    resource    text NOT NULL DEFAULT 'default',
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    status      text NOT NULL DEFAULT 'booked' CHECK (status IN ('booked', 'cancelled', 'completed', 'no_show')),
    notes       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    CHECK (ends_at > starts_at),
    FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id) ON DELETE SET NULL (contact_id),
    FOREIGN KEY (org_id, call_id) REFERENCES calls (org_id, id) ON DELETE SET NULL (call_id)
);
CREATE INDEX appointments_org_starts_idx ON appointments (org_id, starts_at, id);
CREATE INDEX appointments_org_contact_idx ON appointments (org_id, contact_id);
CREATE INDEX appointments_org_call_idx ON appointments (org_id, call_id);
CALL app.secure_tenant_table('appointments');

CREATE TABLE appointment_holds (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    contact_id  uuid,
    call_id     uuid,
    resource    text NOT NULL DEFAULT 'default',
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    CHECK (ends_at > starts_at),
    FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, call_id) REFERENCES calls (org_id, id) ON DELETE CASCADE
);
CREATE INDEX appointment_holds_org_starts_idx ON appointment_holds (org_id, starts_at);
CREATE INDEX appointment_holds_org_contact_idx ON appointment_holds (org_id, contact_id);
CREATE INDEX appointment_holds_org_call_idx ON appointment_holds (org_id, call_id);
CALL app.secure_tenant_table('appointment_holds');

CREATE TABLE calendar_connections (
    org_id             uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id                 uuid NOT NULL DEFAULT gen_random_uuid(),
    provider           text NOT NULL CHECK (provider IN ('google', 'microsoft')),
    account_email      text NOT NULL,
    access_token_enc   bytea,
    refresh_token_enc  bytea,
    key_id             text,
    token_expires_at   timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, provider, account_email)
);
CALL app.secure_tenant_table('calendar_connections');

CREATE TABLE integration_settings (
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    provider     text NOT NULL CHECK (provider IN ('twilio', 'vonage', 'vapi', 'retell')),
    config       jsonb NOT NULL DEFAULT '{}',
    secrets_enc  bytea,
    key_id       text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, provider)
);
CALL app.secure_tenant_table('integration_settings');

CREATE TABLE agent_configurations (
    org_id           uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    greeting         text NOT NULL DEFAULT '',
    voice            text NOT NULL DEFAULT 'default',
    opening_hours    jsonb NOT NULL DEFAULT '{}',
    time_zone        text NOT NULL DEFAULT 'UTC',
    transfer_number  text CHECK (transfer_number ~ '^\+[1-9][0-9]{6,14}$'),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id)
);
CALL app.secure_tenant_table('agent_configurations');

CREATE TABLE campaigns (
    org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status        text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active', 'paused', 'completed')),
    message       text NOT NULL DEFAULT '',
    scheduled_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);
CREATE INDEX campaigns_org_created_idx ON campaigns (org_id, created_at DESC, id DESC);
CALL app.secure_tenant_table('campaigns');

CREATE TABLE sms_confirmation_logs (
    org_id               uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id                   uuid NOT NULL DEFAULT gen_random_uuid(),
    appointment_id       uuid,
    to_number            text NOT NULL,
    body                 text NOT NULL,
    provider_message_id  text,
    status               text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'delivered', 'failed')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, appointment_id) REFERENCES appointments (org_id, id) ON DELETE SET NULL (appointment_id)
);
CREATE INDEX sms_confirmation_logs_org_created_idx ON sms_confirmation_logs (org_id, created_at DESC, id DESC);
CREATE INDEX sms_confirmation_logs_org_appointment_idx ON sms_confirmation_logs (org_id, appointment_id);
CALL app.secure_tenant_table('sms_confirmation_logs');

CREATE TABLE dnc_list (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    phone       text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, phone)
);
CALL app.secure_tenant_table('dnc_list');

CREATE TABLE knowledge_base_documents (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);
CREATE INDEX knowledge_base_documents_org_created_idx ON knowledge_base_documents (org_id, created_at DESC, id DESC);
CALL app.secure_tenant_table('knowledge_base_documents');

CREATE TABLE knowledge_base_chunks (
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    document_id  uuid NOT NULL,
    ordinal      integer NOT NULL CHECK (ordinal >= 0),
    content      text NOT NULL,
    tsv          tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, document_id, ordinal),
    FOREIGN KEY (org_id, document_id) REFERENCES knowledge_base_documents (org_id, id) ON DELETE CASCADE
);
CREATE INDEX knowledge_base_chunks_tsv_idx ON knowledge_base_chunks USING gin (tsv);
CALL app.secure_tenant_table('knowledge_base_chunks');

CREATE TABLE phone_numbers (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    number      text NOT NULL CHECK (number ~ '^\+[1-9][0-9]{6,14}$'),
    label       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    -- A number belongs to at most one org: this key is global on purpose.
    CONSTRAINT phone_numbers_number_key UNIQUE (number)
);
CALL app.secure_tenant_table('phone_numbers');

CREATE TABLE credit_transactions (
    org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    amount_cents  bigint NOT NULL,
    reason        text NOT NULL,
    call_id       uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, call_id) REFERENCES calls (org_id, id) ON DELETE SET NULL (call_id)
);
CREATE INDEX credit_transactions_org_created_idx ON credit_transactions (org_id, created_at DESC, id DESC);
CREATE INDEX credit_transactions_org_call_idx ON credit_transactions (org_id, call_id);
CALL app.secure_tenant_table('credit_transactions');

CREATE TABLE failed_recording_uploads (
    org_id           uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    call_id          uuid NOT NULL,
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error       text,
    next_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, call_id),
    FOREIGN KEY (org_id, call_id) REFERENCES calls (org_id, id) ON DELETE CASCADE
);
CALL app.secure_tenant_table('failed_recording_uploads');

CREATE TABLE security_events (
    org_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id             uuid NOT NULL DEFAULT gen_random_uuid(),
    kind           text NOT NULL,
    actor_user_id  uuid,
    route          text,
    target         text,
    detail         jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);
CREATE INDEX security_events_org_created_idx ON security_events (org_id, created_at DESC, id DESC);
CALL app.secure_tenant_table('security_events');
