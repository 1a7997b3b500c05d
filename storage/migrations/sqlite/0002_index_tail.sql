-- Coxswain storage schema v2 (SQLite): the label index is filled in bulk, not per commit.
--
-- SQLite's WAL holds whole pages, so a commit costs what it dirties: the label index (one row per
-- label, clustered by label) dirtied one page per distinct label in every batch. Now `kv_labels`
-- covers the rows up to `meta.indexed` only; the rows after it (the tail, a bounded number of
-- revisions) are matched on their own `labels`, and a batch that finds the tail long enough adds
-- the tail's label rows in one statement, which dirties each of those pages once for many rows.
ALTER TABLE meta ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0;
UPDATE meta SET indexed = revision;
