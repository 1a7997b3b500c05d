-- Coxswain storage schema v3 (PostgreSQL): a batch may be written while the one before it commits,
-- and the live-key index is on one column.
--
-- `coxswain_write` gains `p_keys`, `p_lock_class` and `p_behind`. Every batch first takes the
-- transaction-scoped advisory lock (`p_lock_class`, its last revision), held until it commits or
-- rolls back; the class is chosen at random by each process, so only that process's batches ever
-- wait for it. A batch written with `p_behind` (planned by the same process on a batch that is
-- still being written, and made only of creates) inserts its rows first, while that batch commits,
-- and only then waits for it (the lock named after its own base revision) and takes the shard
-- lock; if the shard is then past its base (or, for 20 ms, short of it) it raises SQLSTATE CXB01,
-- so that nothing of it is committed. Any other batch takes the shard lock first, as in v2, and
-- returns false when the shard moved on.
--
-- `kv_live` was a unique index on (cluster, resource, namespace, name): every comparison inside it
-- walked four text columns, the first two nearly always equal, and its upkeep was about a fifth of
-- the time a batch of creates took. `key` holds the same four parts as bytes, each followed by a
-- zero byte (text cannot contain one), so that comparing keys bytewise orders them exactly as the
-- four columns did; the columns stay for history reads, compaction and watches by scope.
ALTER TABLE kv ADD COLUMN key bytea;
UPDATE kv SET key = convert_to(cluster, 'UTF8') || '\x00'::bytea || convert_to(resource, 'UTF8') || '\x00'::bytea
    || convert_to(namespace, 'UTF8') || '\x00'::bytea || convert_to(name, 'UTF8') || '\x00'::bytea;
ALTER TABLE kv ALTER COLUMN key SET NOT NULL;
DROP INDEX kv_live;
CREATE UNIQUE INDEX kv_live ON kv (key) WHERE superseded IS NULL;

DROP FUNCTION coxswain_write(int8[], text[], text[], text[], text[], bytea[], text[], text[], int8[], int8[],
    bool[], int8[], int8[], int8[], int8, int8, int8, text, text);

CREATE FUNCTION coxswain_write(
    p_revisions int8[], p_clusters text[], p_resources text[], p_namespaces text[], p_names text[],
    p_keys bytea[], p_vals bytea[], p_label_texts text[], p_uids text[], p_create_revisions int8[], p_prev_revisions int8[],
    p_deleted_flags bool[], p_superseded_by int8[],
    p_supersede_rows int8[], p_supersede_with int8[],
    p_base int8, p_last int8, p_committed_ms int8, p_channel text, p_writer text, p_lock_class int4, p_behind bool
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_current int8;
    v_waits int := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock_class, (p_last % 2147483647)::int4);
    IF NOT p_behind THEN
        UPDATE meta SET revision = p_last WHERE id = 1 AND revision = p_base;
        IF NOT FOUND THEN
            RETURN false;
        END IF;
        -- The replaced versions leave `kv_live` before the new ones go in, so that an update never
        -- collides with its own old version.
        IF cardinality(p_supersede_rows) > 0 THEN
            UPDATE kv SET superseded = u.s FROM unnest(p_supersede_rows, p_supersede_with) AS u(r, s)
            WHERE kv.revision = u.r;
        END IF;
    ELSIF cardinality(p_supersede_rows) > 0 THEN
        RAISE EXCEPTION 'a batch that replaces versions cannot be written behind another' USING ERRCODE = 'CXB02';
    END IF;
    -- One statement for the batch's rows and its record: each statement of a function costs about
    -- as much as inserting five to ten rows.
    WITH recorded AS (INSERT INTO batches (last_revision, committed_at_ms) VALUES (p_last, p_committed_ms))
    INSERT INTO kv (revision, cluster, resource, namespace, name, key, value, labels, uid, create_revision,
                    prev_revision, deleted, superseded)
    SELECT t.r, t.c, t.res, t.ns, t.n, t.k, t.v, t.l::jsonb, t.u, t.cr, t.pr, t.d, t.s
    FROM unnest(p_revisions, p_clusters, p_resources, p_namespaces, p_names, p_keys, p_vals, p_label_texts,
                p_uids, p_create_revisions, p_prev_revisions, p_deleted_flags, p_superseded_by)
         AS t(r, c, res, ns, n, k, v, l, u, cr, pr, d, s);
    IF p_behind THEN
        LOOP
            -- Waits for the batch before this one if it has started (the lock is let go at once,
            -- so that one that has not started yet can still take it).
            PERFORM set_config('lock_timeout', '0', true);
            PERFORM pg_advisory_lock_shared(p_lock_class, (p_base % 2147483647)::int4);
            PERFORM pg_advisory_unlock_shared(p_lock_class, (p_base % 2147483647)::int4);
            -- Another process's batch that took the shard lock first and planned on the same base
            -- would collide with these rows and wait for them while this batch waits for its lock:
            -- give up soon (SQLSTATE 55P03) rather than after the server's deadlock timeout.
            PERFORM set_config('lock_timeout', '100ms', true);
            UPDATE meta SET revision = p_last WHERE id = 1 AND revision = p_base;
            EXIT WHEN FOUND;
            SELECT revision INTO v_current FROM meta WHERE id = 1;
            IF v_current > p_base OR v_waits >= 20 THEN
                RAISE EXCEPTION 'the shard is at revision %, not %', v_current, p_base USING ERRCODE = 'CXB01';
            END IF;
            -- The batch before has not started yet (or failed): give it a moment.
            PERFORM pg_sleep(0.001);
            v_waits := v_waits + 1;
        END LOOP;
    END IF;
    PERFORM pg_notify(p_channel, p_last::text || ' ' || p_writer);
    RETURN true;
END
$$;
