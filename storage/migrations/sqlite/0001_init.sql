-- Coxswain storage schema v1 (SQLite).
-- kv holds every version of every object: a row is live while `superseded` is NULL; a deletion is a
-- tombstone row superseded by itself. A list at revision R reads rows with revision <= R that were not
-- yet superseded at R; a watch from R reads rows with revision > R. Compaction removes rows superseded
-- at or before the compacted revision.
CREATE TABLE coxswain_schema (version INTEGER NOT NULL);
CREATE TABLE meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    compacted INTEGER NOT NULL
);
INSERT INTO meta (id, revision, compacted) VALUES (1, 0, 0);
CREATE TABLE kv (
    revision INTEGER PRIMARY KEY,
    cluster TEXT NOT NULL,
    resource TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    value BLOB NOT NULL,
    labels TEXT NOT NULL,
    uid TEXT,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER,
    deleted INTEGER NOT NULL,
    superseded INTEGER
);
CREATE INDEX kv_key ON kv (cluster, resource, namespace, name, revision);
CREATE INDEX kv_superseded ON kv (superseded) WHERE superseded IS NOT NULL;
-- One row per label of every non-deleted version, keyed for selector push-down of `=`, `in` and
-- exists; negative requirements read kv.labels.
CREATE TABLE kv_labels (
    resource TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    cluster TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (resource, key, value, cluster, revision)
) WITHOUT ROWID;
-- Commit time of each batch, to find the revision at the edge of the retention window.
CREATE TABLE batches (last_revision INTEGER PRIMARY KEY, committed_at_ms INTEGER NOT NULL);
