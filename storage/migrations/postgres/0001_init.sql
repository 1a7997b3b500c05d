-- Coxswain storage schema v1 (PostgreSQL). Same model as the SQLite schema: kv holds every version of
-- every object; a row is live while `superseded` is NULL; a deletion is a tombstone superseded by
-- itself. Keys compare bytewise (COLLATE "C") so that list order is the same on every backend.
CREATE TABLE coxswain_schema (version bigint NOT NULL);
CREATE TABLE meta (
    id integer PRIMARY KEY CHECK (id = 1),
    revision bigint NOT NULL,
    compacted bigint NOT NULL
);
INSERT INTO meta (id, revision, compacted) VALUES (1, 0, 0);
CREATE TABLE kv (
    revision bigint PRIMARY KEY,
    cluster text COLLATE "C" NOT NULL,
    resource text COLLATE "C" NOT NULL,
    namespace text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    labels jsonb NOT NULL,
    uid text,
    create_revision bigint NOT NULL,
    prev_revision bigint,
    deleted boolean NOT NULL,
    superseded bigint
);
CREATE INDEX kv_key ON kv (cluster, resource, namespace, name, revision);
CREATE INDEX kv_superseded ON kv (superseded) WHERE superseded IS NOT NULL;
CREATE INDEX kv_labels ON kv USING gin (labels);
CREATE TABLE batches (last_revision bigint PRIMARY KEY, committed_at_ms bigint NOT NULL);
