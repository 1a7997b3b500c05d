//! Watches. The hub's tailer publishes every committed row of the shard exactly once, in revision
//! order, on a broadcast channel: rows committed here come straight from the sequencer, rows committed
//! by other processes are read from the history table after a wake-up (NOTIFY or a poll). A watcher
//! first catches up from the history table, then follows the broadcast; if it falls behind the
//! broadcast it catches up from the table again, so a slow watcher costs reads, never events.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use crate::backend::{Backend, HistoryRow};
use crate::error::{Error, Result};
use crate::key::Scope;
use crate::{WatchEvent, WatchRequest, WatchStream};

/// Rows read from the history table per query.
const HISTORY_PAGE: u64 = 1000;
/// Events buffered per watcher before it blocks.
const WATCHER_BUFFER: usize = 1024;
/// How often, and how far apart, the tailer tries to read rows other processes committed before
/// one of ours, before it tells every watcher to relist.
const CATCH_UP_ATTEMPTS: usize = 50;
const CATCH_UP_RETRY: Duration = Duration::from_millis(100);
/// Poll for other processes' commits this often even without a notification.
const REMOTE_POLL: Duration = Duration::from_secs(1);

/// What the tailer broadcasts.
#[derive(Debug, Clone)]
pub(crate) enum Published {
    Row(Arc<HistoryRow>),
    /// History was lost before the tailer could read it (it fell behind compaction): every watcher
    /// must relist.
    Reset,
}

/// The shared end of the watch machinery.
#[derive(Debug, Clone)]
pub(crate) struct Hub {
    sender: broadcast::Sender<Published>,
    published: watch::Receiver<u64>,
}

impl Hub {
    /// Starts the tailer from `start` (the revision at open) and returns the hub plus the sender the
    /// sequencer hands its committed batches to.
    pub(crate) fn start(
        backend: Arc<dyn Backend>,
        start: u64,
        capacity: usize,
    ) -> (Hub, mpsc::UnboundedSender<Vec<HistoryRow>>) {
        let (sender, _) = broadcast::channel(capacity);
        let (published_tx, published) = watch::channel(start);
        let (local_tx, local_rx) = mpsc::unbounded_channel();
        let tailer = Tailer {
            backend,
            sender: sender.clone(),
            published: published_tx,
            last: start,
        };
        tokio::spawn(tailer.run(local_rx));
        (Hub { sender, published }, local_tx)
    }

    /// Waits until `revision` has been published or `timeout` passes; returns whether it was.
    pub(crate) async fn wait_published(&self, revision: u64, timeout: Duration) -> bool {
        let mut published = self.published.clone();
        tokio::time::timeout(timeout, published.wait_for(|p| *p >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Starts a watcher task; its events arrive on the returned stream.
    pub(crate) fn watch(&self, backend: Arc<dyn Backend>, request: WatchRequest, from: u64) -> WatchStream {
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        let watcher = Watcher {
            backend,
            published: self.sender.subscribe(),
            scope: request.scope,
            position: from,
            reported: from,
            tx,
        };
        tokio::spawn(watcher.run(request.progress_interval));
        Box::pin(ReceiverStream::new(rx))
    }
}

struct Tailer {
    backend: Arc<dyn Backend>,
    sender: broadcast::Sender<Published>,
    published: watch::Sender<u64>,
    last: u64,
}

impl Tailer {
    async fn run(mut self, mut local: mpsc::UnboundedReceiver<Vec<HistoryRow>>) {
        let mut notifications = true;
        let mut poll = tokio::time::interval(REMOTE_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = local.recv() => {
                    let Some(batch) = batch else { break };
                    self.publish_local(batch).await;
                }
                woke = self.backend.wait_for_remote_commit(), if notifications => match woke {
                    Some(announced) if announced > self.last => self.catch_up(u64::MAX).await,
                    Some(_) => {}
                    // This backend has no notifications: polling alone finds other processes' commits.
                    None => notifications = false,
                },
                _ = poll.tick() => self.catch_up(u64::MAX).await,
            }
        }
        debug!("watch tailer stopped");
    }

    /// Publishes a batch this process committed, after any earlier rows other processes committed.
    async fn publish_local(&mut self, batch: Vec<HistoryRow>) {
        let Some(first) = batch.first().map(|row| row.revision) else {
            return;
        };
        // The shard lock guarantees that every earlier revision is committed and visible; read them
        // first, retrying a failing database for a while before giving up on them.
        for attempt in 0..CATCH_UP_ATTEMPTS {
            if first <= self.last + 1 {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(CATCH_UP_RETRY).await;
            }
            self.catch_up(first - 1).await;
        }
        for row in batch {
            if row.revision > self.last + 1 {
                warn!(
                    expected = self.last + 1,
                    got = row.revision,
                    "history gap; watchers must relist"
                );
                self.reset(row.revision - 1);
            }
            if row.revision == self.last + 1 {
                self.publish(row);
            }
        }
    }

    /// Publishes committed rows up to `up_to` from the history table.
    async fn catch_up(&mut self, up_to: u64) {
        loop {
            let rows = match self.backend.history(None, self.last, up_to, HISTORY_PAGE).await {
                Ok(rows) => rows,
                Err(err) => {
                    debug!(error = %err, "watch tailer could not read history; will retry");
                    return;
                }
            };
            let count = rows.len() as u64;
            for row in rows {
                if row.revision != self.last + 1 {
                    warn!(
                        expected = self.last + 1,
                        got = row.revision,
                        "history gap; watchers must relist"
                    );
                    self.reset(row.revision - 1);
                }
                self.publish(row);
            }
            if count < HISTORY_PAGE {
                return;
            }
        }
    }

    fn publish(&mut self, row: HistoryRow) {
        self.last = row.revision;
        let _ = self.sender.send(Published::Row(Arc::new(row)));
        self.published.send_replace(self.last);
    }

    fn reset(&mut self, revision: u64) {
        self.last = revision;
        let _ = self.sender.send(Published::Reset);
        self.published.send_replace(self.last);
    }
}

struct Watcher {
    backend: Arc<dyn Backend>,
    published: broadcast::Receiver<Published>,
    scope: Scope,
    /// Every revision up to here has been delivered or filtered out.
    position: u64,
    /// The revision last sent to the client (event or progress).
    reported: u64,
    tx: mpsc::Sender<Result<WatchEvent>>,
}

/// Why a watcher stops.
enum Stop {
    /// The client went away.
    Gone,
    /// An error was delivered; the stream ends.
    Failed,
}

impl Watcher {
    async fn run(mut self, progress_interval: Option<Duration>) {
        let mut progress = progress_interval.map(|every| {
            let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        let result: Result<(), Stop> = async {
            self.catch_up().await?;
            loop {
                tokio::select! {
                    received = self.published.recv() => match received {
                        Ok(Published::Row(row)) => self.follow(&row).await?,
                        Ok(Published::Reset) => {
                            let compacted = self.backend.revisions().await.map_or(self.position + 1, |r| r.compacted);
                            return Err(self.fail(Error::Expired { requested: self.position, compacted }).await);
                        }
                        Err(broadcast::error::RecvError::Lagged(skipped)) => {
                            debug!(skipped, "watcher lagged behind the broadcast; catching up from history");
                            self.catch_up().await?;
                        }
                        Err(broadcast::error::RecvError::Closed) => return Err(self.fail(Error::Closed).await),
                    },
                    _ = async { match progress.as_mut() { Some(p) => { p.tick().await; } None => std::future::pending().await } } => {
                        if self.position > self.reported {
                            self.send(WatchEvent::Progress { revision: self.position }).await?;
                        }
                    }
                    _ = self.tx.closed() => return Err(Stop::Gone),
                }
            }
        }
        .await;
        if let Err(Stop::Failed) = result {
            debug!("watch ended with an error");
        }
    }

    /// Delivers everything committed after `position` from the history table.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        let revisions = match self.backend.revisions().await {
            Ok(revisions) => revisions,
            Err(err) => return Err(self.fail(err).await),
        };
        if self.position < revisions.compacted {
            let error = Error::Expired {
                requested: self.position,
                compacted: revisions.compacted,
            };
            return Err(self.fail(error).await);
        }
        while self.position < revisions.current {
            let rows = match self
                .backend
                .history(Some(&self.scope), self.position, revisions.current, HISTORY_PAGE)
                .await
            {
                Ok(rows) => rows,
                Err(err) => return Err(self.fail(err).await),
            };
            // Rows read before compaction moved past our position are complete; after, they may not be.
            match self.backend.revisions().await {
                Ok(now) if now.compacted > self.position => {
                    let error = Error::Expired {
                        requested: self.position,
                        compacted: now.compacted,
                    };
                    return Err(self.fail(error).await);
                }
                Ok(_) => {}
                Err(err) => return Err(self.fail(err).await),
            }
            let full = rows.len() as u64 == HISTORY_PAGE;
            for row in rows {
                self.position = row.revision;
                self.send(row.into_event()).await?;
            }
            if !full {
                self.position = revisions.current;
            }
        }
        Ok(())
    }

    /// Handles one broadcast row: skip what catch-up delivered, deliver what is in scope.
    async fn follow(&mut self, row: &HistoryRow) -> Result<(), Stop> {
        if row.revision <= self.position {
            return Ok(());
        }
        if row.revision != self.position + 1 {
            // Not expected (the tailer publishes densely), but never skip: read what is missing.
            return self.catch_up().await;
        }
        self.position = row.revision;
        if self.scope.contains(&row.key) {
            self.send(row.clone().into_event()).await?;
        }
        Ok(())
    }

    async fn send(&mut self, event: WatchEvent) -> Result<(), Stop> {
        self.reported = event.revision();
        self.tx.send(Ok(event)).await.map_err(|_| Stop::Gone)
    }

    async fn fail(&mut self, error: Error) -> Stop {
        let _ = self.tx.send(Err(error)).await;
        Stop::Failed
    }
}
