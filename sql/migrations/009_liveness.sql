-- The backend of each replica's LISTEN connection (the one its heartbeat runs on): while it is
-- there, the replica is alive — a killed process's connection goes with it, a fresh heartbeat
-- does not. A replica starting during a rolling restart tells a live replica from a dead one so.
ALTER TABLE foojob_replicas ADD COLUMN backend_pid INTEGER;
