//! The narrow interface between the generic [`crate::SqlStore`] and one SQL database. A backend knows
//! SQL and its database's locking; it knows nothing of batching, watches or continue tokens.

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;

use crate::WatchEvent;
use crate::error::Result;
use crate::key::{ObjectKey, Scope};
use crate::object::StoredObject;
use crate::selector::LabelSelector;
use crate::sequencer::{Mutation, Plan};

/// The shard's counters, read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Revisions {
    pub current: u64,
    pub compacted: u64,
}

/// The live version of a key as the sequencer needs it to check preconditions.
#[derive(Debug, Clone)]
pub(crate) struct LiveRow {
    pub revision: u64,
    pub create_revision: u64,
    pub uid: Option<String>,
    pub value: Bytes,
    pub labels_json: String,
}

/// One row of history, as read back for watches.
#[derive(Debug, Clone)]
pub(crate) struct HistoryRow {
    pub revision: u64,
    pub key: ObjectKey,
    pub value: Bytes,
    pub created: bool,
    pub deleted: bool,
}

impl HistoryRow {
    pub(crate) fn into_event(self) -> WatchEvent {
        let object = StoredObject {
            key: self.key,
            revision: self.revision,
            value: self.value,
        };
        if self.deleted {
            WatchEvent::Deleted(object)
        } else if self.created {
            WatchEvent::Added(object)
        } else {
            WatchEvent::Modified(object)
        }
    }
}

/// Where a list page starts: strictly after this key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListCursor {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
}

impl ListCursor {
    /// Appends ` AND (cluster, namespace, name) > (…)`: the rows after this cursor, in list order.
    pub(crate) fn push_condition<'args, DB>(&self, query: &mut sqlx::QueryBuilder<'args, DB>)
    where
        DB: sqlx::Database,
        String: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
    {
        query
            .push(" AND (cluster, namespace, name) > (")
            .push_bind(self.cluster.clone());
        query
            .push(", ")
            .push_bind(self.namespace.clone())
            .push(", ")
            .push_bind(self.name.clone())
            .push(")");
    }
}

/// How far history may be dropped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CompactionPolicy {
    pub window_ms: u64,
    pub min_revisions: u64,
    pub batch_rows: u64,
}

#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    /// The current revision and the live rows of the mutated keys, read in one snapshot without
    /// taking the write lock.
    async fn lookup(&self, mutations: &[Mutation]) -> Result<(u64, HashMap<ObjectKey, LiveRow>)>;

    /// Writes `plan` if and only if the shard is at revision `base` when it commits and none of the
    /// `unchecked` keys is live; `Ok(false)` (nothing written) otherwise. Durable when it returns.
    /// Writes are carried out in the order their futures are first polled, so `base` may be the
    /// last revision of a batch whose write has not returned yet.
    async fn write(&self, base: u64, plan: &Plan, unchecked: &[ObjectKey]) -> Result<bool>;

    /// How many batches may be written at once: above one, a batch of creates may be queued
    /// behind the one before it.
    fn pipeline_depth(&self) -> usize {
        1
    }

    /// Takes the shard's write lock, reads the live rows, plans and writes under it: the fallback
    /// when other processes keep writing first.
    async fn commit_locked(&self, mutations: &[Mutation]) -> Result<Plan>;

    /// The live object under `key`.
    async fn get(&self, key: &ObjectKey) -> Result<Option<StoredObject>>;

    async fn revisions(&self) -> Result<Revisions>;

    /// Objects of `scope` live at revision `at`, matching `selector`, in key order after `after`.
    async fn list(
        &self,
        scope: &Scope,
        selector: &LabelSelector,
        at: u64,
        after: Option<&ListCursor>,
        limit: Option<u64>,
    ) -> Result<Vec<StoredObject>>;

    /// History rows with `after < revision <= up_to`, in revision order, at most `limit`; only rows in
    /// `scope` when given.
    async fn history(
        &self,
        scope: Option<&Scope>,
        after: u64,
        up_to: u64,
        limit: u64,
    ) -> Result<Vec<HistoryRow>>;

    /// One compaction pass under `policy`.
    async fn compact(&self, policy: CompactionPolicy) -> Result<crate::Compaction>;

    /// Waits until another process may have committed (PostgreSQL NOTIFY) and returns the revision it
    /// announced (`u64::MAX` when unknown); `None` when the backend
    /// has no such signal, in which case the store relies on its own commits and polling.
    async fn wait_for_remote_commit(&self) -> Option<u64>;
}
