-- Recordings encrypted per object (crates/db/src/envelope.rs): each stored object carries its own
-- data key, encrypted by the keyring. The call row says which of the keyring's keys that is, so
-- the encryption job finds the objects stored before recordings were encrypted (NULL) and, after
-- a key rotation, those under an older key, without reading the store.
ALTER TABLE calls ADD COLUMN recording_key_id text;

-- Clinics whose patient text the encryption job had finished go through its recordings phase:
-- the pass resumes at phase 9, the one after the nine text columns (crates/db/src/encrypted.rs,
-- RECORDINGS), with the key it had finished with, so the claim keeps that place. Every clinic at
-- once: as voxanne_system (BYPASSRLS), for this statement only.
SET ROLE voxanne_system;
UPDATE organizations
   SET encrypt_key = encrypted_with, encrypt_field = 9, encrypt_after = NULL, encrypted_with = NULL
 WHERE encrypted_with IS NOT NULL;
RESET ROLE;
SET ROLE voxanne_owner;
