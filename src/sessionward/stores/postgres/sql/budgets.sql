-- Migration 3 of the PostgreSQL store: budgets, user limits, the ledger, holds, and the
-- PL/pgSQL functions that move money (one call, one round trip, each).
--
-- Every function takes its locks in one order: the session row FOR SHARE (spends only),
-- the user's advisory locks (spends only), the session's budget row FOR UPDATE, then its
-- holds. Nothing else ever writes a budget's ledger lines or holds without holding its budget
-- row, so a decision made under that lock is exact. They are VOLATILE: in READ COMMITTED
-- each statement takes a fresh snapshot, so whatever follows a lock sees every commit of the
-- lock's previous holder. The clock is read after the locks, so a waiter never decides in
-- the past. The refusal of a spend mirrors sessionward.rules.budgets.charge_refusal.
--
-- Format (read by sessionward.stores.postgres.schema.read_sql): a '-- migration: N' line,
-- then statements, each starting at a '-- name: <name>' line followed by its comments, and
-- ending with ';' (not sent). {names} are the schema's qualified tables and functions
-- (schema.table_names), filled in by psycopg.sql. Released migrations are never edited: a
-- change is a new migration. tests/stores/test_postgres_schema_files.py pins the text sent.

-- migration: 3

-- name: budgets_table
-- CHECK: the backstop should the code ever overspend (or a hand edit try to).
CREATE TABLE {budgets} (
        user_id text NOT NULL,
        session_id text NOT NULL,
        budget_limit bigint NOT NULL,
        spent bigint NOT NULL,
        held bigint NOT NULL,
        currency text NOT NULL,
        PRIMARY KEY (user_id, session_id),
        CONSTRAINT sw_budgets_within_limit
            CHECK (spent >= 0 AND held >= 0 AND spent + held <= budget_limit)
    );

-- name: user_budgets_table
-- Only the cap: a user's spent and held are always the sums over their budgets.
CREATE TABLE {user_budgets} (
        user_id text PRIMARY KEY,
        budget_limit bigint NOT NULL CHECK (budget_limit >= 0)
    );

-- name: ledger_table
CREATE TABLE {ledger} (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        entry_id text NOT NULL UNIQUE,
        user_id text NOT NULL,
        session_id text NOT NULL,
        kind text NOT NULL,
        amount bigint NOT NULL,
        idempotency_key text,
        description text NOT NULL,
        created_at float8 NOT NULL,
        refund_of text UNIQUE,
        CONSTRAINT sw_ledger_signed CHECK (
            (kind = 'charge' AND amount > 0 AND refund_of IS NULL)
            OR (kind = 'refund' AND amount < 0 AND refund_of IS NOT NULL))
    );

-- name: sw_ledger_by_key
CREATE UNIQUE INDEX sw_ledger_by_key ON {ledger} (user_id, session_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;

-- name: sw_ledger_by_session
CREATE INDEX sw_ledger_by_session ON {ledger} (user_id, session_id, seq);

-- name: holds_table
CREATE TABLE {holds} (
        hold_id text PRIMARY KEY,
        user_id text NOT NULL,
        session_id text NOT NULL,
        amount bigint NOT NULL CHECK (amount > 0),
        expires_at float8 NOT NULL
    );

-- name: sw_holds_by_session
CREATE INDEX sw_holds_by_session ON {holds} (user_id, session_id, expires_at);

-- name: sw_holds_by_expiry
CREATE INDEX sw_holds_by_expiry ON {holds} (expires_at);

-- name: outcome_type
CREATE TYPE {outcome} AS (
        status text,
        budget_limit bigint, spent bigint, held bigint, currency text,
        user_limit bigint, user_spent bigint, user_held bigint,
        entry_id text, kind text, amount bigint, idempotency_key text, description text,
        created_at float8, refund_of text,
        hold_id text
    );

-- name: result_function
-- The outcome of an operation: the budget as given, the user's cap and totals (the sums,
-- including this transaction's writes) when the user has one, the entry, the hold.
CREATE FUNCTION {result}(_status text, _b {budgets}, _e {ledger}, _hold_id text)
RETURNS {outcome} LANGUAGE sql VOLATILE AS $sw_result$
    SELECT _status, (_b).budget_limit, (_b).spent, (_b).held, (_b).currency,
           u.budget_limit,
           CASE WHEN u.user_id IS NOT NULL THEN COALESCE(t.spent, 0) END,
           CASE WHEN u.user_id IS NOT NULL THEN COALESCE(t.held, 0) END,
           (_e).entry_id, (_e).kind, (_e).amount, (_e).idempotency_key, (_e).description,
           (_e).created_at, (_e).refund_of, _hold_id
    FROM (SELECT (_b).user_id AS user_id) AS o
    LEFT JOIN {user_budgets} AS u ON u.user_id = o.user_id
    LEFT JOIN LATERAL (
        SELECT sum(x.spent)::bigint AS spent, sum(x.held)::bigint AS held
        FROM {budgets} AS x WHERE x.user_id = u.user_id
    ) AS t ON true
$sw_result$;

-- name: expire_function
-- Releases the expired holds of a budget whose row the caller holds locked. held is the
-- sum of the holds, so a budget holding nothing has none to look for.
CREATE FUNCTION {expire}(_b {budgets}, _now float8)
RETURNS {budgets} LANGUAGE plpgsql VOLATILE AS $sw_expire$
DECLARE
    _gone bigint;
BEGIN
    IF _b.held = 0 THEN
        RETURN _b;
    END IF;
    WITH gone AS (
        DELETE FROM {holds} AS h
        WHERE h.user_id = _b.user_id AND h.session_id = _b.session_id AND h.expires_at <= _now
        RETURNING h.amount
    )
    SELECT COALESCE(sum(gone.amount), 0) INTO _gone FROM gone;
    IF _gone > 0 THEN
        UPDATE {budgets} AS b SET held = b.held - _gone
        WHERE b.user_id = _b.user_id AND b.session_id = _b.session_id
        RETURNING b.* INTO _b;
    END IF;
    RETURN _b;
END
$sw_expire$;

-- name: spend_function
-- A charge, or with _hold a reservation. Its refusal ('exceeded', then 'user_exceeded')
-- mirrors sessionward.rules.budgets.charge_refusal; tests/stores/test_postgres_rule_mirrors.py
-- keeps the two in step. The session row FOR SHARE: a revoke waits for this spend, or this
-- spend sees it revoked. Every spend of the user holds _limit_lock shared and
-- set_user_budget holds it exclusively, so the cap cannot change under a spend; when there
-- is a cap, _spend_lock makes the user's spends one at a time, so the sum over the user's
-- budgets is exact. A new budget is created under its own row lock and deleted again if
-- nothing was spent (a refusal stores nothing). The unique key index decides a replay even
-- if the locks above were ever bypassed.
CREATE FUNCTION {spend}(
    _user text, _session text, _amount bigint, _entry_id text, _key text, _description text,
    _default_limit bigint, _currency text, _hold_ttl float8, _hold boolean, _now float8,
    _limit_lock bigint, _spend_lock bigint
) RETURNS {outcome} LANGUAGE plpgsql VOLATILE AS $sw_spend$
DECLARE
    _revoked float8;
    _idle float8;
    _capped boolean;
    _b {budgets};
    _e {ledger};
    _created boolean := false;
    _clock float8;
    _refusal text;
BEGIN
    SELECT s.revoked_at, s.idle_expires_at INTO _revoked, _idle FROM {sessions} AS s
    WHERE s.session_id = _session AND s.user_id = _user FOR SHARE OF s;
    IF NOT FOUND OR _revoked IS NOT NULL THEN
        RETURN {result}('closed', NULL, NULL, NULL);
    END IF;
    PERFORM pg_advisory_xact_lock_shared(_limit_lock);
    _capped := EXISTS (SELECT 1 FROM {user_budgets} AS u WHERE u.user_id = _user);
    IF _capped THEN
        PERFORM pg_advisory_xact_lock(_spend_lock);
    END IF;
    LOOP
        SELECT b.* INTO _b FROM {budgets} AS b
        WHERE b.user_id = _user AND b.session_id = _session FOR UPDATE OF b;
        EXIT WHEN FOUND;
        INSERT INTO {budgets} VALUES (_user, _session, _default_limit, 0, 0, _currency)
        ON CONFLICT DO NOTHING RETURNING * INTO _b;
        _created := FOUND;
        EXIT WHEN _created;
    END LOOP;
    _clock := COALESCE(_now, extract(epoch FROM clock_timestamp())::float8);
    IF _clock >= _idle THEN
        _refusal := 'closed';
    ELSE
        _b := {expire}(_b, _clock);
        IF _key IS NOT NULL THEN
            SELECT l.* INTO _e FROM {ledger} AS l
            WHERE l.user_id = _user AND l.session_id = _session AND l.idempotency_key = _key;
            IF FOUND THEN
                RETURN {result}(CASE WHEN _e.amount = _amount THEN 'replayed' ELSE 'mismatch' END,
                                _b, _e, NULL);
            END IF;
        END IF;
        IF _amount > _b.budget_limit - _b.spent - _b.held THEN
            _refusal := 'exceeded';
        ELSIF _capped AND _amount > (
            SELECT u.budget_limit - sum(x.spent) - sum(x.held)
            FROM {user_budgets} AS u JOIN {budgets} AS x ON x.user_id = u.user_id
            WHERE u.user_id = _user GROUP BY u.budget_limit
        ) THEN
            _refusal := 'user_exceeded';
        END IF;
    END IF;
    IF _refusal IS NOT NULL THEN
        IF _created THEN
            DELETE FROM {budgets} AS b WHERE b.user_id = _user AND b.session_id = _session;
        END IF;
        RETURN {result}(_refusal, CASE WHEN _refusal <> 'closed' THEN _b END, NULL, NULL);
    END IF;
    IF _hold THEN
        INSERT INTO {holds} VALUES (_entry_id, _user, _session, _amount, _clock + _hold_ttl);
    ELSE
        INSERT INTO {ledger} AS l (entry_id, user_id, session_id, kind, amount,
                                   idempotency_key, description, created_at)
        VALUES (_entry_id, _user, _session, 'charge', _amount, _key, _description, _clock)
        ON CONFLICT (user_id, session_id, idempotency_key) WHERE idempotency_key IS NOT NULL
        DO NOTHING RETURNING l.* INTO _e;
        IF NOT FOUND THEN
            SELECT l.* INTO STRICT _e FROM {ledger} AS l
            WHERE l.user_id = _user AND l.session_id = _session AND l.idempotency_key = _key;
            RETURN {result}(CASE WHEN _e.amount = _amount THEN 'replayed' ELSE 'mismatch' END,
                            _b, _e, NULL);
        END IF;
    END IF;
    UPDATE {budgets} AS b
    SET spent = b.spent + CASE WHEN _hold THEN 0 ELSE _amount END,
        held = b.held + CASE WHEN _hold THEN _amount ELSE 0 END
    WHERE b.user_id = _user AND b.session_id = _session
      AND b.spent + b.held + _amount <= b.budget_limit
    RETURNING b.* INTO _b;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'sw_spend: the budget of % changed under its lock', _session;
    END IF;
    IF _hold THEN
        RETURN {result}('held', _b, NULL, _entry_id);
    END IF;
    RETURN {result}('charged', _b, _e, NULL);
END
$sw_spend$;

-- name: refund_function
-- A refund of a charge, with the expired holds released as everywhere else.
CREATE FUNCTION {refund}(
    _user text, _session text, _charge_id text, _refund_id text, _now float8
) RETURNS {outcome} LANGUAGE plpgsql VOLATILE AS $sw_refund$
DECLARE
    _b {budgets};
    _c {ledger};
    _e {ledger};
    _clock float8;
BEGIN
    SELECT b.* INTO _b FROM {budgets} AS b
    WHERE b.user_id = _user AND b.session_id = _session FOR UPDATE OF b;
    IF FOUND THEN
        SELECT l.* INTO _c FROM {ledger} AS l
        WHERE l.entry_id = _charge_id AND l.user_id = _user AND l.session_id = _session;
    END IF;
    IF _c.entry_id IS NULL THEN
        RETURN {result}('unknown', NULL, NULL, NULL);
    END IF;
    _clock := COALESCE(_now, extract(epoch FROM clock_timestamp())::float8);
    _b := {expire}(_b, _clock);
    IF _c.kind <> 'charge' OR EXISTS (SELECT 1 FROM {ledger} AS l WHERE l.refund_of = _charge_id)
    THEN
        RETURN {result}('already', _b, _c, NULL);
    END IF;
    INSERT INTO {ledger} AS l (entry_id, user_id, session_id, kind, amount, idempotency_key,
                               description, created_at, refund_of)
    VALUES (_refund_id, _user, _session, 'refund', -_c.amount, NULL,
            'refund of ' || _charge_id, _clock, _charge_id)
    RETURNING l.* INTO _e;
    UPDATE {budgets} AS b SET spent = b.spent - _c.amount
    WHERE b.user_id = _user AND b.session_id = _session
    RETURNING b.* INTO _b;
    RETURN {result}('refunded', _b, _e, NULL);
END
$sw_refund$;

-- name: settle_function
-- Capture (_actual: what to charge, at most the hold) or, with _actual NULL, release.
CREATE FUNCTION {settle}(
    _user text, _session text, _hold_id text, _actual bigint, _entry_id text,
    _description text, _now float8
) RETURNS {outcome} LANGUAGE plpgsql VOLATILE AS $sw_settle$
DECLARE
    _b {budgets};
    _e {ledger};
    _held bigint;
    _clock float8;
BEGIN
    SELECT b.* INTO _b FROM {budgets} AS b
    WHERE b.user_id = _user AND b.session_id = _session FOR UPDATE OF b;
    IF NOT FOUND THEN
        RETURN {result}('unknown', NULL, NULL, NULL);
    END IF;
    _clock := COALESCE(_now, extract(epoch FROM clock_timestamp())::float8);
    _b := {expire}(_b, _clock);
    SELECT h.amount INTO _held FROM {holds} AS h
    WHERE h.hold_id = _hold_id AND h.user_id = _user AND h.session_id = _session;
    IF NOT FOUND THEN
        RETURN {result}('unknown', NULL, NULL, NULL);
    END IF;
    IF _actual > _held THEN
        RETURN {result}('too_much', _b, NULL, _hold_id);
    END IF;
    DELETE FROM {holds} AS h WHERE h.hold_id = _hold_id;
    IF _actual > 0 THEN
        INSERT INTO {ledger} AS l (entry_id, user_id, session_id, kind, amount,
                                   idempotency_key, description, created_at)
        VALUES (_entry_id, _user, _session, 'charge', _actual, NULL, _description, _clock)
        RETURNING l.* INTO _e;
    END IF;
    UPDATE {budgets} AS b SET spent = b.spent + COALESCE(_actual, 0), held = b.held - _held
    WHERE b.user_id = _user AND b.session_id = _session
    RETURNING b.* INTO _b;
    RETURN {result}(CASE WHEN _actual IS NULL THEN 'released' ELSE 'captured' END,
                    _b, _e, _hold_id);
END
$sw_settle$;

-- name: budget_function
-- get_budget (_set false: the stored budget, or the default unstored) and set_budget (no
-- row when the limit is below spent + held). A budget holding nothing is read unlocked.
CREATE FUNCTION {budget}(
    _user text, _session text, _limit bigint, _currency text, _set boolean, _now float8
) RETURNS SETOF {budgets} LANGUAGE plpgsql VOLATILE AS $sw_budget$
DECLARE
    _b {budgets};
BEGIN
    IF NOT _set THEN
        SELECT b.* INTO _b FROM {budgets} AS b
        WHERE b.user_id = _user AND b.session_id = _session;
        IF NOT FOUND THEN
            RETURN NEXT ROW(_user, _session, _limit, 0, 0, _currency)::{budgets};
            RETURN;
        ELSIF _b.held = 0 THEN
            RETURN NEXT _b;
            RETURN;
        END IF;
    END IF;
    LOOP
        SELECT b.* INTO _b FROM {budgets} AS b
        WHERE b.user_id = _user AND b.session_id = _session FOR UPDATE OF b;
        EXIT WHEN FOUND;
        IF NOT _set THEN
            RETURN NEXT ROW(_user, _session, _limit, 0, 0, _currency)::{budgets};
            RETURN;
        END IF;
        INSERT INTO {budgets} VALUES (_user, _session, _limit, 0, 0, _currency)
        ON CONFLICT DO NOTHING RETURNING * INTO _b;
        IF FOUND THEN
            RETURN NEXT _b;
            RETURN;
        END IF;
    END LOOP;
    _b := {expire}(_b, COALESCE(_now, extract(epoch FROM clock_timestamp())::float8));
    IF _set THEN
        IF _limit < _b.spent + _b.held THEN
            RETURN;
        END IF;
        UPDATE {budgets} AS b SET budget_limit = _limit, currency = _currency
        WHERE b.user_id = _user AND b.session_id = _session
        RETURNING b.* INTO _b;
    END IF;
    RETURN NEXT _b;
END
$sw_budget$;

-- name: user_limit_function
-- set_user_budget: the limit lock held exclusively, so no spend of the user is in progress
-- and the sums are exact; no row when the limit is below them (or when removing the cap).
CREATE FUNCTION {user_limit}(_user text, _limit bigint, _limit_lock bigint)
RETURNS TABLE (r_limit bigint, r_spent bigint, r_held bigint)
LANGUAGE plpgsql VOLATILE AS $sw_user_limit$
BEGIN
    PERFORM pg_advisory_xact_lock(_limit_lock);
    IF _limit IS NULL THEN
        DELETE FROM {user_budgets} AS u WHERE u.user_id = _user;
        RETURN;
    END IF;
    SELECT COALESCE(sum(b.spent), 0), COALESCE(sum(b.held), 0) INTO r_spent, r_held
    FROM {budgets} AS b WHERE b.user_id = _user;
    IF _limit < r_spent + r_held THEN
        RETURN;
    END IF;
    INSERT INTO {user_budgets} AS u VALUES (_user, _limit)
    ON CONFLICT ON CONSTRAINT sw_user_budgets_pkey DO UPDATE SET budget_limit = _limit;
    r_limit := _limit;
    RETURN NEXT;
END
$sw_user_limit$;
