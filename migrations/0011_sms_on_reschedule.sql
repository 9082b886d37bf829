-- A moved appointment is confirmed again, at its new time: an appointment may now have several
-- confirmations, each naming the start it confirms. A queued confirmation of a start that is
-- no longer the appointment's is superseded (suppressed) rather than sent.

DROP INDEX sms_confirmation_logs_org_appointment_key;
-- The appointment's start that the message confirms; NULL on rows written before this column.
ALTER TABLE sms_confirmation_logs ADD COLUMN appointment_starts_at timestamptz;
