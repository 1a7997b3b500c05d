//! The storage error type: every way a store operation can fail, typed so that the API server can map
//! each one to exactly one `metav1.Status` (404, 409, 410, 504, 500 …) without parsing messages.

use std::sync::Arc;

use crate::key::ObjectKey;

/// Result of a storage operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The key has no live object.
    #[error("{key} not found")]
    NotFound { key: ObjectKey },

    /// A create found a live object under the key.
    #[error("{key} already exists")]
    AlreadyExists { key: ObjectKey },

    /// A precondition (resourceVersion or uid) did not match the live object.
    #[error("{key}: precondition failed: {detail}")]
    Conflict { key: ObjectKey, detail: String },

    /// The requested revision is older than the compacted revision: its history is gone.
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Expired { requested: u64, compacted: u64 },

    /// The requested revision is newer than anything committed, even after waiting.
    #[error("revision {requested} is newer than the current revision {current}")]
    TooLargeRevision { requested: u64, current: u64 },

    /// A key part is empty or holds a character the store refuses (NUL).
    #[error("invalid key: {0}")]
    InvalidKey(String),

    /// The value is not a JSON object with an object-valued `metadata` and string labels.
    #[error("invalid object: {0}")]
    InvalidValue(String),

    /// A continue token that this store did not produce, or that was mangled.
    #[error("invalid continue token: {0}")]
    InvalidContinue(String),

    /// A label selector that does not parse.
    #[error("invalid label selector: {0}")]
    InvalidSelector(String),

    /// A stored row that cannot be decoded: the database was modified outside Coxswain.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),

    /// The database refused or failed the operation (connection lost, disk full, …); the write was
    /// not acknowledged and may be retried.
    #[error("storage backend error: {0}")]
    Backend(#[source] Arc<dyn std::error::Error + Send + Sync>),

    /// The store cannot be opened; the message names the cause and the fix.
    #[error("{0}")]
    Open(String),

    /// The store has shut down.
    #[error("the store is closed")]
    Closed,
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        Error::Backend(Arc::new(err))
    }
}

/// From the connection PostgreSQL batches are written on.
impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        Error::Backend(Arc::new(err))
    }
}

impl Error {
    /// True for errors that a retry may cure (the backend was unreachable or busy).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Backend(_) | Error::Closed)
    }
}
