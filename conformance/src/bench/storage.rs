//! `coxswain bench storage`: N concurrent writers create small (~300-byte) objects through the
//! [`Store`]; in the same run, the same rows are inserted into the same database with plain batched
//! INSERTs, which is the ceiling the store's write path is compared against.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use coxswain_storage::{ObjectKey, SqlStore, Store, StoreOptions};
use serde::Serialize;
use sqlx::{Connection, QueryBuilder};

/// Rows per transaction of the ceiling measurement.
const CEILING_BATCH: usize = 100;
/// The labels column of the ceiling's rows.
const LABELS: &str = r#"{"app":"bench"}"#;

/// Creates `bench_ceiling` with `$create` on `$conn` (a `$db` connection), inserts `$objects` into
/// it `CEILING_BATCH` rows per transaction, drops it, and evaluates to rows per second. A macro
/// because the two drivers' bind types differ (`$labels`: text for SQLite, jsonb for PostgreSQL).
macro_rules! timed_inserts {
    ($conn:ident, $db:ty, $create:expr, $objects:expr, $labels:expr) => {{
        sqlx::query("DROP TABLE IF EXISTS bench_ceiling")
            .execute(&mut $conn)
            .await?;
        sqlx::query($create).execute(&mut $conn).await?;
        let started = Instant::now();
        for (chunk_index, chunk) in $objects.chunks(CEILING_BATCH).enumerate() {
            let mut tx = $conn.begin().await?;
            let mut query: QueryBuilder<$db> = QueryBuilder::new(
                "INSERT INTO bench_ceiling (revision, cluster, resource, namespace, name, value, labels) ",
            );
            query.push_values(chunk.iter().enumerate(), |mut row, (i, (key, value))| {
                row.push_bind((chunk_index * CEILING_BATCH + i) as i64)
                    .push_bind(key.cluster.clone())
                    .push_bind(key.resource.clone())
                    .push_bind(key.namespace.clone())
                    .push_bind(key.name.clone())
                    .push_bind(value.to_vec())
                    .push_bind($labels);
            });
            query.build().execute(&mut *tx).await?;
            tx.commit().await?;
        }
        let rate = $objects.len() as f64 / started.elapsed().as_secs_f64();
        sqlx::query("DROP TABLE bench_ceiling")
            .execute(&mut $conn)
            .await?;
        rate
    }};
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct StorageBench {
    /// `sqlite` or a `postgres://` URL.
    pub storage: String,
    /// Where the SQLite file goes; a fresh temp dir when `None`.
    pub data_dir: Option<PathBuf>,
    pub concurrency: usize,
    pub objects: usize,
}

/// The result line.
#[derive(Debug, Clone, Serialize)]
pub struct StorageBenchReport {
    pub backend: String,
    pub concurrency: usize,
    pub creates_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub ceiling_inserts_per_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Storage(#[from] coxswain_storage::Error),
    #[error("ceiling measurement failed: {0}")]
    Ceiling(#[from] sqlx::Error),
    #[error("cannot create a temp dir: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("a writer task failed: {0}")]
    Writer(#[from] tokio::task::JoinError),
    #[error("--concurrency and --objects must be positive")]
    Arguments,
}

/// One benchmark object: a ConfigMap of about 300 bytes.
fn object(run: &str, index: usize) -> (ObjectKey, Bytes) {
    let name = format!("bench-{index:08}");
    let namespace = format!("ns-{}", index % 16);
    let value = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("{run}-{index:012}"),
            "labels": { "app": "bench", "shard": (index % 10).to_string() },
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "data": { "payload": "x".repeat(96) },
    });
    let key = ObjectKey::new(format!("bench-{run}"), "core/configmaps", namespace, name);
    (key, Bytes::from(serde_json::to_vec(&value).unwrap_or_default()))
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

impl StorageBench {
    pub async fn run(&self) -> Result<StorageBenchReport, BenchError> {
        if self.concurrency == 0 || self.objects == 0 {
            return Err(BenchError::Arguments);
        }
        let temp = match &self.data_dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().map_err(BenchError::TempDir)?),
        };
        let data_dir: &Path = match (&self.data_dir, &temp) {
            (Some(dir), _) => dir,
            (None, Some(temp)) => temp.path(),
            (None, None) => return Err(BenchError::Arguments),
        };
        let options = StoreOptions {
            compaction_interval: None,
            ..StoreOptions::default()
        };
        let store = SqlStore::open(&self.storage, data_dir, options).await?;
        let run = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        let objects: Arc<Vec<(ObjectKey, Bytes)>> =
            Arc::new((0..self.objects).map(|i| object(&run, i)).collect());

        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut writers = Vec::with_capacity(self.concurrency);
        for _ in 0..self.concurrency {
            let (store, objects, next) = (store.clone(), objects.clone(), next.clone());
            writers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some((key, value)) = objects.get(index) else {
                        break;
                    };
                    let begun = Instant::now();
                    store.create(key, value.clone()).await?;
                    latencies.push(begun.elapsed());
                }
                Ok::<_, coxswain_storage::Error>(latencies)
            }));
        }
        let mut latencies = Vec::with_capacity(self.objects);
        for writer in writers {
            latencies.extend(writer.await??);
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        let backend = store.backend_name().to_string();
        drop(store);

        let ceiling = self.ceiling(data_dir, &objects).await?;
        Ok(StorageBenchReport {
            backend,
            concurrency: self.concurrency,
            creates_per_s: (self.objects as f64 / elapsed.as_secs_f64()).round(),
            p50_ms: (percentile(&latencies, 0.50) * 1000.0).round() / 1000.0,
            p99_ms: (percentile(&latencies, 0.99) * 1000.0).round() / 1000.0,
            ceiling_inserts_per_s: ceiling.round(),
        })
    }

    /// Inserts the same rows into a scratch table of the same database, `CEILING_BATCH` per
    /// transaction, and returns rows per second.
    async fn ceiling(&self, data_dir: &Path, objects: &[(ObjectKey, Bytes)]) -> Result<f64, BenchError> {
        if self.storage == "sqlite" {
            let url = format!("sqlite://{}", data_dir.join("coxswain.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await?;
            sqlx::query("PRAGMA synchronous = FULL")
                .execute(&mut conn)
                .await?;
            let create = "CREATE TABLE bench_ceiling (revision INTEGER PRIMARY KEY, cluster TEXT NOT NULL, \
                 resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL, labels TEXT NOT NULL)";
            Ok(timed_inserts!(
                conn,
                sqlx::Sqlite,
                create,
                objects,
                LABELS.to_string()
            ))
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.storage).await?;
            let create = "CREATE TABLE bench_ceiling (revision bigint PRIMARY KEY, cluster text NOT NULL, \
                 resource text NOT NULL, namespace text NOT NULL, name text NOT NULL, value bytea NOT NULL, labels jsonb NOT NULL)";
            let labels: serde_json::Value = serde_json::from_str(LABELS).unwrap_or_default();
            Ok(timed_inserts!(
                conn,
                sqlx::Postgres,
                create,
                objects,
                labels.clone()
            ))
        }
    }
}
