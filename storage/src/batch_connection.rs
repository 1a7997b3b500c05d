//! The one PostgreSQL connection a process writes its batches on, through tokio-postgres rather than
//! sqlx because it pipelines: sqlx 0.8 sends a statement only once the one before it on the same
//! connection has been answered, while tokio-postgres sends each as soon as it is issued. So the
//! batch planned behind the one being committed is already waiting in the same server process,
//! which writes them one after the other without a round trip in between and without handing a
//! lock over to another process.
//!
//! It replaces two sqlx connections that took turns, where the batch behind inserted its rows in a
//! second server process and then waited there for the lock of the one before. With
//! `coxswain bench storage --concurrency 64` against PostgreSQL, six runs of each build in turn:
//! 44,966–51,233 creates per second (median 47,477) against 37,493–42,057 (median 40,139), and a
//! p99 of 2.3 ms against 3.2. Timed inside the write function, the insert of a batch's 32 rows took
//! 332 µs against 413 µs: one server process keeps the pages it writes in its cache.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};
use tracing::warn;

/// A connected client and its prepared write statement.
struct Connected {
    client: Client,
    write: Statement,
}

/// The batch-writing connection: opened with the store, opened again by the next write after it
/// failed (the server restarted, the network broke).
pub(crate) struct BatchConnection {
    config: tokio_postgres::Config,
    write_sql: &'static str,
    current: Mutex<Option<Arc<Connected>>>,
    /// Held while a connection is being opened, so that writes waiting for it are sent in order.
    opening: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for BatchConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchConnection")
            .field("connected", &self.current().is_some())
            .finish_non_exhaustive()
    }
}

impl BatchConnection {
    /// Connects to `url` with the server `settings` and prepares `write_sql`.
    pub(crate) async fn open(
        url: &str,
        settings: &[(&str, &str)],
        connect_timeout: Duration,
        write_sql: &'static str,
    ) -> Result<Self, tokio_postgres::Error> {
        let mut config: tokio_postgres::Config = url.parse()?;
        let options: Vec<String> = settings
            .iter()
            .map(|(name, value)| format!("-c {name}={value}"))
            .collect();
        config.options(options.join(" ")).connect_timeout(connect_timeout);
        let connection = Self {
            config,
            write_sql,
            current: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
        };
        connection.connected().await?;
        Ok(connection)
    }

    fn current(&self) -> Option<Arc<Connected>> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The open connection, or a new one. Returns at once when connected: a write sends its
    /// statement in the first poll of its future, before the next write is issued.
    async fn connected(&self) -> Result<Arc<Connected>, tokio_postgres::Error> {
        if let Some(connected) = self.current() {
            return Ok(connected);
        }
        let _opening = self.opening.lock().await;
        if let Some(connected) = self.current() {
            return Ok(connected);
        }
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                warn!(error = %err, "the PostgreSQL batch connection failed");
            }
        });
        let write = client.prepare(self.write_sql).await?;
        let connected = Arc::new(Connected { client, write });
        *self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(connected.clone());
        Ok(connected)
    }

    /// Runs the write statement and returns its one boolean. An error the server did not send
    /// (the connection is gone) drops the connection, so that the next write opens a new one.
    pub(crate) async fn write(&self, params: &[&(dyn ToSql + Sync)]) -> Result<bool, tokio_postgres::Error> {
        let connected = self.connected().await?;
        match connected.client.query_one(&connected.write, params).await {
            Ok(row) => row.try_get(0),
            Err(err) => {
                if err.as_db_error().is_none() {
                    let mut current = self
                        .current
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &connected)) {
                        *current = None;
                    }
                }
                Err(err)
            }
        }
    }
}
