-- The access log's index of patients covers sealed records only.
--
-- Every read of patient data writes a record through the access writer (a page of 25 calls
-- names up to 25 contacts), so the record's INSERT is on the path of every read, and the
-- GIN index of `patients` was most of its cost: 20,000 records of 25 patients took 1.9 s to
-- insert with it and 0.56 s without it (bench/: scenario 10 measures the writer's cost). The
-- sealer then rewrites each record (seq and the chain's hashes), which entered its patients
-- into the index a second time.
--
-- Indexed only once sealed, a record's patients enter the index once, written by the sealer
-- in the background, never by a request. The few records not yet sealed (the sealer follows
-- the writers within seconds) are found through `access_log_unsealed_idx`: queries by patient
-- ask for the two parts apart (access.rs, erase.rs), so that the planner can use both.

DROP INDEX access_log_patients_idx;
CREATE INDEX access_log_patients_idx ON access_log USING gin (patients) WHERE seq IS NOT NULL;
