-- The PostgreSQL store's capacity tables: migration 6 (each instance's latest sample).
--
-- Format: see schema.sql. Released migrations are never edited.

-- migration: 6

-- name: instances_table
-- One row per instance of the deployment; a row past expires_at is a dead instance's, and
-- is deleted by the next publish.
CREATE TABLE {instances} (
            instance_id text PRIMARY KEY,
            data text NOT NULL,
            expires_at float8 NOT NULL
        );
