-- The PostgreSQL store's tables: migration 1 (sessions and state) and migration 2 (rotation
-- history, users, GCRA limits and their decision function sw_gcra).
--
-- Format (read by sessionward.stores.postgres.schema.read_sql): a '-- migration: N' line,
-- then statements, each starting at a '-- name: <name>' line followed by its comments, and
-- ending with ';' (not sent). {names} are the schema's qualified tables and functions
-- (schema.table_names), filled in by psycopg.sql. Released migrations are never edited: a
-- change is a new migration. tests/stores/test_postgres_schema_files.py pins the text sent.

-- migration: 1

-- name: sessions_table
CREATE TABLE {sessions} (
            session_id text PRIMARY KEY,
            user_id text NOT NULL,
            token_hash text NOT NULL UNIQUE,
            created_at float8 NOT NULL,
            last_seen_at float8 NOT NULL,
            idle_timeout float8 NOT NULL,
            idle_expires_at float8 NOT NULL,
            expires_at float8 NOT NULL,
            revoked_at float8,
            ip text,
            user_agent text,
            metadata text NOT NULL,
            generation integer NOT NULL,
            seq bigint GENERATED ALWAYS AS IDENTITY
        );

-- name: sw_sessions_by_user
-- seq breaks created_at ties in creation order, as the memory store does.
CREATE INDEX sw_sessions_by_user ON {sessions} (user_id, created_at, seq);

-- name: sw_sessions_by_expiry
CREATE INDEX sw_sessions_by_expiry ON {sessions} (idle_expires_at);

-- name: state_table
CREATE TABLE {state} (
            kind text NOT NULL CHECK (kind IN ('user', 'session')),
            user_id text NOT NULL,
            owner_id text NOT NULL,
            name text NOT NULL,
            data text NOT NULL,
            version bigint NOT NULL,
            PRIMARY KEY (kind, user_id, owner_id, name)
        );

-- migration: 2

-- name: sessions_rotation_columns
-- Nullable and without defaults: instant on a large table, and old rows read as
-- "never rotated".
ALTER TABLE {sessions} ADD COLUMN prev_token_hash text, ADD COLUMN rotated_at float8;

-- name: spent_table
-- Every hash a session has carried, until a sweep deletes the session.
CREATE TABLE {spent} (
            token_hash text PRIMARY KEY,
            session_id text NOT NULL,
            user_id text NOT NULL
        );

-- name: sw_spent_tokens_by_session
CREATE INDEX sw_spent_tokens_by_session ON {spent} (session_id);

-- name: users_table
-- "C": comparisons and order by code point, as Python's sorted() (list_users pages).
CREATE TABLE {users} (
            user_id text PRIMARY KEY,
            username text NOT NULL,
            username_key text COLLATE "C" NOT NULL UNIQUE,
            password_hash text NOT NULL,
            roles text NOT NULL,
            disabled boolean NOT NULL,
            created_at float8 NOT NULL,
            updated_at float8 NOT NULL
        );

-- name: limits_table
CREATE TABLE {limits} (
            key text COLLATE "C" PRIMARY KEY,
            tat float8 NOT NULL
        );

-- name: sw_limits_by_tat
CREATE INDEX sw_limits_by_tat ON {limits} (tat);

-- name: gcra_function
-- One GCRA decision over many keys, atomic and in one round trip.
-- Mirrors sessionward.rules.limits.gcra_candidate (the candidate and the allowed test, per
-- check); tests/stores/test_postgres_rule_mirrors.py keeps the two in step.
-- With _apply it takes every key's row lock in sorted ("C") key order, each one fully
-- (locked, or inserted by this transaction) before the next, so concurrent calls never
-- deadlock; a key without a row gets a placeholder (TAT -infinity: "absent"), deleted again
-- unless the decision is applied. The clock is read after the locks, so a caller that
-- waited never decides in the past. Without _apply (a peek) it only reads, in one snapshot.
-- With duplicate keys each check is decided against the stored TAT and the last one's
-- candidate is stored, as the memory store does.
CREATE FUNCTION {gcra}(
    _keys text[], _periods float8[], _capacities float8[], _costs float8[],
    _apply boolean, _now float8
) RETURNS TABLE (allowed boolean[], tats float8[], now float8)
LANGUAGE plpgsql VOLATILE AS $sw_gcra$
DECLARE
    _key text;
    _clock float8;
    _all boolean;
    _inserted text[] := ARRAY[]::text[];
BEGIN
    IF cardinality(_keys) IS DISTINCT FROM cardinality(_periods)
        OR cardinality(_keys) IS DISTINCT FROM cardinality(_capacities)
        OR cardinality(_keys) IS DISTINCT FROM cardinality(_costs) THEN
        RAISE EXCEPTION 'sw_gcra: the four arrays must have one element per check';
    END IF;
    IF _apply THEN
        FOR _key IN SELECT DISTINCT u.k COLLATE "C" FROM unnest(_keys) AS u(k) ORDER BY 1 LOOP
            LOOP
                PERFORM 1 FROM {limits} AS l WHERE l.key = _key FOR UPDATE;
                EXIT WHEN FOUND;
                -- Waits for a rival that is inserting the same key, then finds its row.
                INSERT INTO {limits} (key, tat) VALUES (_key, '-infinity') ON CONFLICT DO NOTHING;
                IF FOUND THEN
                    _inserted := _inserted || _key;
                    EXIT;
                END IF;
            END LOOP;
        END LOOP;
    END IF;
    _clock := COALESCE(_now, extract(epoch FROM clock_timestamp())::float8);
    SELECT COALESCE(array_agg(d.ok ORDER BY d.i), ARRAY[]::boolean[]),
           COALESCE(array_agg(d.candidate ORDER BY d.i), ARRAY[]::float8[]),
           COALESCE(bool_and(d.ok), true)
    INTO allowed, tats, _all
    FROM (
        SELECT c.i, c.cost < 0 OR x.candidate - _clock <= c.capacity AS ok, x.candidate
        FROM unnest(_keys, _periods, _capacities, _costs)
            WITH ORDINALITY AS c(k, period, capacity, cost, i)
        LEFT JOIN {limits} AS l ON l.key = c.k
        CROSS JOIN LATERAL (
            SELECT GREATEST(GREATEST(l.tat, _clock) + c.cost * c.period, _clock) AS candidate
        ) AS x
    ) AS d;
    IF _apply AND _all THEN
        UPDATE {limits} AS l SET tat = latest.candidate
        FROM (
            SELECT DISTINCT ON (u.k) u.k, u.candidate
            FROM unnest(_keys, tats) WITH ORDINALITY AS u(k, candidate, i)
            ORDER BY u.k, u.i DESC
        ) AS latest
        WHERE l.key = latest.k;
    ELSIF cardinality(_inserted) > 0 THEN
        DELETE FROM {limits} AS l WHERE l.key = ANY(_inserted);
    END IF;
    now := _clock;
    RETURN NEXT;
END
$sw_gcra$;
