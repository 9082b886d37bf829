-- Patients' messages: reminders before an appointment, what patients text back, and the
-- record of who agreed (or stopped agreeing) to be contacted.
--
-- Reminders are rows of the confirmations' queue (`sms_confirmation_logs`, kind 'reminder'),
-- queued with the booking for the time a clinic's reminder rules say, counted on the clinic's
-- clock and moved out of its quiet hours; a move or a cancellation supersedes them exactly as
-- it does a confirmation. Inbound texts land in `inbox_messages`, one row per provider
-- message id (a retried webhook changes nothing); the carrier keywords change
-- `consent_records` and the do-not-call list.

-- ---------------------------------------------------------------------------------------
-- A clinic's messaging settings: quiet hours (no reminder goes out between `quiet_start` and
-- `quiet_end`, the clinic's local time; equal times: no quiet hours) and the HELP answer.
CREATE TABLE messaging_settings (
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    quiet_start  time NOT NULL DEFAULT '21:00',
    quiet_end    time NOT NULL DEFAULT '08:00',
    -- NULL: the default ("{clinic}: reply C to confirm ... Call {number}.").
    help_text    text CHECK (length(btrim(help_text)) BETWEEN 1 AND 320),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id)
);
CALL app.secure_tenant_table('messaging_settings');

-- One reminder `minutes_before` an appointment (on the clinic's clock: "1440" is the same
-- time the day before, across a DST change too), for every appointment or only those of one
-- service; `template` NULL: the default text.
CREATE TABLE reminder_rules (
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    minutes_before  integer NOT NULL CHECK (minutes_before BETWEEN 15 AND 43200),
    service_id      uuid,
    template        text CHECK (length(btrim(template)) BETWEEN 1 AND 480),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, service_id) REFERENCES services (org_id, id) ON DELETE CASCADE
);
CREATE INDEX reminder_rules_org_service_idx ON reminder_rules (org_id, service_id);
CALL app.secure_tenant_table('reminder_rules');

-- ---------------------------------------------------------------------------------------
-- The queue carries reminders beside confirmations. `scheduled_for` is when a reminder is
-- due (its first `next_attempt_at`, kept after it went).
ALTER TABLE sms_confirmation_logs
    ADD COLUMN kind text NOT NULL DEFAULT 'confirmation' CHECK (kind IN ('confirmation', 'reminder')),
    ADD COLUMN scheduled_for timestamptz;
-- The replies' probe: a patient's latest message of this clinic.
CREATE INDEX sms_confirmation_logs_org_to_idx ON sms_confirmation_logs (org_id, to_number, created_at DESC);

-- A patient answered "C" to a confirmation or a reminder.
ALTER TABLE appointments ADD COLUMN confirmed_at timestamptz;

-- ---------------------------------------------------------------------------------------
-- Where a do-not-call entry came from: the clinic's staff, the patient's STOP, or the carrier
-- (Twilio's 21610). START takes back only the patient's own and the carrier's.
ALTER TABLE dnc_list ADD COLUMN source text NOT NULL DEFAULT 'staff'
    CHECK (source IN ('staff', 'sms_opt_out', 'carrier_opt_out'));

-- Every change of a number's consent, append-only: the latest row per (number, channel) is
-- the consent in force. `channel` 'sms' (texts) or 'calls' (outbound calls, campaigns).
CREATE TABLE consent_records (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    phone       text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    channel     text NOT NULL CHECK (channel IN ('sms', 'calls')),
    granted     boolean NOT NULL,
    -- How it was given or taken back: 'sms_keyword', 'carrier', 'staff', 'lead_import', ...
    source      text NOT NULL CHECK (length(source) BETWEEN 1 AND 100),
    -- The keyword, the import's consent text, the staff member's note.
    detail      text CHECK (length(detail) <= 500),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (org_id, id)
);
CREATE INDEX consent_records_org_phone_idx ON consent_records (org_id, phone, channel, created_at DESC, id DESC);
CREATE INDEX consent_records_org_created_idx ON consent_records (org_id, created_at DESC, id DESC);
CALL app.secure_tenant_table('consent_records');

-- ---------------------------------------------------------------------------------------
-- The clinic's inbox: what patients texted (and, from the agent, messages and callback
-- requests callers left). `kind` says what Voxanne made of it; `status` 'open' until staff
-- mark it done (keywords and confirmations arrive done).
CREATE TABLE inbox_messages (
    org_id               uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id                   uuid NOT NULL DEFAULT gen_random_uuid(),
    channel              text NOT NULL CHECK (channel IN ('sms', 'call')),
    kind                 text NOT NULL CHECK (kind IN ('message', 'confirmed', 'reschedule_request',
                             'callback_request', 'opted_out', 'opted_in', 'help')),
    status               text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done')),
    from_number          text NOT NULL CHECK (length(from_number) BETWEEN 1 AND 32),
    -- The clinic's number it reached.
    to_number            text CHECK (length(to_number) <= 32),
    body                 text NOT NULL CHECK (length(body) <= 2000),
    caller_name          text CHECK (length(caller_name) <= 200),
    -- What Voxanne texted back, if anything (a retried webhook gets the same answer).
    reply                text CHECK (length(reply) <= 480),
    -- Twilio's MessageSid of an inbound text: one row per message, whatever the retries.
    provider_message_id  text CHECK (length(provider_message_id) <= 64),
    contact_id           uuid,
    appointment_id       uuid,
    -- The confirmation or reminder it answers.
    reply_to_sms_id      uuid,
    call_id              uuid,
    handled_at           timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id) ON DELETE SET NULL (contact_id),
    FOREIGN KEY (org_id, appointment_id) REFERENCES appointments (org_id, id) ON DELETE SET NULL (appointment_id),
    FOREIGN KEY (org_id, reply_to_sms_id) REFERENCES sms_confirmation_logs (org_id, id) ON DELETE SET NULL (reply_to_sms_id),
    FOREIGN KEY (org_id, call_id) REFERENCES calls (org_id, id) ON DELETE SET NULL (call_id)
);
CREATE UNIQUE INDEX inbox_messages_org_provider_message_key ON inbox_messages (org_id, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX inbox_messages_org_created_idx ON inbox_messages (org_id, created_at DESC, id DESC);
CREATE INDEX inbox_messages_org_open_idx ON inbox_messages (org_id, created_at DESC, id DESC) WHERE status = 'open';
CREATE INDEX inbox_messages_org_contact_idx ON inbox_messages (org_id, contact_id);
CREATE INDEX inbox_messages_org_appointment_idx ON inbox_messages (org_id, appointment_id);
CREATE INDEX inbox_messages_org_sms_idx ON inbox_messages (org_id, reply_to_sms_id);
CREATE INDEX inbox_messages_org_call_idx ON inbox_messages (org_id, call_id);
CALL app.secure_tenant_table('inbox_messages');
