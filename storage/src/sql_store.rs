//! [`SqlStore`]: the [`Store`] over a SQL backend. Writes go through the sequencer task, reads go
//! straight to the database, watches through the hub. Also `guaranteed_update`, the read–modify–write
//! loop every API write uses.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::backend::{Backend, CompactionPolicy, ListCursor};
use crate::error::{Error, Result};
use crate::key::{ClusterScope, ObjectKey};
use crate::object::{Preconditions, PreparedValue, StoredObject, same_ignoring_revision};
use crate::postgres::Postgres;
use crate::sequencer::{self, Mutation, Request};
use crate::sqlite::Sqlite;
use crate::watch::Hub;
use crate::{
    Compaction, ListPage, ListRequest, ReadRevision, Store, WatchRequest, WatchStream, continuation,
};

/// Tunables of a store; the defaults are what `coxswain server` runs with.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// History younger than this is kept (Kubernetes: 5 minutes).
    pub compaction_window: Duration,
    /// At least this many revisions of history are kept.
    pub compaction_min_revisions: u64,
    /// How often compaction runs in the background; `None` only when [`Store::compact`] is called.
    pub compaction_interval: Option<Duration>,
    /// Rows deleted per compaction transaction.
    pub compaction_batch_rows: u64,
    /// How long a read or watch at a revision ahead of this store waits for it to arrive.
    pub revision_wait: Duration,
    /// Events a watcher may fall behind the live broadcast before it reads history instead.
    pub watch_broadcast_capacity: usize,
    /// Connection pool size for PostgreSQL: reads, lookups, compaction and the commit listener. The
    /// batch writes have one more connection of their own.
    pub postgres_max_connections: u32,
    /// How long a PostgreSQL operation waits for a connection before failing (e.g. while the server
    /// is down).
    pub postgres_acquire_timeout: Duration,
    /// How many revisions SQLite's label index may trail the rows by before a batch brings it up to
    /// date in bulk (selectors read the trailing rows' own labels).
    pub sqlite_index_lag: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            compaction_window: Duration::from_secs(300),
            compaction_min_revisions: 1000,
            compaction_interval: Some(Duration::from_secs(60)),
            compaction_batch_rows: 1000,
            revision_wait: Duration::from_secs(3),
            watch_broadcast_capacity: 16_384,
            postgres_max_connections: 16,
            postgres_acquire_timeout: Duration::from_secs(10),
            sqlite_index_lag: 256,
        }
    }
}

/// The store over SQLite or PostgreSQL. Cheap to clone; the last clone dropped stops its tasks.
#[derive(Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    backend_name: &'static str,
    requests: mpsc::Sender<Request>,
    hub: Hub,
    options: StoreOptions,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.inner.backend_name)
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Opens the store named by a `--storage` value: `sqlite` (a file in `data_dir`) or a
    /// `postgres://` / `postgresql://` URL.
    pub async fn open(storage: &str, data_dir: &Path, options: StoreOptions) -> Result<Self> {
        if storage == "sqlite" {
            Self::open_sqlite(&data_dir.join("coxswain.db"), options).await
        } else if storage.starts_with("postgres://") || storage.starts_with("postgresql://") {
            Self::open_postgres(storage, options).await
        } else {
            Err(Error::Open(format!(
                "unknown storage {storage:?}: use `sqlite` or a postgres:// URL"
            )))
        }
    }

    pub async fn open_sqlite(path: &Path, options: StoreOptions) -> Result<Self> {
        let backend = Sqlite::open(path, options.sqlite_index_lag).await?;
        info!(path = %backend.path().display(), "opened SQLite store");
        Self::start(Arc::new(backend), "sqlite", options).await
    }

    pub async fn open_postgres(url: &str, options: StoreOptions) -> Result<Self> {
        let backend = Postgres::open(
            url,
            options.postgres_max_connections,
            options.postgres_acquire_timeout,
        )
        .await?;
        info!("opened PostgreSQL store");
        Self::start(Arc::new(backend), "postgres", options).await
    }

    async fn start(
        backend: Arc<dyn Backend>,
        backend_name: &'static str,
        options: StoreOptions,
    ) -> Result<Self> {
        let revisions = backend.revisions().await?;
        let (hub, committed) = Hub::start(
            backend.clone(),
            revisions.current,
            options.watch_broadcast_capacity,
        );
        let (requests, queue) = mpsc::channel(sequencer::MAX_BATCH * 8);
        tokio::spawn(sequencer::run(backend.clone(), queue, committed));
        let inner = Arc::new(Inner {
            backend,
            backend_name,
            requests,
            hub,
            options,
        });
        if let Some(every) = inner.options.compaction_interval {
            tokio::spawn(compact_periodically(Arc::downgrade(&inner), every));
        }
        Ok(Self { inner })
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend_name
    }

    async fn submit(&self, mutation: Mutation) -> Result<StoredObject> {
        let (reply, outcome) = oneshot::channel();
        self.inner
            .requests
            .send(Request { mutation, reply })
            .await
            .map_err(|_| Error::Closed)?;
        outcome.await.map_err(|_| Error::Closed)?
    }

    /// The revision a read should be served at, waiting briefly for one this store has not seen.
    async fn resolve(&self, revision: ReadRevision) -> Result<u64> {
        let current = self.inner.backend.revisions().await?.current;
        match revision {
            ReadRevision::Latest | ReadRevision::Any => Ok(current),
            ReadRevision::NotOlderThan(wanted) => Ok(self.wait_for(wanted, current).await?.max(current)),
            ReadRevision::Exact(wanted) => {
                self.wait_for(wanted, current).await?;
                Ok(wanted)
            }
        }
    }

    /// Waits until `wanted` is committed; returns the current revision then.
    async fn wait_for(&self, wanted: u64, current: u64) -> Result<u64> {
        if wanted <= current {
            return Ok(current);
        }
        self.inner
            .hub
            .wait_published(wanted, self.inner.options.revision_wait)
            .await;
        let current = self.inner.backend.revisions().await?.current;
        if wanted > current {
            return Err(Error::TooLargeRevision {
                requested: wanted,
                current,
            });
        }
        Ok(current)
    }
}

async fn compact_periodically(inner: Weak<Inner>, every: Duration) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        match inner.backend.compact(policy(&inner.options)).await {
            Ok(done) if done.removed_rows > 0 => {
                debug!(
                    compacted = done.compacted_revision,
                    removed = done.removed_rows,
                    "compacted history"
                )
            }
            Ok(_) => {}
            Err(err) => warn!(error = %err, "compaction failed; will retry"),
        }
    }
}

fn policy(options: &StoreOptions) -> CompactionPolicy {
    CompactionPolicy {
        window_ms: options.compaction_window.as_millis().min(u64::MAX as u128) as u64,
        min_revisions: options.compaction_min_revisions,
        batch_rows: options.compaction_batch_rows.max(1),
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn create(&self, key: &ObjectKey, value: Bytes) -> Result<StoredObject> {
        key.validate()?;
        let value = PreparedValue::parse(&value)?;
        self.submit(Mutation::Create {
            key: key.clone(),
            value,
        })
        .await
    }

    async fn get(&self, key: &ObjectKey) -> Result<StoredObject> {
        key.validate()?;
        self.inner
            .backend
            .get(key)
            .await?
            .ok_or_else(|| Error::NotFound { key: key.clone() })
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage> {
        request.scope.validate()?;
        let (at, after) = match &request.continue_token {
            Some(token) => {
                let (revision, cursor) = continuation::decode(token)?;
                (revision, Some(cursor))
            }
            None => (self.resolve(request.revision).await?, None),
        };
        let check = |revisions: crate::backend::Revisions| {
            if at < revisions.compacted {
                return Err(Error::Expired {
                    requested: at,
                    compacted: revisions.compacted,
                });
            }
            if at > revisions.current {
                return Err(Error::TooLargeRevision {
                    requested: at,
                    current: revisions.current,
                });
            }
            Ok(())
        };
        check(self.inner.backend.revisions().await?)?;
        let limit = request.limit.filter(|limit| *limit > 0);
        let mut items = self
            .inner
            .backend
            .list(
                &request.scope,
                &request.selector,
                at,
                after.as_ref(),
                limit.map(|l| l.saturating_add(1)),
            )
            .await?;
        // Compaction that passed `at` while we read may have removed rows we needed.
        check(self.inner.backend.revisions().await?)?;
        let mut continue_token = None;
        if let Some(limit) = limit
            && items.len() as u64 > limit
        {
            items.truncate(limit as usize);
            if let Some(last) = items.last() {
                let cursor = ListCursor {
                    cluster: last.key.cluster.clone(),
                    namespace: last.key.namespace.clone(),
                    name: last.key.name.clone(),
                };
                continue_token = Some(continuation::encode(at, &cursor));
            }
        }
        Ok(ListPage {
            items,
            revision: at,
            continue_token,
        })
    }

    async fn update(
        &self,
        key: &ObjectKey,
        value: Bytes,
        preconditions: &Preconditions,
    ) -> Result<StoredObject> {
        key.validate()?;
        let value = PreparedValue::parse(&value)?;
        self.submit(Mutation::Update {
            key: key.clone(),
            value,
            preconditions: preconditions.clone(),
        })
        .await
    }

    async fn delete(&self, key: &ObjectKey, preconditions: &Preconditions) -> Result<StoredObject> {
        key.validate()?;
        self.submit(Mutation::Delete {
            key: key.clone(),
            preconditions: preconditions.clone(),
        })
        .await
    }

    async fn watch(&self, request: WatchRequest) -> Result<WatchStream> {
        request.scope.validate()?;
        if let ClusterScope::One(cluster) = &request.scope.cluster
            && cluster.is_empty()
        {
            return Err(Error::InvalidKey("cluster must not be empty".into()));
        }
        let revisions = self.inner.backend.revisions().await?;
        let from = match request.after_revision {
            None => revisions.current,
            Some(from) => {
                if from < revisions.compacted {
                    return Err(Error::Expired {
                        requested: from,
                        compacted: revisions.compacted,
                    });
                }
                self.wait_for(from, revisions.current).await?;
                from
            }
        };
        Ok(self.inner.hub.watch(self.inner.backend.clone(), request, from))
    }

    async fn current_revision(&self) -> Result<u64> {
        Ok(self.inner.backend.revisions().await?.current)
    }

    async fn compact(&self) -> Result<Compaction> {
        self.inner.backend.compact(policy(&self.inner.options)).await
    }
}

/// Read–modify–write under optimistic concurrency (compare `GuaranteedUpdate` in k8s.io/apiserver):
/// reads the live object, checks the caller's `preconditions`, applies `update`, and writes with the
/// read revision as precondition, retrying on conflict. An update that changes nothing but the
/// resourceVersion writes nothing and returns the live object.
pub async fn guaranteed_update<S, E, F>(
    store: &S,
    key: &ObjectKey,
    preconditions: &Preconditions,
    mut update: F,
) -> std::result::Result<StoredObject, E>
where
    S: Store + ?Sized,
    E: From<Error>,
    F: FnMut(&StoredObject) -> std::result::Result<Bytes, E> + Send,
{
    loop {
        let current = store.get(key).await?;
        let uid = if preconditions.uid.is_some() {
            current
                .json()?
                .pointer("/metadata/uid")
                .and_then(|u| u.as_str())
                .map(str::to_string)
        } else {
            None
        };
        preconditions.check(key, current.revision, uid.as_deref())?;
        let next = update(&current)?;
        let unchanged = match (current.json(), serde_json::from_slice(&next)) {
            (Ok(old), Ok(new)) => same_ignoring_revision(&old, &new),
            _ => false,
        };
        if unchanged {
            return Ok(current);
        }
        let expected = Preconditions {
            resource_version: Some(current.revision),
            uid: preconditions.uid.clone(),
        };
        match store.update(key, next, &expected).await {
            Err(Error::Conflict { .. }) => continue,
            other => return Ok(other?),
        }
    }
}
