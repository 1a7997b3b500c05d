//! Coxswain's storage engine: a revisioned object store with Kubernetes semantics (resourceVersion
//! order, watches without gaps or repeats, 409 on stale writes, 410 after compaction), over SQLite
//! (embedded default) or PostgreSQL. The [`Store`] trait is the whole contract; [`SqlStore`] is its one
//! implementation, generic over the backend. The API server never sees SQL.

mod backend;
mod batch_connection;
mod continuation;
mod error;
mod key;
mod migrate;
mod object;
mod postgres;
mod rows;
mod selector;
mod sequencer;
mod sql_store;
mod sqlite;
mod watch;

#[cfg(feature = "testing")]
pub mod testing;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub use error::{Error, Result};
pub use key::{ClusterScope, ObjectKey, Scope};
pub use object::{Labels, Preconditions, StoredObject};
pub use selector::{LabelSelector, Operator, Requirement};
pub use sql_store::{SqlStore, StoreOptions, guaranteed_update};

/// Which state a list reads (the `resourceVersion` + `resourceVersionMatch` of a Kubernetes list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadRevision {
    /// The latest committed state (no resourceVersion): a consistent read.
    #[default]
    Latest,
    /// Any state (`resourceVersion=0`); this store serves the latest.
    Any,
    /// A state at least as new as the revision; waits briefly if it is ahead of this store.
    NotOlderThan(u64),
    /// Exactly the state at the revision; `Expired` once it has been compacted.
    Exact(u64),
}

/// A list of one resource.
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub scope: Scope,
    pub selector: LabelSelector,
    /// Page size; `None` returns everything.
    pub limit: Option<u64>,
    /// A token from a previous page: the list continues on that page's snapshot revision.
    pub continue_token: Option<String>,
    pub revision: ReadRevision,
}

impl ListRequest {
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            selector: LabelSelector::everything(),
            limit: None,
            continue_token: None,
            revision: ReadRevision::Latest,
        }
    }
}

/// One page of a list, read at `revision`.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<StoredObject>,
    /// The snapshot revision the page was read at (the list's resourceVersion).
    pub revision: u64,
    /// Present when more items follow.
    pub continue_token: Option<String>,
}

/// A watch on one resource.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub scope: Scope,
    /// Deliver every change after this revision; `None` starts at the current revision.
    pub after_revision: Option<u64>,
    /// When set, a [`WatchEvent::Progress`] is sent at this interval whenever the store has moved on
    /// without a change in the watched scope.
    pub progress_interval: Option<Duration>,
}

/// What a watch delivers, in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Added(StoredObject),
    Modified(StoredObject),
    /// The object's last state, with the revision of its deletion.
    Deleted(StoredObject),
    /// Everything up to `revision` has been delivered.
    Progress {
        revision: u64,
    },
}

impl WatchEvent {
    pub fn revision(&self) -> u64 {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o.revision,
            WatchEvent::Progress { revision } => *revision,
        }
    }

    pub fn object(&self) -> Option<&StoredObject> {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => Some(o),
            WatchEvent::Progress { .. } => None,
        }
    }
}

/// The events of a watch. It ends after an `Err` (e.g. [`Error::Expired`]: relist and watch again).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// What compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compaction {
    /// Watches and lists from before this revision now get `Expired`.
    pub compacted_revision: u64,
    /// Superseded rows removed by this pass.
    pub removed_rows: u64,
}

/// The storage contract (compare k8s.io/apiserver `pkg/storage/interfaces.go`). Values are JSON
/// objects; the store owns `metadata.resourceVersion`, which always equals the object's revision.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores a new object. `AlreadyExists` if the key is live.
    async fn create(&self, key: &ObjectKey, value: Bytes) -> Result<StoredObject>;

    /// The live object. `NotFound` if there is none.
    async fn get(&self, key: &ObjectKey) -> Result<StoredObject>;

    /// One page of objects in key order (namespace, name).
    async fn list(&self, request: &ListRequest) -> Result<ListPage>;

    /// Replaces the live object if `preconditions` hold (`Conflict` otherwise). Use
    /// [`guaranteed_update`] for read–modify–write.
    async fn update(
        &self,
        key: &ObjectKey,
        value: Bytes,
        preconditions: &Preconditions,
    ) -> Result<StoredObject>;

    /// Deletes the live object if `preconditions` hold; returns its last state.
    async fn delete(&self, key: &ObjectKey, preconditions: &Preconditions) -> Result<StoredObject>;

    /// Every change in the scope after a revision, in order, without gaps or repeats.
    async fn watch(&self, request: WatchRequest) -> Result<WatchStream>;

    /// The newest committed revision.
    async fn current_revision(&self) -> Result<u64>;

    /// Drops history outside the retention window now (it also runs periodically).
    async fn compact(&self) -> Result<Compaction>;
}
