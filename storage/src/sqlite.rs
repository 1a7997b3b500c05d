//! The SQLite backend: one database file under the data dir, WAL with `synchronous=FULL`. One writer
//! connection, used only by the sequencer and compaction under `BEGIN IMMEDIATE`; a small pool of
//! readers. Positive label requirements are answered from the `kv_labels` index table, keys from
//! `kv_keys`; both trail the rows by up to `index_lag` revisions (the tail, read by revision range)
//! and catch up in bulk, which keeps a commit's WAL small (`migrations/sqlite/0002_index_tail.sql`).
//! Both name a logical cluster and resource by a small integer from `scopes`
//! (`migrations/sqlite/0003_index_scopes.sql`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Sqlite as Db};
use tokio::sync::Mutex;

use crate::Compaction;
use crate::backend::{Backend, CompactionPolicy, HistoryRow, ListCursor, LiveRow, Revisions};
use crate::error::{Error, Result};
use crate::key::{ClusterScope, ObjectKey, Scope};
use crate::migrate::{self, Found};
use crate::object::StoredObject;
use crate::rows::{self, now_ms, to_u64};
use crate::selector::{LabelSelector, Operator};
use crate::sequencer::{Mutation, Plan, plan_batch};

/// A per-connection guard that lets one call to the writer check a batch's base revision and its
/// unchecked keys and abort the whole call if either is off: inserting into the view runs the
/// trigger, which raises [`STALE`] unless the shard is at `base` and `clashes` is zero.
const WRITE_GUARD: &str = "CREATE TEMP VIEW IF NOT EXISTS write_guard AS SELECT 0 AS base, 0 AS clashes; \
     CREATE TEMP TRIGGER IF NOT EXISTS write_guard_check INSTEAD OF INSERT ON write_guard BEGIN \
     SELECT RAISE(ABORT, 'coxswain: stale batch') \
     WHERE NEW.base IS NOT (SELECT revision FROM main.meta WHERE id = 1) OR NEW.clashes > 0; END;";
const STALE: &str = "coxswain: stale batch";

/// The tail: rows after `meta.indexed`, not yet in `kv_keys` or `kv_labels`, as `t` (followed by
/// `AND` conditions on `t`).
const TAIL: &str = "meta tm, kv t WHERE tm.id = 1 AND t.revision > tm.indexed";

/// The live version of a key: indexed or in the tail.
const GET: &str = "SELECT revision, value FROM kv WHERE superseded IS NULL AND revision IN \
     (SELECT revision FROM kv_keys WHERE scope = (SELECT id FROM scopes WHERE resource = ?2 AND cluster = ?1) \
     AND namespace = ?3 AND name = ?4 \
     UNION ALL SELECT t.revision FROM meta tm, kv t WHERE tm.id = 1 AND t.revision > tm.indexed \
     AND t.cluster = ?1 AND t.resource = ?2 AND t.namespace = ?3 AND t.name = ?4)";

/// The indexed rows with their keys from `kv_keys` and `scopes`, under the table's own name and
/// columns. The unique index of `scopes` on (resource, cluster) gives a scope's rows in key order
/// even across clusters.
const KEYED: &str = "(SELECT s.cluster AS cluster, s.resource AS resource, k.namespace AS namespace, k.name AS name, \
     kv.revision AS revision, kv.value AS value, kv.labels AS labels, kv.deleted AS deleted, \
     kv.superseded AS superseded FROM scopes s JOIN kv_keys k ON k.scope = s.id JOIN kv ON kv.revision = k.revision) AS kv";

/// Rows per multi-row INSERT (11 parameters each; SQLite allows 32766).
const INSERT_CHUNK: usize = 200;

#[derive(Debug)]
pub(crate) struct Sqlite {
    path: PathBuf,
    /// Revisions the label index may trail the rows by (see `migrations/sqlite/0002_index_tail.sql`).
    index_lag: u64,
    writer: Mutex<SqliteConnection>,
    readers: SqlitePool,
}

impl Sqlite {
    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub(crate) async fn open(path: &Path, index_lag: u64) -> Result<Self> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|err| {
                Error::Open(format!(
                    "cannot create data dir {}: {err}; choose a writable --data-dir",
                    dir.display()
                ))
            })?;
        }
        check_header(path)?;
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|err| Error::Open(err.to_string()))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(false)
            .pragma("cache_size", "-65536");
        let mut writer = SqliteConnection::connect_with(&options)
            .await
            .map_err(|err| open_error(&shown, err))?;
        migrate(&mut writer, &shown).await?;
        sqlx::raw_sql(WRITE_GUARD)
            .execute(&mut writer)
            .await
            .map_err(|err| open_error(&shown, err))?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(options)
            .await
            .map_err(|err| open_error(&shown, err))?;
        Ok(Self {
            path: path.to_path_buf(),
            index_lag: index_lag.max(1),
            writer: Mutex::new(writer),
            readers,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` inside `BEGIN IMMEDIATE … COMMIT` on the writer connection.
    async fn write<T>(&self, work: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>) -> Result<T> {
        let mut conn = self.writer.lock().await;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        match work(&mut conn).await {
            Ok(value) => match sqlx::query("COMMIT").execute(&mut *conn).await {
                Ok(_) => Ok(value),
                Err(err) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    Err(err.into())
                }
            },
            Err(err) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(err)
            }
        }
    }
}

/// Refuses a non-empty file that is not an SQLite database, before SQLite touches it.
fn check_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut header = [0u8; 16];
    let read = match std::fs::File::open(path) {
        Ok(mut file) => file
            .read(&mut header)
            .map_err(|err| Error::Open(format!("cannot read {}: {err}", path.display())))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => {
            return Err(Error::Open(format!(
                "cannot open {}: {err}; check its permissions",
                path.display()
            )));
        }
    };
    if read > 0 && header[..read] != b"SQLite format 3\0"[..read] {
        return Err(Error::Open(format!(
            "{} is not an SQLite database (corrupt or foreign file); move it aside or choose another --data-dir",
            path.display()
        )));
    }
    Ok(())
}

fn open_error(place: &str, err: sqlx::Error) -> Error {
    let detail = match &err {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("26") => format!(
                "{place} is not an SQLite database (corrupt or foreign file); move it aside or choose another --data-dir"
            ),
            Some("14") => format!(
                "cannot open {place}: {}; check that the data dir exists and is writable",
                db.message()
            ),
            Some("8") => format!(
                "{place} is read-only: {}; make the data dir and file writable",
                db.message()
            ),
            Some("11") => format!(
                "{place} is corrupt: {}; restore it from a backup or choose another --data-dir",
                db.message()
            ),
            _ => format!("cannot open {place}: {}", db.message()),
        },
        other => format!("cannot open {place}: {other}"),
    };
    Error::Open(detail)
}

async fn migrate(conn: &mut SqliteConnection, place: &str) -> Result<()> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&mut *conn)
            .await
            .map_err(|err| open_error(place, err))?;
    let found = if tables.iter().any(|t| t == "coxswain_schema") {
        let version: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM coxswain_schema")
            .fetch_one(&mut *conn)
            .await
            .map_err(|err| open_error(place, err))?;
        Found::Version(version.unwrap_or(0))
    } else if tables.is_empty() {
        Found::Empty
    } else {
        Found::Foreign { tables }
    };
    for migration in migrate::pending(migrate::SQLITE, &found, place)? {
        let step = async {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            sqlx::raw_sql(migration.sql).execute(&mut *conn).await?;
            sqlx::query("INSERT INTO coxswain_schema (version) VALUES (?)")
                .bind(migration.version)
                .execute(&mut *conn)
                .await?;
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok::<_, sqlx::Error>(())
        };
        if let Err(err) = step.await {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return Err(open_error(place, err));
        }
        tracing::info!(
            version = migration.version,
            database = place,
            "applied schema migration"
        );
    }
    Ok(())
}

/// The base revision and the live rows of the mutated keys, in one statement; `begin` first opens
/// the write transaction in the same call to the connection's worker.
async fn lookup(
    conn: &mut SqliteConnection,
    mutations: &[Mutation],
    begin: bool,
) -> Result<(u64, HashMap<ObjectKey, LiveRow>)> {
    let mut keys: Vec<&ObjectKey> = mutations.iter().map(Mutation::key).collect();
    keys.sort();
    keys.dedup();
    let mut query: QueryBuilder<Db> = QueryBuilder::new(if begin { "BEGIN IMMEDIATE; " } else { "" });
    query.push(
        "SELECT m.revision, kv.revision, kv.cluster, kv.resource, kv.namespace, kv.name, \
         kv.create_revision, kv.uid, kv.value, kv.labels FROM meta m LEFT JOIN kv ON kv.superseded IS NULL \
         AND kv.revision IN (SELECT k.revision FROM (VALUES ",
    );
    push_keys(&mut query, &keys);
    query.push(
        ") v JOIN scopes s ON s.resource = v.column2 AND s.cluster = v.column1 \
         JOIN kv_keys k ON k.scope = s.id AND k.namespace = v.column3 AND k.name = v.column4",
    );
    query.push(format!(" UNION ALL SELECT t.revision FROM {TAIL} AND (t.cluster, t.resource, t.namespace, t.name) IN (VALUES "));
    push_keys(&mut query, &keys);
    query.push(")) WHERE m.id = 1");
    rows::lookup(query.build().persistent(false).fetch_all(&mut *conn).await?)
}

/// `(?, ?, ?, ?), …` for a list of keys (at least one).
fn push_keys(query: &mut QueryBuilder<'_, Db>, keys: &[&ObjectKey]) {
    for (index, key) in keys.iter().enumerate() {
        if index > 0 {
            query.push(", ");
        }
        query
            .push("(")
            .push_bind(key.cluster.clone())
            .push(", ")
            .push_bind(key.resource.clone());
        query
            .push(", ")
            .push_bind(key.namespace.clone())
            .push(", ")
            .push_bind(key.name.clone())
            .push(")");
    }
}

/// Writes a planned batch and commits, in one call to the connection's worker.
async fn write_and_commit(conn: &mut SqliteConnection, plan: &Plan, index_lag: u64) -> Result<()> {
    let mut query: QueryBuilder<Db> = QueryBuilder::new("");
    push_plan(&mut query, plan, index_lag, None);
    query.build().persistent(false).execute(&mut *conn).await?;
    Ok(())
}

/// The statements that write a planned batch, ending with `COMMIT`. With `clash_guard` (the batch's
/// base revision), the write aborts if a create's key was live at the base.
fn push_plan<'a>(query: &mut QueryBuilder<'a, Db>, plan: &'a Plan, index_lag: u64, clash_guard: Option<u64>) {
    for (revision, superseded) in &plan.supersede {
        query
            .push("UPDATE kv SET superseded = ")
            .push_bind(*superseded as i64);
        query
            .push(" WHERE revision = ")
            .push_bind(*revision as i64)
            .push("; ");
    }
    for chunk in plan.rows.chunks(INSERT_CHUNK) {
        query.push(
            "INSERT OR ROLLBACK INTO kv (revision, cluster, resource, namespace, name, value, labels, uid, create_revision, \
             prev_revision, deleted, superseded) VALUES ",
        );
        for (index, row) in chunk.iter().enumerate() {
            query.push(if index == 0 { "(" } else { ", (" });
            let mut values = query.separated(", ");
            values
                .push_bind(row.revision as i64)
                .push_bind(&row.key.cluster)
                .push_bind(&row.key.resource)
                .push_bind(&row.key.namespace)
                .push_bind(&row.key.name)
                .push_bind(row.value.as_ref())
                .push_bind(&row.labels_json)
                .push_bind(&row.uid)
                .push_bind(row.create_revision as i64)
                .push_bind(row.prev_revision.map(|r| r as i64))
                .push_bind(row.deleted)
                .push_bind(row.superseded.map(|r| r as i64));
            query.push(")");
        }
        query.push("; ");
    }
    if let (Some(first), Some(last)) = (plan.rows.first(), plan.rows.last()) {
        if let Some(base) = clash_guard {
            // Creates planned without reading their keys: none of them may have been live at `base`,
            // whether its live version is indexed or in the tail.
            let created = |query: &mut QueryBuilder<'a, Db>| {
                query
                    .push("n.revision BETWEEN ")
                    .push_bind(first.revision as i64)
                    .push(" AND ")
                    .push_bind(last.revision as i64)
                    .push(" AND n.prev_revision IS NULL");
            };
            query
                .push("INSERT INTO temp.write_guard (base, clashes) VALUES (")
                .push_bind(base as i64)
                .push(
                    ", (SELECT count(*) FROM kv n JOIN scopes s ON s.resource = n.resource AND s.cluster = n.cluster \
                     JOIN kv_keys k ON k.scope = s.id AND k.namespace = n.namespace AND k.name = n.name \
                     JOIN kv o ON o.revision = k.revision \
                     AND o.superseded IS NULL AND o.revision <= ",
                )
                .push_bind(base as i64)
                .push(" WHERE ");
            created(query);
            query
                .push(format!(
                    ") + (SELECT count(*) FROM {TAIL} AND t.superseded IS NULL AND t.revision <= "
                ))
                .push_bind(base as i64)
                // The names first: a probe on one short column rules out almost every tail row.
                .push(" AND t.name IN (SELECT n.name FROM kv n WHERE ");
            created(query);
            query.push(
                ") AND (t.cluster, t.resource, t.namespace, t.name) IN \
                 (SELECT n.cluster, n.resource, n.namespace, n.name FROM kv n WHERE ",
            );
            created(query);
            query.push("))); ");
        }
        // Once the tail reaches `index_lag` revisions, its key and label rows are added in one
        // statement each (derived from the rows, in the database; sorting them first measured
        // slower) and the tail starts again.
        let due = |query: &mut QueryBuilder<'a, Db>, watermark: &str| {
            query
                .push_bind(last.revision as i64)
                .push(format!(" - {watermark} >= "))
                .push_bind(index_lag as i64);
        };
        query.push(
            "INSERT OR IGNORE INTO scopes (resource, cluster) \
             SELECT DISTINCT kv.resource, kv.cluster FROM meta m, kv WHERE m.id = 1 AND ",
        );
        due(query, "m.indexed");
        query.push(
            " AND kv.revision > m.indexed; \
             INSERT OR ROLLBACK INTO kv_keys (scope, namespace, name, revision) \
             SELECT s.id, kv.namespace, kv.name, kv.revision FROM meta m, kv \
             JOIN scopes s ON s.resource = kv.resource AND s.cluster = kv.cluster WHERE m.id = 1 AND ",
        );
        due(query, "m.indexed");
        query.push(
            " AND kv.revision > m.indexed; \
             INSERT OR ROLLBACK INTO kv_labels (scope, key, value, revision) \
             SELECT s.id, j.key, j.value, kv.revision FROM meta m, kv \
             JOIN scopes s ON s.resource = kv.resource AND s.cluster = kv.cluster, json_each(kv.labels) j \
             WHERE m.id = 1 AND ",
        );
        due(query, "m.indexed");
        query.push(" AND kv.revision > m.indexed AND kv.deleted = 0; UPDATE meta SET indexed = ");
        query.push_bind(last.revision as i64).push(" WHERE id = 1 AND ");
        due(query, "indexed");
        query.push("; ");
    }
    if let Some(last) = plan.last_revision() {
        query
            .push("UPDATE meta SET revision = ")
            .push_bind(last as i64)
            .push(" WHERE id = 1; ");
        query
            .push("INSERT INTO batches (last_revision, committed_at_ms) VALUES (")
            .push_bind(last as i64);
        query.push(", ").push_bind(now_ms()).push("); ");
    }
    query.push("COMMIT");
}

/// Appends the scope's conditions (`resource`, cluster, namespace) to a WHERE clause.
/// With `label_driven`, the key columns are written `+column` so that SQLite cannot use the key
/// index for them and reads the rows the label index found instead of the whole scope.
fn push_scope(query: &mut QueryBuilder<'_, Db>, scope: &Scope, label_driven: bool) {
    let prefix = if label_driven { " AND +" } else { " AND " };
    query
        .push(prefix)
        .push("resource = ")
        .push_bind(scope.resource.clone());
    if let ClusterScope::One(cluster) = &scope.cluster {
        query.push(prefix).push("cluster = ").push_bind(cluster.clone());
    }
    if let Some(namespace) = &scope.namespace {
        query
            .push(prefix)
            .push("namespace = ")
            .push_bind(namespace.clone());
    }
}

/// Appends one condition per selector requirement: `=`, `in` and exists from the `kv_labels` index,
/// `!=`, `notin` and does-not-exist (never selective) from the row's own `labels`.
fn push_selector(query: &mut QueryBuilder<'_, Db>, scope: &Scope, selector: &LabelSelector) {
    for requirement in &selector.requirements {
        let positive = matches!(
            requirement.operator,
            Operator::Equals | Operator::In | Operator::Exists
        );
        if positive {
            // The label index up to `meta.indexed`, the rows' own labels after it.
            query.push(
                " AND kv.revision IN (SELECT l.revision FROM scopes s JOIN kv_labels l ON l.scope = s.id \
                 WHERE s.resource = ",
            );
            query.push_bind(scope.resource.clone());
            if let ClusterScope::One(cluster) = &scope.cluster {
                query.push(" AND s.cluster = ").push_bind(cluster.clone());
            }
            query.push(" AND l.key = ").push_bind(requirement.key.clone());
            push_values(query, "l.value", &requirement.values);
            query.push(format!(
                " UNION ALL SELECT t.revision FROM json_each(t.labels) j, {TAIL} AND t.deleted = 0 AND j.key = "
            ));
            query.push_bind(requirement.key.clone());
            push_values(query, "j.value", &requirement.values);
        } else {
            query.push(" AND NOT EXISTS (SELECT 1 FROM json_each(kv.labels) j WHERE j.key = ");
            query.push_bind(requirement.key.clone());
            push_values(query, "j.value", &requirement.values);
        }
        query.push(")");
    }
}

/// ` AND column IN (values…)`, or nothing when there are no values.
fn push_values(query: &mut QueryBuilder<'_, Db>, column: &str, values: &[String]) {
    if values.is_empty() {
        return;
    }
    query.push(format!(" AND {column} IN ("));
    let mut list = query.separated(", ");
    for value in values {
        list.push_bind(value.clone());
    }
    query.push(")");
}

#[async_trait]
impl Backend for Sqlite {
    async fn lookup(&self, mutations: &[Mutation]) -> Result<(u64, HashMap<ObjectKey, LiveRow>)> {
        let mut conn = self.readers.acquire().await?;
        lookup(&mut conn, mutations, false).await
    }

    /// The next batch waits for the writer connection rather than for the sequencer: it is planned
    /// and queued while the one before is written, and its guard checks its base when it runs.
    fn pipeline_depth(&self) -> usize {
        2
    }

    /// One call to the writer's worker: open the transaction, check the base and the unchecked keys
    /// (the guard aborts the call otherwise), write, commit.
    async fn write(&self, base: u64, plan: &Plan, unchecked: &[ObjectKey]) -> Result<bool> {
        if plan.rows.is_empty() {
            return Ok(true);
        }
        let mut query: QueryBuilder<Db> =
            QueryBuilder::new("BEGIN IMMEDIATE; INSERT INTO temp.write_guard (base, clashes) VALUES (");
        query.push_bind(base as i64).push(", 0); ");
        push_plan(
            &mut query,
            plan,
            self.index_lag,
            (!unchecked.is_empty()).then_some(base),
        );
        let mut conn = self.writer.lock().await;
        // Cached: a batch's script depends only on its shape (rows, superseded versions, checks), so
        // batches of one shape, such as a closed loop of writers produces, are parsed once.
        match query.build().execute(&mut *conn).await {
            Ok(_) => Ok(true),
            Err(err) => {
                // Nothing of a failed batch may stay behind (a no-op if BEGIN itself failed).
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                match err {
                    sqlx::Error::Database(db) if db.message().contains(STALE) => Ok(false),
                    other => Err(other.into()),
                }
            }
        }
    }

    async fn commit_locked(&self, mutations: &[Mutation]) -> Result<Plan> {
        let mut conn = self.writer.lock().await;
        let result = async {
            let (base, live) = lookup(&mut conn, mutations, true).await?;
            let plan = plan_batch(base, &live, mutations);
            write_and_commit(&mut conn, &plan, self.index_lag).await?;
            Ok(plan)
        }
        .await;
        if result.is_err() {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        }
        result
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<StoredObject>> {
        let row = sqlx::query(GET)
            .bind(&key.cluster)
            .bind(&key.resource)
            .bind(&key.namespace)
            .bind(&key.name)
            .fetch_optional(&self.readers)
            .await?;
        row.map(|row| rows::object(&row, key)).transpose()
    }

    async fn revisions(&self) -> Result<Revisions> {
        rows::revisions(sqlx::query_as(rows::REVISIONS).fetch_one(&self.readers).await?)
    }

    async fn list(
        &self,
        scope: &Scope,
        selector: &LabelSelector,
        at: u64,
        after: Option<&ListCursor>,
        limit: Option<u64>,
    ) -> Result<Vec<StoredObject>> {
        // A positive label requirement is answered from the label index: let it drive the query.
        let label_driven = selector
            .requirements
            .iter()
            .any(|r| matches!(r.operator, Operator::Equals | Operator::In | Operator::Exists));
        // One part in key order, its own order and limit; conditions on unqualified columns.
        let part = |query: &mut QueryBuilder<'_, Db>, from: &str| {
            query
                .push("SELECT cluster, namespace, name, revision, value FROM ")
                .push(from)
                .push(" WHERE deleted = 0");
            push_scope(query, scope, label_driven);
            query.push(" AND revision <= ").push_bind(at as i64);
            query
                .push(" AND (superseded IS NULL OR superseded > ")
                .push_bind(at as i64)
                .push(")");
            if let Some(after) = after {
                after.push_condition(query);
            }
            push_selector(query, scope, selector);
        };
        let order_and_limit = |query: &mut QueryBuilder<'_, Db>| {
            query.push(" ORDER BY cluster, namespace, name");
            if let Some(limit) = limit {
                query.push(" LIMIT ").push_bind(limit.min(i64::MAX as u64) as i64);
            }
        };
        let mut query: QueryBuilder<Db> = QueryBuilder::new("");
        if label_driven {
            // The label subqueries find the rows, indexed or in the tail; no key index needed.
            part(&mut query, "kv");
            order_and_limit(&mut query);
        } else {
            // The indexed rows in key order through `kv_keys` (an ordered index scan that stops at
            // the limit) and the tail's, each limited on its own, merged below: one statement, so
            // one snapshot.
            query.push("SELECT * FROM (");
            part(&mut query, KEYED);
            order_and_limit(&mut query);
            query.push(") UNION ALL SELECT * FROM (");
            part(&mut query, "kv");
            query.push(" AND revision > (SELECT indexed FROM meta WHERE id = 1)");
            order_and_limit(&mut query);
            query.push(")");
        }
        let objects = query
            .build()
            .fetch_all(&self.readers)
            .await?
            .into_iter()
            .map(|row| rows::listed(&row, &scope.resource))
            .collect::<Result<Vec<_>>>()?;
        Ok(if label_driven {
            objects
        } else {
            rows::merge_list_parts(objects, limit)
        })
    }

    async fn history(
        &self,
        scope: Option<&Scope>,
        after: u64,
        up_to: u64,
        limit: u64,
    ) -> Result<Vec<HistoryRow>> {
        let mut query: QueryBuilder<Db> = QueryBuilder::new(
            "SELECT revision, cluster, resource, namespace, name, value, prev_revision IS NULL, deleted FROM kv WHERE revision > ",
        );
        query
            .push_bind(after as i64)
            .push(" AND revision <= ")
            .push_bind(up_to.min(i64::MAX as u64) as i64);
        if let Some(scope) = scope {
            push_scope(&mut query, scope, false);
        }
        query.push(" ORDER BY revision LIMIT ").push_bind(limit as i64);
        query
            .build()
            .fetch_all(&self.readers)
            .await?
            .into_iter()
            .map(|row| rows::history(&row))
            .collect()
    }

    async fn compact(&self, policy: CompactionPolicy) -> Result<Compaction> {
        let revisions = self.revisions().await?;
        let cutoff = now_ms() - policy.window_ms.min(i64::MAX as u64) as i64;
        let aged: Option<i64> =
            sqlx::query_scalar("SELECT max(last_revision) FROM batches WHERE committed_at_ms <= ?")
                .bind(cutoff)
                .fetch_one(&self.readers)
                .await?;
        let target = to_u64(aged.unwrap_or(0))?.min(revisions.current.saturating_sub(policy.min_revisions));
        if target <= revisions.compacted {
            return Ok(Compaction {
                compacted_revision: revisions.compacted,
                removed_rows: 0,
            });
        }
        // Publish the new floor first: from now on nobody relies on rows below it.
        self.write(async |conn: &mut SqliteConnection| {
            sqlx::query("UPDATE meta SET compacted = max(compacted, ?) WHERE id = 1")
                .bind(target as i64)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
        .await?;
        let mut removed = 0u64;
        loop {
            let deleted = self
                .write(async |conn: &mut SqliteConnection| {
                    let doomed: Vec<i64> = sqlx::query_scalar(
                        "SELECT revision FROM kv WHERE superseded IS NOT NULL AND superseded <= ? ORDER BY superseded LIMIT ?",
                    )
                    .bind(target as i64)
                    .bind(policy.batch_rows as i64)
                    .fetch_all(&mut *conn)
                    .await?;
                    for chunk in doomed.chunks(500) {
                        let statements = [
                            "DELETE FROM kv_keys WHERE (scope, namespace, name, revision) IN \
                             (SELECT s.id, d.namespace, d.name, d.revision FROM kv d \
                             JOIN scopes s ON s.resource = d.resource AND s.cluster = d.cluster WHERE d.revision IN (",
                            "DELETE FROM kv_labels WHERE (scope, key, value, revision) IN \
                             (SELECT s.id, j.key, j.value, d.revision FROM kv d \
                             JOIN scopes s ON s.resource = d.resource AND s.cluster = d.cluster, json_each(d.labels) j \
                             WHERE d.deleted = 0 AND d.revision IN (",
                            "DELETE FROM kv WHERE revision IN (",
                        ];
                        for statement in statements {
                            let mut query: QueryBuilder<Db> = QueryBuilder::new(statement);
                            let mut list = query.separated(", ");
                            for revision in chunk {
                                list.push_bind(*revision);
                            }
                            query.push(if statement.contains("(SELECT") { "))" } else { ")" });
                            query.build().persistent(false).execute(&mut *conn).await?;
                        }
                    }
                    Ok(doomed.len() as u64)
                })
                .await?;
            removed += deleted;
            if deleted < policy.batch_rows {
                break;
            }
            tokio::task::yield_now().await;
        }
        self.write(async |conn: &mut SqliteConnection| {
            sqlx::query("DELETE FROM batches WHERE last_revision < ?")
                .bind(target as i64)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
        .await?;
        Ok(Compaction {
            compacted_revision: target,
            removed_rows: removed,
        })
    }

    async fn wait_for_remote_commit(&self) -> Option<u64> {
        None
    }
}
