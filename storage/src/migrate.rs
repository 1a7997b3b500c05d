//! Embedded, versioned schema migrations. A database is migrated only when it is empty or was created
//! by Coxswain with an older schema; a foreign database or a newer schema is refused with a message
//! that names the cause and the fix.

use crate::error::{Error, Result};

/// One schema step.
#[derive(Debug)]
pub(crate) struct Migration {
    pub version: i64,
    pub sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../migrations/sqlite/0002_index_tail.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../migrations/sqlite/0003_index_scopes.sql"),
    },
];

pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../migrations/postgres/0002_live_key_index.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../migrations/postgres/0003_pipelined_write_one_column_key.sql"),
    },
];

/// What the database holds before migrating.
#[derive(Debug)]
pub(crate) enum Found {
    /// No tables at all.
    Empty,
    /// A Coxswain schema at this version.
    Version(i64),
    /// Tables, but not Coxswain's.
    Foreign { tables: Vec<String> },
}

/// The migrations to apply to a database in state `found`, or why it must not be touched.
pub(crate) fn pending<'a>(
    migrations: &'a [Migration],
    found: &Found,
    place: &str,
) -> Result<&'a [Migration]> {
    let latest = migrations.last().map_or(0, |m| m.version);
    let current = match found {
        Found::Empty => 0,
        Found::Version(version) => *version,
        Found::Foreign { tables } => {
            let shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
            return Err(Error::Open(format!(
                "{place} holds tables that Coxswain did not create ({}); refusing to touch it: point Coxswain at an empty database or data dir",
                shown.join(", ")
            )));
        }
    };
    if current > latest {
        return Err(Error::Open(format!(
            "{place} has schema version {current}, newer than this coxswain binary supports ({latest}); run a newer coxswain"
        )));
    }
    Ok(&migrations[migrations.partition_point(|m| m.version <= current)..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_and_foreign_databases_are_refused() {
        assert_eq!(pending(SQLITE, &Found::Empty, "db").unwrap().len(), 3);
        assert_eq!(pending(SQLITE, &Found::Version(1), "db").unwrap()[0].version, 2);
        assert!(pending(SQLITE, &Found::Version(3), "db").unwrap().is_empty());
        let newer = pending(SQLITE, &Found::Version(99), "db")
            .unwrap_err()
            .to_string();
        assert!(
            newer.contains("newer than this coxswain binary supports"),
            "{newer}"
        );
        let foreign = pending(
            SQLITE,
            &Found::Foreign {
                tables: vec!["users".into()],
            },
            "db",
        )
        .unwrap_err();
        assert!(foreign.to_string().contains("users"));
    }
}
