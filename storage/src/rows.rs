//! Decoding the store's rows, shared by every backend: each query selects its columns in the order
//! these functions read them.

use std::collections::HashMap;

use bytes::Bytes;
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::backend::{HistoryRow, LiveRow, Revisions};
use crate::error::{Error, Result};
use crate::key::ObjectKey;
use crate::object::StoredObject;

/// A database row whose columns decode into the Rust types the store uses.
pub(crate) trait StoreRow: Row {
    fn decode<'r, T>(&'r self, index: usize) -> Result<T>
    where
        T: Decode<'r, Self::Database> + Type<Self::Database>;
}

impl<R: Row> StoreRow for R
where
    usize: ColumnIndex<R>,
{
    fn decode<'r, T>(&'r self, index: usize) -> Result<T>
    where
        T: Decode<'r, Self::Database> + Type<Self::Database>,
    {
        Ok(self.try_get(index)?)
    }
}

/// A revision column: never negative in a database Coxswain wrote.
pub(crate) fn to_u64(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::Corrupt(format!("negative revision {value}")))
}

/// The query for the shard's counters: the current and the compacted revision, in that order.
pub(crate) const REVISIONS: &str = "SELECT revision, compacted FROM meta WHERE id = 1";

/// The shard's counters from the row of [`REVISIONS`].
pub(crate) fn revisions((current, compacted): (i64, i64)) -> Result<Revisions> {
    Ok(Revisions {
        current: to_u64(current)?,
        compacted: to_u64(compacted)?,
    })
}

/// Milliseconds since the Unix epoch, for the commit-time log.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `revision, value` of the object under `key`.
pub(crate) fn object<R>(row: &R, key: &ObjectKey) -> Result<StoredObject>
where
    R: StoreRow,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(StoredObject {
        key: key.clone(),
        revision: to_u64(row.decode(0)?)?,
        value: Bytes::from(row.decode::<Vec<u8>>(1)?),
    })
}

/// `cluster, namespace, name, revision, value` of an object of `resource`.
pub(crate) fn listed<R>(row: &R, resource: &str) -> Result<StoredObject>
where
    R: StoreRow,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(StoredObject {
        key: ObjectKey::new(
            row.decode::<String>(0)?,
            resource,
            row.decode::<String>(1)?,
            row.decode::<String>(2)?,
        ),
        revision: to_u64(row.decode(3)?)?,
        value: Bytes::from(row.decode::<Vec<u8>>(4)?),
    })
}

/// Merges the parts of a list that were each ordered and limited on their own: bytewise key order
/// (as SQLite compares text and PostgreSQL's "C" collation orders it), then the limit.
pub(crate) fn merge_list_parts(mut objects: Vec<StoredObject>, limit: Option<u64>) -> Vec<StoredObject> {
    objects.sort_by(|a, b| {
        (&a.key.cluster, &a.key.namespace, &a.key.name).cmp(&(&b.key.cluster, &b.key.namespace, &b.key.name))
    });
    if let Some(limit) = limit {
        objects.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    objects
}

/// `revision, cluster, resource, namespace, name, value, created, deleted` of a history row.
pub(crate) fn history<R>(row: &R) -> Result<HistoryRow>
where
    R: StoreRow,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(HistoryRow {
        revision: to_u64(row.decode(0)?)?,
        key: ObjectKey::new(
            row.decode::<String>(1)?,
            row.decode::<String>(2)?,
            row.decode::<String>(3)?,
            row.decode::<String>(4)?,
        ),
        value: Bytes::from(row.decode::<Vec<u8>>(5)?),
        created: row.decode(6)?,
        deleted: row.decode(7)?,
    })
}

/// The result of a live-row lookup: every row carries the base revision, and a live row when the
/// key has one: `base, revision, cluster, resource, namespace, name, create_revision, uid, value,
/// labels`.
pub(crate) fn lookup<R>(rows: Vec<R>) -> Result<(u64, HashMap<ObjectKey, LiveRow>)>
where
    R: StoreRow,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut base = None;
    let mut live = HashMap::with_capacity(rows.len());
    for row in rows {
        base = Some(to_u64(row.decode(0)?)?);
        let Some(revision) = row.decode::<Option<i64>>(1)? else {
            continue;
        };
        let key = ObjectKey::new(
            row.decode::<String>(2)?,
            row.decode::<String>(3)?,
            row.decode::<String>(4)?,
            row.decode::<String>(5)?,
        );
        let row = LiveRow {
            revision: to_u64(revision)?,
            create_revision: to_u64(row.decode(6)?)?,
            uid: row.decode(7)?,
            value: Bytes::from(row.decode::<Vec<u8>>(8)?),
            labels_json: row.decode(9)?,
        };
        live.insert(key, row);
    }
    let base = base.ok_or_else(|| Error::Corrupt("the meta row is missing".into()))?;
    Ok((base, live))
}
