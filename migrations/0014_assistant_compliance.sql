-- The assistant Voxanne gives Vapi carries the clinic's HIPAA choice (Vapi's
-- `compliancePlan.hipaaEnabled`: no recordings or transcripts kept at Vapi), and a clinic
-- that has not chosen a voice speaks with one of Vapi's real voices.
ALTER TABLE agent_configurations
    ADD COLUMN hipaa_enabled boolean NOT NULL DEFAULT false,
    ALTER COLUMN voice SET DEFAULT 'vapi:Elliot';
