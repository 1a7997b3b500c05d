//! The PostgreSQL backend. Several Coxswain processes may share one database: a write transaction
//! first locks the shard's `meta` row, so revisions are assigned and committed in one global order;
//! each commit sends `NOTIFY coxswain_commits` with its last revision and the writing process, which
//! wakes the other processes' watch tailers (the notification is a hint, the history table is the
//! truth).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres as Db, QueryBuilder};
use tokio::sync::Mutex;
use tracing::debug;

use crate::Compaction;
use crate::backend::{Backend, CompactionPolicy, HistoryRow, ListCursor, LiveRow, Revisions};
use crate::batch_connection::BatchConnection;
use crate::error::{Error, Result};
use crate::key::{ClusterScope, ObjectKey, Scope};
use crate::migrate::{self, Found};
use crate::object::StoredObject;
use crate::rows::{self, now_ms, to_u64};
use crate::selector::{LabelSelector, Operator};
use crate::sequencer::{Mutation, Plan, plan_batch};

const CHANNEL: &str = "coxswain_commits";
/// Serialises schema migrations of concurrently starting processes.
const MIGRATION_LOCK: i64 = 0x636f_7873_7761_696e;

/// Who writes: how this process names itself in the database.
#[derive(Debug)]
struct Writer {
    /// In commit notifications, so that the process skips its own.
    name: String,
    /// The class of the advisory lock each write takes (schema v3), which only a batch written the
    /// way older builds did, behind another on a second connection, waits for.
    lock_class: i32,
}

/// Batches in flight at once: one being written and one queued behind it on the batch connection.
/// With three (batches of about 21 at concurrency 64) the benchmark did 35,618–42,917 creates per
/// second against 48,391–50,404 with two, in three pairs of runs.
const PIPELINE_DEPTH: usize = 2;

/// Server settings of every connection. Every query here is built for an index. Statements are
/// prepared once per connection, and a plan made while `kv` was new (no statistics yet) would scan
/// it for as long as the connection lives; forbid that rather than wait for autoanalyze. JIT never
/// pays off for these short statements.
const SESSION_SETTINGS: [(&str, &str); 3] = [
    ("enable_seqscan", "off"),
    ("enable_hashjoin", "off"),
    ("jit", "off"),
];

/// `coxswain_write`'s `p_behind` (schema v3): true made a batch insert its rows before waiting for
/// the one before it, written on another connection. Both are on one connection now, in order.
const WRITTEN_BEHIND: bool = false;

#[derive(Debug)]
pub(crate) struct Postgres {
    /// Reads, lookups, compaction, the commit listener and writes under the shard lock.
    pool: PgPool,
    /// The batch writes, and nothing else.
    batches: BatchConnection,
    /// How this process names itself in its commit notifications and advisory locks.
    writer: Writer,
    listener: Mutex<Option<PgListener>>,
}

impl Postgres {
    pub(crate) async fn open(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<Self> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|err| Error::Open(format!("invalid PostgreSQL URL: {err}")))?;
        let options = options.options(SESSION_SETTINGS);
        let place = format!(
            "PostgreSQL database {:?} at {}:{}",
            options.get_database().unwrap_or("postgres"),
            options.get_host(),
            options.get_port()
        );
        // One direct attempt first: the pool would retry a refused connection until its timeout and
        // then report only that it timed out.
        let unreachable = |err: &dyn std::fmt::Display| {
            Error::Open(format!(
                "cannot connect to {place}: {err}; check the --storage URL and that the server is running"
            ))
        };
        let probe = PgConnection::connect_with(&options)
            .await
            .map_err(|err| unreachable(&err))?;
        let _ = probe.close().await;
        let pool_options = |max_connections: u32| {
            PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(acquire_timeout)
                // A broken connection fails its first statement instead; this saves a round trip per
                // batch.
                .test_before_acquire(false)
        };
        let pool = pool_options(max_connections)
            .connect_with(options.clone())
            .await
            .map_err(|err| unreachable(&err))?;
        migrate(&pool, &place).await?;
        // Opened now rather than by the first batch, which would wait for it.
        let batches = BatchConnection::open(url, &SESSION_SETTINGS, acquire_timeout, WRITE)
            .await
            .map_err(|err| unreachable(&err))?;
        Ok(Self {
            pool,
            batches,
            writer: Writer {
                name: format!("{:016x}", rand::random::<u64>()),
                lock_class: rand::random::<i32>(),
            },
            listener: Mutex::new(None),
        })
    }
}

async fn migrate(pool: &PgPool, place: &str) -> Result<()> {
    let fail = |err: sqlx::Error| Error::Open(format!("cannot migrate {place}: {err}"));
    let mut tx = pool.begin().await.map_err(fail)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(fail)?;
    let found = if tables.iter().any(|t| t == "coxswain_schema") {
        let version: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM coxswain_schema")
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
        Found::Version(version.unwrap_or(0))
    } else if tables.is_empty() {
        Found::Empty
    } else {
        Found::Foreign { tables }
    };
    for migration in migrate::pending(migrate::POSTGRES, &found, place)? {
        sqlx::raw_sql(migration.sql)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        sqlx::query("INSERT INTO coxswain_schema (version) VALUES ($1)")
            .bind(migration.version)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tracing::info!(
            version = migration.version,
            database = place,
            "applied schema migration"
        );
    }
    tx.commit().await.map_err(fail)?;
    Ok(())
}

fn push_scope(query: &mut QueryBuilder<'_, Db>, scope: &Scope) {
    query.push(" AND resource = ").push_bind(scope.resource.clone());
    if let ClusterScope::One(cluster) = &scope.cluster {
        query.push(" AND cluster = ").push_bind(cluster.clone());
    }
    if let Some(namespace) = &scope.namespace {
        query.push(" AND namespace = ").push_bind(namespace.clone());
    }
}

/// The `key` column of a key (schema v3): its four parts, each followed by a zero byte, so that keys
/// compare bytewise in list order.
fn encoded_key(key: &ObjectKey) -> Vec<u8> {
    encoded_parts(&[&key.cluster, &key.resource, &key.namespace, &key.name])
}

fn encoded_parts(parts: &[&str]) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(parts.iter().map(|part| part.len() + 1).sum());
    for part in parts {
        encoded.extend_from_slice(part.as_bytes());
        encoded.push(0);
    }
    encoded
}

/// Conditions on `key` for the live part of a list: within the scope's prefix (when it names a
/// cluster) and after the cursor. Keys of one resource and cluster order as (namespace, name).
fn push_key_range(query: &mut QueryBuilder<'_, Db>, scope: &Scope, after: Option<&ListCursor>) {
    if let ClusterScope::One(cluster) = &scope.cluster {
        let mut parts = vec![cluster.as_str(), scope.resource.as_str()];
        if let Some(namespace) = &scope.namespace {
            parts.push(namespace);
        }
        let low = encoded_parts(&parts);
        // Every key that starts with `low` (which ends with a zero byte) is below `high`.
        let mut high = low.clone();
        if let Some(last) = high.last_mut() {
            *last = 1;
        }
        query.push(" AND key >= ").push_bind(low);
        query.push(" AND key < ").push_bind(high);
    }
    if let Some(after) = after {
        let cursor = encoded_parts(&[&after.cluster, &scope.resource, &after.namespace, &after.name]);
        query.push(" AND key > ").push_bind(cursor);
    }
}

/// The two parts of a list at revision R.
#[derive(Clone, Copy)]
enum ListPart {
    /// Versions still live, read through `kv_live` in key order.
    Live,
    /// Versions superseded after R, read through `kv_superseded` and sorted.
    SupersededSince,
}

/// A list part's conditions besides liveness (the cursor, scope, `revision <= at`, the selector),
/// its order and its limit.
fn push_list_conditions(
    query: &mut QueryBuilder<'_, Db>,
    part: ListPart,
    scope: &Scope,
    selector: &LabelSelector,
    at: u64,
    after: Option<&ListCursor>,
    limit: Option<u64>,
) {
    match part {
        ListPart::Live => push_key_range(query, scope, after),
        ListPart::SupersededSince => {
            if let Some(after) = after {
                after.push_condition(query);
            }
        }
    }
    push_scope(query, scope);
    query.push(" AND revision <= ").push_bind(at as i64);
    push_selector(query, selector);
    query.push(match part {
        ListPart::Live => " ORDER BY key",
        ListPart::SupersededSince => " ORDER BY cluster, namespace, name",
    });
    if let Some(limit) = limit {
        query.push(" LIMIT ").push_bind(limit.min(i64::MAX as u64) as i64);
    }
}

/// One condition per requirement on the `labels` jsonb column, in forms its GIN index answers
/// (`@>` containment and `?` key existence).
fn push_selector(query: &mut QueryBuilder<'_, Db>, selector: &LabelSelector) {
    for requirement in &selector.requirements {
        let negated = matches!(
            requirement.operator,
            Operator::NotEquals | Operator::NotIn | Operator::DoesNotExist
        );
        query.push(if negated { " AND NOT (" } else { " AND (" });
        match requirement.operator {
            Operator::Exists | Operator::DoesNotExist => {
                query.push("labels ? ").push_bind(requirement.key.clone());
            }
            _ => {
                for (index, value) in requirement.values.iter().enumerate() {
                    if index > 0 {
                        query.push(" OR ");
                    }
                    let containment = serde_json::json!({ requirement.key.clone(): value });
                    query.push("labels @> ").push_bind(containment).push("::jsonb");
                }
            }
        }
        query.push(")");
    }
}

/// The live rows of the mutated keys and the revision they are current at, read in one statement
/// (so one snapshot).
const LOOKUP: &str = "WITH m AS (SELECT revision FROM meta WHERE id = 1), \
     live AS (SELECT kv.revision, kv.cluster, kv.resource, kv.namespace, kv.name, kv.create_revision, kv.uid, kv.value, kv.labels::text AS labels \
              FROM kv JOIN unnest($1::bytea[]) AS k(key) ON kv.key = k.key WHERE kv.superseded IS NULL) \
     SELECT m.revision, live.* FROM m LEFT JOIN live ON true";

/// Writes a planned batch through `coxswain_write` (schema v3): if and only if the shard is at the
/// revision `$16` it was planned on (checked after waiting for any concurrent writer's lock on the
/// `meta` row; `$22` is [`WRITTEN_BEHIND`]). Creates planned without a lookup need no check here:
/// the unique `kv_live` index fails the statement if one of their keys is live.
const WRITE: &str = "SELECT coxswain_write($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
     $15, $16, $17, $18, $19, $20, $21, $22)";

/// SQLSTATEs that mean "nothing was written, plan the batch again": a create planned without a
/// lookup found its key live; and, from the way schema v3 wrote a batch behind another (which a
/// process of an older build sharing the database may still do), a batch that found the shard
/// elsewhere or gave up waiting for its lock, or a deadlock with such a batch.
const NOT_WRITTEN: [&str; 4] = ["23505", "CXB01", "55P03", "40P01"];

impl Postgres {
    /// Reads the base revision and the live rows of the mutated keys.
    async fn lookup_with<'c, E>(
        executor: E,
        mutations: &[Mutation],
    ) -> Result<(u64, HashMap<ObjectKey, LiveRow>)>
    where
        E: sqlx::Executor<'c, Database = Db>,
    {
        let mut keys: Vec<&ObjectKey> = mutations.iter().map(Mutation::key).collect();
        keys.sort();
        keys.dedup();
        let rows = sqlx::query(LOOKUP)
            .bind(keys.iter().map(|k| encoded_key(k)).collect::<Vec<_>>())
            .fetch_all(executor)
            .await?;
        rows::lookup(rows)
    }

    /// Runs [`WRITE`] on a connection of the pool for `plan` planned on `base` (the fallback under
    /// the shard lock); true when it was written.
    async fn write_with<'c, E>(executor: E, writer: &Writer, base: u64, plan: &Plan) -> Result<bool>
    where
        E: sqlx::Executor<'c, Database = Db>,
    {
        let Some(args) = WriteArgs::of(writer, base, plan) else {
            return Ok(true);
        };
        let written = args
            .bind(sqlx::query_scalar::<_, bool>(WRITE))
            .fetch_one(executor)
            .await;
        match written {
            Ok(written) => Ok(written),
            Err(sqlx::Error::Database(err))
                if err
                    .code()
                    .is_some_and(|code| NOT_WRITTEN.contains(&code.as_ref())) =>
            {
                debug!("batch not written; planning it again: {}", err.message());
                Ok(false)
            }
            Err(err) => Err(err.into()),
        }
    }
}

/// The arguments of [`WRITE`] for one planned batch, for either driver.
struct WriteArgs<'a> {
    revisions: Vec<i64>,
    clusters: Vec<&'a str>,
    resources: Vec<&'a str>,
    namespaces: Vec<&'a str>,
    names: Vec<&'a str>,
    keys: Vec<Vec<u8>>,
    values: Vec<&'a [u8]>,
    labels: Vec<&'a str>,
    uids: Vec<Option<&'a str>>,
    create_revisions: Vec<i64>,
    prev_revisions: Vec<Option<i64>>,
    deleted: Vec<bool>,
    superseded: Vec<Option<i64>>,
    supersede_rows: Vec<i64>,
    supersede_with: Vec<i64>,
    base: i64,
    last: i64,
    committed_ms: i64,
    writer: &'a str,
    lock_class: i32,
}

impl<'a> WriteArgs<'a> {
    /// `None` when the plan has no rows: there is nothing to write.
    fn of(writer: &'a Writer, base: u64, plan: &'a Plan) -> Option<Self> {
        let last = plan.last_revision()?;
        let rows = &plan.rows;
        Some(Self {
            revisions: rows.iter().map(|r| r.revision as i64).collect(),
            clusters: rows.iter().map(|r| r.key.cluster.as_str()).collect(),
            resources: rows.iter().map(|r| r.key.resource.as_str()).collect(),
            namespaces: rows.iter().map(|r| r.key.namespace.as_str()).collect(),
            names: rows.iter().map(|r| r.key.name.as_str()).collect(),
            keys: rows.iter().map(|r| encoded_key(&r.key)).collect(),
            values: rows.iter().map(|r| r.value.as_ref()).collect(),
            labels: rows.iter().map(|r| r.labels_json.as_str()).collect(),
            uids: rows.iter().map(|r| r.uid.as_deref()).collect(),
            create_revisions: rows.iter().map(|r| r.create_revision as i64).collect(),
            prev_revisions: rows.iter().map(|r| r.prev_revision.map(|p| p as i64)).collect(),
            deleted: rows.iter().map(|r| r.deleted).collect(),
            superseded: rows.iter().map(|r| r.superseded.map(|s| s as i64)).collect(),
            supersede_rows: plan.supersede.iter().map(|(r, _)| *r as i64).collect(),
            supersede_with: plan.supersede.iter().map(|(_, s)| *s as i64).collect(),
            base: base as i64,
            last: last as i64,
            committed_ms: now_ms(),
            writer: &writer.name,
            lock_class: writer.lock_class,
        })
    }

    /// For tokio-postgres, in [`WRITE`]'s order.
    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 22] {
        [
            &self.revisions,
            &self.clusters,
            &self.resources,
            &self.namespaces,
            &self.names,
            &self.keys,
            &self.values,
            &self.labels,
            &self.uids,
            &self.create_revisions,
            &self.prev_revisions,
            &self.deleted,
            &self.superseded,
            &self.supersede_rows,
            &self.supersede_with,
            &self.base,
            &self.last,
            &self.committed_ms,
            &CHANNEL,
            &self.writer,
            &self.lock_class,
            &WRITTEN_BEHIND,
        ]
    }

    /// For sqlx, in [`WRITE`]'s order.
    fn bind<'q, O>(
        self,
        query: sqlx::query::QueryScalar<'q, Db, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryScalar<'q, Db, O, sqlx::postgres::PgArguments>
    where
        'a: 'q,
    {
        query
            .bind(self.revisions)
            .bind(self.clusters)
            .bind(self.resources)
            .bind(self.namespaces)
            .bind(self.names)
            .bind(self.keys)
            .bind(self.values)
            .bind(self.labels)
            .bind(self.uids)
            .bind(self.create_revisions)
            .bind(self.prev_revisions)
            .bind(self.deleted)
            .bind(self.superseded)
            .bind(self.supersede_rows)
            .bind(self.supersede_with)
            .bind(self.base)
            .bind(self.last)
            .bind(self.committed_ms)
            .bind(CHANNEL)
            .bind(self.writer)
            .bind(self.lock_class)
            .bind(WRITTEN_BEHIND)
    }
}

#[async_trait]
impl Backend for Postgres {
    async fn lookup(&self, mutations: &[Mutation]) -> Result<(u64, HashMap<ObjectKey, LiveRow>)> {
        Self::lookup_with(&self.pool, mutations).await
    }

    /// One autocommit statement on the batch connection, sent as soon as this future is first
    /// polled; the batch before it, if any, is already ahead of it on the same connection.
    /// The unchecked creates' keys are checked by the unique `kv_live` index as the rows go in.
    async fn write(&self, base: u64, plan: &Plan, _unchecked: &[ObjectKey]) -> Result<bool> {
        let Some(args) = WriteArgs::of(&self.writer, base, plan) else {
            return Ok(true);
        };
        match self.batches.write(&args.params()).await {
            Ok(written) => Ok(written),
            Err(err) if err.code().is_some_and(|code| NOT_WRITTEN.contains(&code.code())) => {
                debug!("batch not written; planning it again: {err}");
                Ok(false)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// A batch of creates is queued on the batch connection behind the one being written.
    fn pipeline_depth(&self) -> usize {
        PIPELINE_DEPTH
    }

    /// Under the lock only a deadlock can keep the batch from being written: with a batch of
    /// another process (of an older build) that inserted one of its keys behind its predecessor
    /// and waits for the lock.
    /// Whichever of the two PostgreSQL rolled back is written again.
    async fn commit_locked(&self, mutations: &[Mutation]) -> Result<Plan> {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT revision FROM meta WHERE id = 1 FOR UPDATE")
                .execute(&mut *tx)
                .await?;
            let (base, live) = Self::lookup_with(&mut *tx, mutations).await?;
            let plan = plan_batch(base, &live, mutations);
            if Self::write_with(&mut *tx, &self.writer, base, &plan).await? {
                tx.commit().await?;
                return Ok(plan);
            }
            tx.rollback().await?;
        }
        Err(Error::Corrupt(format!(
            "a batch written under the shard lock failed {ATTEMPTS} times"
        )))
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<StoredObject>> {
        let row = sqlx::query("SELECT revision, value FROM kv WHERE key = $1 AND superseded IS NULL")
            .bind(encoded_key(key))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| rows::object(&row, key)).transpose()
    }

    async fn revisions(&self) -> Result<Revisions> {
        rows::revisions(sqlx::query_as(rows::REVISIONS).fetch_one(&self.pool).await?)
    }

    async fn list(
        &self,
        scope: &Scope,
        selector: &LabelSelector,
        at: u64,
        after: Option<&ListCursor>,
        limit: Option<u64>,
    ) -> Result<Vec<StoredObject>> {
        // The versions live at `at`: those still live (through `kv_live`, in key order) and those
        // superseded since (through `kv_superseded`; few, unless `at` is old). One statement, so one
        // snapshot; each part is ordered and limited on its own and the two are merged here.
        let mut query: QueryBuilder<Db> = QueryBuilder::new(
            "(SELECT cluster, namespace, name, revision, value FROM kv WHERE superseded IS NULL AND NOT deleted",
        );
        push_list_conditions(&mut query, ListPart::Live, scope, selector, at, after, limit);
        query
            .push(
                ") UNION ALL (SELECT cluster, namespace, name, revision, value FROM kv WHERE NOT deleted AND superseded > ",
            )
            .push_bind(at as i64);
        push_list_conditions(
            &mut query,
            ListPart::SupersededSince,
            scope,
            selector,
            at,
            after,
            limit,
        );
        query.push(")");
        let objects = query
            .build()
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|row| rows::listed(&row, &scope.resource))
            .collect::<Result<Vec<_>>>()?;
        Ok(rows::merge_list_parts(objects, limit))
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
            push_scope(&mut query, scope);
        }
        query.push(" ORDER BY revision LIMIT ").push_bind(limit as i64);
        query
            .build()
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|row| rows::history(&row))
            .collect()
    }

    async fn compact(&self, policy: CompactionPolicy) -> Result<Compaction> {
        let revisions = self.revisions().await?;
        let cutoff = now_ms() - policy.window_ms.min(i64::MAX as u64) as i64;
        let aged: Option<i64> =
            sqlx::query_scalar("SELECT max(last_revision) FROM batches WHERE committed_at_ms <= $1")
                .bind(cutoff)
                .fetch_one(&self.pool)
                .await?;
        let target = to_u64(aged.unwrap_or(0))?.min(revisions.current.saturating_sub(policy.min_revisions));
        if target <= revisions.compacted {
            return Ok(Compaction {
                compacted_revision: revisions.compacted,
                removed_rows: 0,
            });
        }
        // Publish the new floor first: from now on nobody relies on rows below it.
        sqlx::query("UPDATE meta SET compacted = greatest(compacted, $1) WHERE id = 1")
            .bind(target as i64)
            .execute(&self.pool)
            .await?;
        let mut removed = 0u64;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM kv WHERE revision IN \
                 (SELECT revision FROM kv WHERE superseded IS NOT NULL AND superseded <= $1 ORDER BY superseded LIMIT $2)",
            )
            .bind(target as i64)
            .bind(policy.batch_rows as i64)
            .execute(&self.pool)
            .await?
            .rows_affected();
            removed += deleted;
            if deleted < policy.batch_rows {
                break;
            }
            tokio::task::yield_now().await;
        }
        sqlx::query("DELETE FROM batches WHERE last_revision < $1")
            .bind(target as i64)
            .execute(&self.pool)
            .await?;
        Ok(Compaction {
            compacted_revision: target,
            removed_rows: removed,
        })
    }

    async fn wait_for_remote_commit(&self) -> Option<u64> {
        let mut listener = self.listener.lock().await;
        if listener.is_none() {
            match PgListener::connect_with(&self.pool).await {
                Ok(mut fresh) => match fresh.listen(CHANNEL).await {
                    Ok(()) => *listener = Some(fresh),
                    Err(err) => debug!(error = %err, "cannot LISTEN; retrying"),
                },
                Err(err) => debug!(error = %err, "cannot connect the commit listener; retrying"),
            }
            if listener.is_none() {
                drop(listener);
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Some(u64::MAX);
            }
            // Commits may have happened while nobody listened.
            return Some(u64::MAX);
        }
        let active = listener.as_mut()?;
        // A notification reads "<revision> <writer>"; this process publishes its own commits itself.
        let received = loop {
            match active.try_recv().await {
                Ok(Some(notification)) => {
                    let mut words = notification.payload().split(' ');
                    let revision = words.next().and_then(|r| r.parse().ok());
                    if words.next() != Some(self.writer.name.as_str()) {
                        break Ok(Some(revision.unwrap_or(u64::MAX)));
                    }
                }
                other => break other.map(|_| None),
            }
        };
        match received {
            Ok(Some(revision)) => Some(revision),
            // The connection dropped; it reconnects on the next call. Catch up in case we missed some.
            Ok(None) => Some(u64::MAX),
            Err(err) => {
                debug!(error = %err, "commit listener failed; reconnecting");
                *listener = None;
                drop(listener);
                tokio::time::sleep(Duration::from_millis(200)).await;
                Some(u64::MAX)
            }
        }
    }
}
