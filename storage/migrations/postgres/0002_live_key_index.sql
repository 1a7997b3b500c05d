-- Coxswain storage schema v2 (PostgreSQL): one index row per live object instead of per version.
--
-- `kv_live` holds the key of every live row (a row is live while `superseded` is NULL; tombstones are
-- superseded by themselves), unique: a create whose key is live fails its batch with a unique
-- violation, so writes no longer probe the keys of their creates first. Versions that are no longer
-- live are reached for lists at older revisions through `kv_superseded` (only versions superseded
-- after such a revision matter, and the compaction window bounds them).
--
-- `coxswain_write` writes one planned batch in one round trip, in a fixed order: take the shard lock
-- (the `meta` row) and check the base, supersede the replaced versions, insert the new ones (after the
-- replaced versions left `kv_live`, so an update never collides with its own old version), record the
-- batch and announce it (its last revision and the writing process, which need not read back what it
-- wrote itself). It returns false, having written nothing, when the shard is no longer at
-- the base.
DROP INDEX kv_key;
CREATE UNIQUE INDEX kv_live ON kv (cluster, resource, namespace, name) WHERE superseded IS NULL;

CREATE FUNCTION coxswain_write(
    p_revisions int8[], p_clusters text[], p_resources text[], p_namespaces text[], p_names text[],
    p_vals bytea[], p_label_texts text[], p_uids text[], p_create_revisions int8[], p_prev_revisions int8[],
    p_deleted_flags bool[], p_superseded_by int8[],
    p_supersede_rows int8[], p_supersede_with int8[],
    p_base int8, p_last int8, p_committed_ms int8, p_channel text, p_writer text
) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE meta SET revision = p_last WHERE id = 1 AND revision = p_base;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF cardinality(p_supersede_rows) > 0 THEN
        UPDATE kv SET superseded = u.s FROM unnest(p_supersede_rows, p_supersede_with) AS u(r, s)
        WHERE kv.revision = u.r;
    END IF;
    -- One statement for the batch's rows and its record: each statement of a function costs about
    -- as much as inserting five to ten rows.
    WITH recorded AS (INSERT INTO batches (last_revision, committed_at_ms) VALUES (p_last, p_committed_ms))
    INSERT INTO kv (revision, cluster, resource, namespace, name, value, labels, uid, create_revision,
                    prev_revision, deleted, superseded)
    SELECT t.r, t.c, t.res, t.ns, t.n, t.v, t.l::jsonb, t.u, t.cr, t.pr, t.d, t.s
    FROM unnest(p_revisions, p_clusters, p_resources, p_namespaces, p_names, p_vals, p_label_texts, p_uids,
                p_create_revisions, p_prev_revisions, p_deleted_flags, p_superseded_by)
         AS t(r, c, res, ns, n, v, l, u, cr, pr, d, s);
    PERFORM pg_notify(p_channel, p_last::text || ' ' || p_writer);
    RETURN true;
END
$$;
