-- Coxswain storage schema v2 (SQLite): the key and label indexes are filled in bulk, not per commit.
--
-- SQLite's WAL holds whole pages, so a commit costs what it dirties. The key index (clustered by key)
-- and the label index (clustered by label) dirtied one page per namespace and per distinct label in
-- every batch: most of a 64-row commit's WAL. Now `kv_keys` (replacing the `kv_key` index, with the
-- same entries) and `kv_labels` cover the rows up to `meta.indexed` only. The rows after it, the
-- tail, a bounded number of revisions at the end of `kv`, are read by revision range and matched on
-- their own columns; a batch that finds the tail long enough indexes it in one statement per index,
-- which dirties each index page once for many rows.
ALTER TABLE meta ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0;
UPDATE meta SET indexed = revision;
CREATE TABLE kv_keys (
    cluster TEXT NOT NULL,
    resource TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (cluster, resource, namespace, name, revision)
) WITHOUT ROWID;
INSERT INTO kv_keys (cluster, resource, namespace, name, revision)
    SELECT cluster, resource, namespace, name, revision FROM kv;
DROP INDEX kv_key;
