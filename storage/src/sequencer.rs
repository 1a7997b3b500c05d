//! The sequencer: one task per shard collects concurrent mutations, checks their preconditions in
//! arrival order, commits them in one transaction with consecutive revisions, and only then
//! acknowledges them and hands their events to the watch hub in revision order. Batching is what
//! makes throughput independent of the per-transaction cost of the shard's revision counter.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::backend::{Backend, HistoryRow, LiveRow};
use crate::error::{Error, Result};
use crate::key::ObjectKey;
use crate::object::{Preconditions, PreparedValue, StoredObject, restamp};

/// Most mutations committed in one transaction.
pub(crate) const MAX_BATCH: usize = 2000;

/// One requested write.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    Create {
        key: ObjectKey,
        value: PreparedValue,
    },
    Update {
        key: ObjectKey,
        value: PreparedValue,
        preconditions: Preconditions,
    },
    Delete {
        key: ObjectKey,
        preconditions: Preconditions,
    },
}

impl Mutation {
    pub(crate) fn key(&self) -> &ObjectKey {
        match self {
            Mutation::Create { key, .. } | Mutation::Update { key, .. } | Mutation::Delete { key, .. } => key,
        }
    }
}

/// A history row to insert.
#[derive(Debug, Clone)]
pub(crate) struct NewRow {
    pub revision: u64,
    pub key: ObjectKey,
    pub value: Bytes,
    pub labels_json: String,
    pub uid: Option<String>,
    pub create_revision: u64,
    pub prev_revision: Option<u64>,
    pub deleted: bool,
    /// The revision that replaced this version; a tombstone is superseded by itself.
    pub superseded: Option<u64>,
}

/// What a batch writes and what each mutation gets back.
#[derive(Debug, Default, Clone)]
pub(crate) struct Plan {
    pub rows: Vec<NewRow>,
    /// Rows already in the database that this batch supersedes: (their revision, superseding revision).
    pub supersede: Vec<(u64, u64)>,
    pub outcomes: Vec<Result<StoredObject>>,
}

impl Plan {
    pub(crate) fn last_revision(&self) -> Option<u64> {
        self.rows.last().map(|row| row.revision)
    }
}

/// Where the live version of a key is while a batch is planned.
#[derive(Clone, Copy)]
enum Live {
    Absent,
    /// The row in the database.
    Stored,
    /// A row planned earlier in this batch, by index.
    Planned(usize),
}

/// Plans a batch on top of revision `base`, given the live rows of its keys. Pure: no I/O.
pub(crate) fn plan_batch(base: u64, live: &HashMap<ObjectKey, LiveRow>, mutations: &[Mutation]) -> Plan {
    let mut plan = Plan::default();
    let mut overlay: HashMap<&ObjectKey, Live> = HashMap::new();
    let mut next = base + 1;
    for mutation in mutations {
        let key = mutation.key();
        let state = overlay.get(key).copied().unwrap_or(if live.contains_key(key) {
            Live::Stored
        } else {
            Live::Absent
        });
        let current: Option<LiveRow> = match state {
            Live::Absent => None,
            Live::Stored => live.get(key).cloned(),
            Live::Planned(index) => {
                let row = &plan.rows[index];
                Some(LiveRow {
                    revision: row.revision,
                    create_revision: row.create_revision,
                    uid: row.uid.clone(),
                    value: row.value.clone(),
                    labels_json: row.labels_json.clone(),
                })
            }
        };
        let revision = next;
        let row = match (mutation, &current) {
            (Mutation::Create { .. }, Some(_)) => Err(Error::AlreadyExists { key: key.clone() }),
            (Mutation::Update { .. } | Mutation::Delete { .. }, None) => {
                Err(Error::NotFound { key: key.clone() })
            }
            (Mutation::Create { value, .. }, None) => Ok(new_version(key, value, revision, None)),
            (
                Mutation::Update {
                    value, preconditions, ..
                },
                Some(current),
            ) => preconditions
                .check(key, current.revision, current.uid.as_deref())
                .map(|()| new_version(key, value, revision, Some(current))),
            (Mutation::Delete { preconditions, .. }, Some(current)) => preconditions
                .check(key, current.revision, current.uid.as_deref())
                .and_then(|()| tombstone(key, revision, current)),
        };
        let row = match row {
            Ok(row) => row,
            Err(err) => {
                plan.outcomes.push(Err(err));
                continue;
            }
        };
        match state {
            Live::Stored => {
                if let Some(current) = &current {
                    plan.supersede.push((current.revision, revision));
                }
            }
            Live::Planned(index) => plan.rows[index].superseded = Some(revision),
            Live::Absent => {}
        }
        next += 1;
        plan.outcomes.push(Ok(StoredObject {
            key: key.clone(),
            revision,
            value: row.value.clone(),
        }));
        overlay.insert(
            key,
            if row.deleted {
                Live::Absent
            } else {
                Live::Planned(plan.rows.len())
            },
        );
        plan.rows.push(row);
    }
    plan
}

fn new_version(key: &ObjectKey, value: &PreparedValue, revision: u64, current: Option<&LiveRow>) -> NewRow {
    NewRow {
        revision,
        key: key.clone(),
        value: value.stamped(revision),
        labels_json: value.labels_json.clone(),
        uid: value.uid.clone(),
        create_revision: current.map_or(revision, |c| c.create_revision),
        prev_revision: current.map(|c| c.revision),
        deleted: false,
        superseded: None,
    }
}

/// The deletion's row: the object's last state stamped with the deletion revision, superseded by
/// itself so that it is never live.
fn tombstone(key: &ObjectKey, revision: u64, current: &LiveRow) -> Result<NewRow> {
    Ok(NewRow {
        revision,
        key: key.clone(),
        value: restamp(key, &current.value, revision)?,
        labels_json: current.labels_json.clone(),
        uid: current.uid.clone(),
        create_revision: current.create_revision,
        prev_revision: Some(current.revision),
        deleted: true,
        superseded: Some(revision),
    })
}

/// Where a mutation's outcome goes.
type Reply = oneshot::Sender<Result<StoredObject>>;

/// A mutation waiting for its batch.
pub(crate) struct Request {
    pub mutation: Mutation,
    pub reply: oneshot::Sender<Result<StoredObject>>,
}

/// Rounds of yielding that bring no new request before a batch is closed.
const IDLE_ROUNDS: usize = 3;

/// Group commit: gives writers that are about to submit (typically those the previous batch just
/// acknowledged) a few scheduler rounds to join this batch, so that a closed loop of N writers
/// settles into batches of about N instead of alternating between 1 and N-1. Closes early once
/// `target` requests are waiting.
async fn gather(requests: &mut mpsc::Receiver<Request>, batch: &mut Vec<Request>, target: usize) {
    let target = target.clamp(1, MAX_BATCH);
    let mut idle = 0;
    while idle < IDLE_ROUNDS && batch.len() < target {
        tokio::task::yield_now().await;
        let before = batch.len();
        while batch.len() < target {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        idle = if batch.len() == before { idle + 1 } else { 0 };
    }
}

/// How long batches are written one at a time after another process wrote first.
const CONTENDED: Duration = Duration::from_secs(1);

/// A batch planned on a base revision, ready to be written.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub base: u64,
    pub plan: Plan,
    /// Keys of creates planned without reading them: the write must check they are not live.
    pub unchecked: Vec<ObjectKey>,
}

impl Prepared {
    /// The revision after this batch.
    fn last(&self) -> u64 {
        self.plan.last_revision().unwrap_or(self.base)
    }
}

/// A batch made only of creates of distinct keys, which can be planned without a lookup: the write
/// checks that none of its keys is live.
struct DistinctCreates<'a> {
    /// The creates in arrival order.
    creates: Vec<(&'a ObjectKey, &'a PreparedValue)>,
    /// Their keys, sorted.
    keys: Vec<&'a ObjectKey>,
}

impl<'a> DistinctCreates<'a> {
    /// `None` when `mutations` holds anything but a create, or a key twice.
    fn of(mutations: &'a [Mutation]) -> Option<Self> {
        let creates = mutations
            .iter()
            .map(|mutation| match mutation {
                Mutation::Create { key, value } => Some((key, value)),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let mut keys: Vec<&ObjectKey> = creates.iter().map(|(key, _)| *key).collect();
        keys.sort();
        let before = keys.len();
        keys.dedup();
        (keys.len() == before).then_some(Self { creates, keys })
    }

    fn touches(&self, key: &ObjectKey) -> bool {
        self.keys.binary_search(&key).is_ok()
    }

    /// [`plan_batch`] for these creates: each gets the next revision after `base`, with no overlay
    /// of earlier versions.
    fn plan(&self, base: u64) -> Plan {
        let mut plan = Plan {
            rows: Vec::with_capacity(self.creates.len()),
            supersede: Vec::new(),
            outcomes: Vec::with_capacity(self.creates.len()),
        };
        for (revision, (key, value)) in (base + 1..).zip(&self.creates) {
            let row = new_version(key, value, revision, None);
            plan.outcomes.push(Ok(StoredObject {
                key: (*key).clone(),
                revision,
                value: row.value.clone(),
            }));
            plan.rows.push(row);
        }
        plan
    }

    /// Prepared on `base`, with every key left for the write to check.
    fn prepare(self, base: u64) -> Prepared {
        Prepared {
            base,
            plan: self.plan(base),
            unchecked: self.keys.into_iter().cloned().collect(),
        }
    }
}

/// Plans `mutations` on the revision this sequencer last wrote (`known`). Creates of distinct keys
/// need no read then (the write checks that none of their keys is live); anything else reads the
/// live rows and the revision they are current at, without a lock (the write checks that revision).
async fn prepare(backend: &dyn Backend, mutations: &[Mutation], known: Option<u64>) -> Result<Prepared> {
    if let Some(base) = known
        && let Some(creates) = DistinctCreates::of(mutations)
    {
        return Ok(creates.prepare(base));
    }
    let (base, live) = backend.lookup(mutations).await?;
    Ok(Prepared {
        base,
        plan: plan_batch(base, &live, mutations),
        unchecked: Vec::new(),
    })
}

/// When a batch passed each step, for the `batch timings` debug line: where a closed loop of writers
/// spends the time between two commits.
#[derive(Debug, Clone, Copy)]
struct BatchTimings {
    /// The previous batch was acknowledged.
    previous: Instant,
    /// This batch's first request was taken.
    taken: Instant,
    gathered: Instant,
    /// Planned; the write started.
    started: Instant,
}

impl BatchTimings {
    fn report(&self, written: Instant, acknowledged: Instant) {
        let micros = |from: Instant, to: Instant| to.saturating_duration_since(from).as_micros() as u64;
        debug!(
            idle_us = micros(self.previous, self.taken),
            gather_us = micros(self.taken, self.gathered),
            plan_us = micros(self.gathered, self.started),
            write_us = micros(self.started, written),
            acknowledge_us = micros(written, acknowledged),
            "batch timings"
        );
    }
}

/// A batch being written by its own task while the next one gathers.
struct InFlight {
    timings: BatchTimings,
    requests: Vec<Reply>,
    mutations: Vec<Mutation>,
    prepared: Arc<Prepared>,
    task: tokio::task::JoinHandle<Result<bool>>,
}

type WriteOutcome = std::result::Result<Result<bool>, tokio::task::JoinError>;

/// Plans `mutations` on the batch written last (the back of `in_flight`), to be written behind it:
/// only a batch of creates of distinct keys that none of the batches in flight touches, which
/// needs no read of what they have not committed yet.
fn prepare_behind(mutations: &[Mutation], in_flight: &VecDeque<InFlight>) -> Option<Prepared> {
    let base = in_flight.back()?.prepared.last();
    let creates = DistinctCreates::of(mutations)?;
    let mut touched = in_flight
        .iter()
        .flat_map(|flight| flight.mutations.iter().map(Mutation::key));
    if touched.any(|key| creates.touches(key)) {
        return None;
    }
    Some(creates.prepare(base))
}

/// How many of the `waiting` requests the next batch takes when `in_flight` requests are being
/// written and up to `depth` batches may be: an equal share of all of them, so that a closed loop
/// of N writers settles into `depth` batches of about N / `depth`.
fn batch_share(waiting: usize, in_flight: usize, depth: usize) -> usize {
    if depth <= 1 {
        return waiting;
    }
    (waiting + in_flight).div_ceil(depth).clamp(1, waiting.max(1))
}

fn start(
    backend: &Arc<dyn Backend>,
    timings: BatchTimings,
    requests: Vec<Reply>,
    mutations: Vec<Mutation>,
    prepared: Prepared,
) -> InFlight {
    let prepared = Arc::new(prepared);
    let (backend, writing) = (backend.clone(), prepared.clone());
    let mut write = Box::pin(async move {
        backend
            .write(writing.base, &writing.plan, &writing.unchecked)
            .await
    });
    // Polled once here, the write takes its place in the backend's queue (SQLite: the writer
    // connection's lock, which is first come, first served; PostgreSQL: the batch connection, which
    // sends the statement at once) before the next batch's write exists.
    // Left to the spawned task, a batch behind could reach the queue first, find its base not yet
    // written and be planned again. The task polls it again with its own waker.
    let task = match write
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(outcome) => tokio::spawn(std::future::ready(outcome)),
        std::task::Poll::Pending => tokio::spawn(write),
    };
    InFlight {
        timings,
        requests,
        mutations,
        prepared,
        task,
    }
}

/// The sequencer's state between batches.
struct Sequencer {
    backend: Arc<dyn Backend>,
    committed: mpsc::UnboundedSender<Vec<HistoryRow>>,
    /// The revision this sequencer last wrote; `None` when unknown.
    known: Option<u64>,
    /// No batch is written behind another before this: another process wrote first lately, so a
    /// batch planned on this one's last write would likely find the shard elsewhere.
    contended_until: Instant,
}

impl Sequencer {
    /// Acknowledges a batch whose writer task ended; returns when it was done, for the timings.
    async fn finish_in_flight(&mut self, flight: InFlight, outcome: WriteOutcome) -> Instant {
        let InFlight {
            timings,
            requests,
            mutations,
            prepared,
            ..
        } = flight;
        let written = Instant::now();
        self.finish(requests, &mutations, prepared, outcome).await;
        let finished = Instant::now();
        timings.report(written, finished);
        finished
    }

    /// Acknowledges a written batch. If another process wrote first, the batch is planned again,
    /// optimistically once and then under the shard lock.
    async fn finish(
        &mut self,
        requests: Vec<Reply>,
        mutations: &[Mutation],
        prepared: Arc<Prepared>,
        outcome: WriteOutcome,
    ) {
        let plan = match outcome {
            Ok(Ok(true)) => {
                let last = prepared.last();
                // The writer task is done with it, so this is the only reference.
                let plan = match Arc::try_unwrap(prepared) {
                    Ok(prepared) => prepared.plan,
                    Err(shared) => shared.plan.clone(),
                };
                Ok((plan, Some(last)))
            }
            Ok(Ok(false)) => {
                debug!("another writer committed first; planning the batch again");
                self.contended_until = Instant::now() + CONTENDED;
                self.commit_again(mutations).await.map(|plan| {
                    let last = plan.last_revision();
                    (plan, last)
                })
            }
            Ok(Err(err)) => Err(err),
            Err(join) => Err(Error::Corrupt(format!("batch writer task failed: {join}"))),
        };
        match plan {
            Ok((plan, last)) => {
                self.known = last;
                self.acknowledge(requests, plan);
            }
            Err(err) => {
                self.known = None;
                warn!(error = %err, mutations = requests.len(), "batch failed; nothing acknowledged");
                for reply in requests {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }

    async fn commit_again(&mut self, mutations: &[Mutation]) -> Result<Plan> {
        let prepared = prepare(self.backend.as_ref(), mutations, None).await?;
        if self
            .backend
            .write(prepared.base, &prepared.plan, &prepared.unchecked)
            .await?
        {
            return Ok(prepared.plan);
        }
        self.backend.commit_locked(mutations).await
    }

    /// Answers a committed batch's writers, then publishes its rows (in revision order, before any
    /// later batch's). The writers go first so that their next requests are prepared meanwhile; a
    /// watch or read at a revision not yet published waits for it.
    fn acknowledge(&self, requests: Vec<Reply>, plan: Plan) {
        debug!(
            mutations = requests.len(),
            rows = plan.rows.len(),
            "committed batch"
        );
        for (request, outcome) in requests.into_iter().zip(plan.outcomes) {
            let _ = request.send(outcome);
        }
        if !plan.rows.is_empty() {
            let rows = plan
                .rows
                .into_iter()
                .map(|row| HistoryRow {
                    revision: row.revision,
                    created: row.prev_revision.is_none(),
                    deleted: row.deleted,
                    key: row.key,
                    value: row.value,
                })
                .collect();
            // The hub only goes away when the store shuts down.
            let _ = self.committed.send(rows);
        }
    }
}

/// Runs the sequencer until every sender is gone. While a batch is written, whoever arrives joins
/// the next one, which is planned and started as soon as the database is free again, or at once,
/// behind it, when the backend takes more than one batch at a time and the next one only creates.
pub(crate) async fn run(
    backend: Arc<dyn Backend>,
    mut requests: mpsc::Receiver<Request>,
    committed: mpsc::UnboundedSender<Vec<HistoryRow>>,
) {
    let depth = backend.pipeline_depth().max(1);
    let mut sequencer = Sequencer {
        backend: backend.clone(),
        committed,
        known: None,
        contended_until: Instant::now(),
    };
    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(depth);
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    let mut open = true;
    let mut last_finished = Instant::now();
    loop {
        let full = in_flight.len() >= depth || batch.is_empty();
        if let Some(front) = in_flight.front_mut()
            && full
        {
            let room = MAX_BATCH - batch.len();
            tokio::select! {
                biased;
                outcome = &mut front.task => {
                    if let Some(flight) = in_flight.pop_front() {
                        last_finished = sequencer.finish_in_flight(flight, outcome).await;
                    }
                }
                received = requests.recv_many(&mut batch, room), if open && room > 0 => open = received > 0,
            }
            continue;
        }
        if batch.is_empty() && (!open || requests.recv_many(&mut batch, MAX_BATCH).await == 0) {
            return;
        }
        let taken = Instant::now();
        let writing: usize = in_flight.iter().map(|flight| flight.mutations.len()).sum();
        if open {
            // Behind a batch in flight, as many as it holds are enough.
            let target = if writing > 0 { writing } else { MAX_BATCH };
            gather(&mut requests, &mut batch, target).await;
        }
        let gathered = Instant::now();
        // Only creates can be written behind another batch; anything else is written whole.
        let pipelined = Instant::now() >= sequencer.contended_until
            && batch
                .iter()
                .all(|request| matches!(request.mutation, Mutation::Create { .. }));
        let share = if pipelined {
            batch_share(batch.len(), writing, depth)
        } else {
            batch.len()
        };
        let (mutations, replies): (Vec<Mutation>, Vec<Reply>) = batch
            .drain(..share)
            .map(|request| (request.mutation, request.reply))
            .unzip();
        let behind = if pipelined {
            prepare_behind(&mutations, &in_flight)
        } else {
            None
        };
        let prepared = match behind {
            Some(prepared) => Ok(prepared),
            None => {
                // Whatever is in flight commits first; then this batch is planned on it.
                while let Some(mut flight) = in_flight.pop_front() {
                    let outcome = (&mut flight.task).await;
                    last_finished = sequencer.finish_in_flight(flight, outcome).await;
                }
                prepare(backend.as_ref(), &mutations, sequencer.known).await
            }
        };
        match prepared {
            Ok(prepared) => {
                let timings = BatchTimings {
                    previous: last_finished,
                    taken,
                    gathered,
                    started: Instant::now(),
                };
                in_flight.push_back(start(&backend, timings, replies, mutations, prepared));
                // Lets the writer task send its batch before the next one is planned behind it.
                tokio::task::yield_now().await;
            }
            Err(err) => {
                sequencer.known = None;
                warn!(error = %err, mutations = replies.len(), "batch could not be planned; nothing acknowledged");
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("c", "core/configmaps", "ns", name)
    }

    fn value(text: &str) -> PreparedValue {
        PreparedValue::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_batch_gets_consecutive_revisions_and_chains_its_own_versions() {
        let mutations = vec![
            Mutation::Create {
                key: key("a"),
                value: value(r#"{"metadata":{"name":"a"}}"#),
            },
            Mutation::Update {
                key: key("a"),
                value: value(r#"{"metadata":{"name":"a"},"data":{}}"#),
                preconditions: Preconditions::revision(11),
            },
            Mutation::Create {
                key: key("a"),
                value: value("{}"),
            },
            Mutation::Delete {
                key: key("a"),
                preconditions: Preconditions::none(),
            },
            Mutation::Create {
                key: key("a"),
                value: value("{}"),
            },
        ];
        let plan = plan_batch(10, &HashMap::new(), &mutations);
        let revisions: Vec<_> = plan
            .outcomes
            .iter()
            .map(|o| o.as_ref().map(|o| o.revision).ok())
            .collect();
        assert_eq!(revisions, [Some(11), Some(12), None, Some(13), Some(14)]);
        assert!(matches!(plan.outcomes[2], Err(Error::AlreadyExists { .. })));
        let superseded: Vec<_> = plan.rows.iter().map(|r| r.superseded).collect();
        assert_eq!(superseded, [Some(12), Some(13), Some(13), None]);
        assert_eq!(plan.rows[1].create_revision, 11);
        assert_eq!(plan.rows[3].prev_revision, None);
    }

    #[test]
    fn distinct_creates_are_planned_as_the_general_planner_plans_them() {
        let mutations: Vec<Mutation> = ["b", "a", "c"]
            .iter()
            .map(|name| Mutation::Create {
                key: key(name),
                value: value(&format!(
                    r#"{{"metadata":{{"name":"{name}","uid":"u-{name}","labels":{{"x":"{name}"}}}}}}"#
                )),
            })
            .collect();
        let general = plan_batch(41, &HashMap::new(), &mutations);
        let fast = DistinctCreates::of(&mutations)
            .expect("distinct creates")
            .plan(41);
        assert_eq!(format!("{fast:?}"), format!("{general:?}"));
        assert_eq!(fast.last_revision(), Some(44));
    }

    #[test]
    fn only_creates_of_distinct_keys_are_planned_without_a_lookup() {
        let create = |name: &str| Mutation::Create {
            key: key(name),
            value: value(r#"{"metadata":{}}"#),
        };
        let update = Mutation::Update {
            key: key("b"),
            value: value(r#"{"metadata":{}}"#),
            preconditions: Preconditions::none(),
        };
        assert!(DistinctCreates::of(&[create("a"), create("b")]).is_some());
        assert!(DistinctCreates::of(&[create("a"), create("a")]).is_none());
        assert!(DistinctCreates::of(&[create("a"), update]).is_none());
    }

    #[test]
    fn writers_are_shared_equally_among_the_batches_in_flight() {
        // One batch at a time: a batch takes everyone waiting.
        assert_eq!(batch_share(64, 0, 1), 64);
        assert_eq!(batch_share(64, 64, 1), 64);
        // Two at a time: 64 waiting with nothing in flight start as two batches of 32 ...
        assert_eq!(batch_share(64, 0, 2), 32);
        assert_eq!(batch_share(32, 32, 2), 32);
        // ... and a lopsided start evens out over the next batches.
        assert_eq!(batch_share(63, 1, 2), 32);
        assert_eq!(batch_share(31, 33, 2), 31);
        assert_eq!(batch_share(1, 0, 2), 1);
        assert_eq!(batch_share(0, 5, 2), 1);
    }

    #[test]
    fn a_batch_of_creates_goes_behind_the_batches_in_flight_unless_it_touches_their_keys() {
        let creates = |names: &[&str]| -> Vec<Mutation> {
            names
                .iter()
                .map(|name| Mutation::Create {
                    key: key(name),
                    value: value("{}"),
                })
                .collect()
        };
        let flight = |base: u64, mutations: Vec<Mutation>| {
            let plan = plan_batch(base, &HashMap::new(), &mutations);
            InFlight {
                timings: BatchTimings {
                    previous: Instant::now(),
                    taken: Instant::now(),
                    gathered: Instant::now(),
                    started: Instant::now(),
                },
                requests: Vec::new(),
                mutations,
                prepared: Arc::new(Prepared {
                    base,
                    plan,
                    unchecked: Vec::new(),
                }),
                task: tokio::spawn(async { Ok(true) }),
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _guard = runtime.enter();
        let mut in_flight = VecDeque::new();
        assert!(
            prepare_behind(&creates(&["a"]), &in_flight).is_none(),
            "nothing to go behind"
        );
        in_flight.push_back(flight(10, creates(&["a", "b"])));
        let behind = prepare_behind(&creates(&["c", "d"]), &in_flight).expect("creates of other keys");
        assert_eq!(
            behind.base, 12,
            "planned on the revision the batch in flight ends at"
        );
        assert_eq!(behind.plan.last_revision(), Some(14));
        assert_eq!(behind.unchecked.len(), 2);
        assert!(
            prepare_behind(&creates(&["c", "b"]), &in_flight).is_none(),
            "a key in flight"
        );
        assert!(
            prepare_behind(&creates(&["c", "c"]), &in_flight).is_none(),
            "a key twice"
        );
        let update = vec![Mutation::Update {
            key: key("c"),
            value: value("{}"),
            preconditions: Preconditions::none(),
        }];
        assert!(prepare_behind(&update, &in_flight).is_none(), "not only creates");
    }

    #[test]
    fn stale_preconditions_conflict_without_consuming_a_revision() {
        let mut live = HashMap::new();
        live.insert(
            key("a"),
            LiveRow {
                revision: 5,
                create_revision: 3,
                uid: Some("u1".into()),
                value: Bytes::from_static(b"{}"),
                labels_json: "{}".into(),
            },
        );
        let mutations = vec![
            Mutation::Update {
                key: key("a"),
                value: value("{}"),
                preconditions: Preconditions::revision(4),
            },
            Mutation::Delete {
                key: key("a"),
                preconditions: Preconditions {
                    resource_version: None,
                    uid: Some("u2".into()),
                },
            },
            Mutation::Update {
                key: key("a"),
                value: value("{}"),
                preconditions: Preconditions::revision(5),
            },
        ];
        let plan = plan_batch(9, &live, &mutations);
        assert!(matches!(plan.outcomes[0], Err(Error::Conflict { .. })));
        assert!(matches!(plan.outcomes[1], Err(Error::Conflict { .. })));
        assert_eq!(plan.outcomes[2].as_ref().unwrap().revision, 10);
        assert_eq!(plan.supersede, [(5, 10)]);
        assert_eq!(plan.rows[0].create_revision, 3);
    }

    /// A backend whose writes queue on one first-come, first-served lock, as SQLite's writer
    /// connection does, and record the base of each write when it joins the queue.
    struct QueueBackend {
        queue: tokio::sync::Mutex<()>,
        joined: std::sync::Mutex<Vec<u64>>,
    }

    #[async_trait::async_trait]
    impl Backend for QueueBackend {
        async fn lookup(&self, _: &[Mutation]) -> Result<(u64, HashMap<ObjectKey, LiveRow>)> {
            Ok((0, HashMap::new()))
        }
        async fn write(&self, base: u64, _: &Plan, _: &[ObjectKey]) -> Result<bool> {
            if let Ok(mut joined) = self.joined.lock() {
                joined.push(base);
            }
            let _turn = self.queue.lock().await;
            Ok(true)
        }
        async fn commit_locked(&self, _: &[Mutation]) -> Result<Plan> {
            Ok(Plan::default())
        }
        async fn get(&self, _: &ObjectKey) -> Result<Option<StoredObject>> {
            Ok(None)
        }
        async fn revisions(&self) -> Result<crate::backend::Revisions> {
            Ok(crate::backend::Revisions {
                current: 0,
                compacted: 0,
            })
        }
        async fn list(
            &self,
            _: &crate::key::Scope,
            _: &crate::selector::LabelSelector,
            _: u64,
            _: Option<&crate::backend::ListCursor>,
            _: Option<u64>,
        ) -> Result<Vec<StoredObject>> {
            Ok(Vec::new())
        }
        async fn history(
            &self,
            _: Option<&crate::key::Scope>,
            _: u64,
            _: u64,
            _: u64,
        ) -> Result<Vec<HistoryRow>> {
            Ok(Vec::new())
        }
        async fn compact(&self, _: crate::backend::CompactionPolicy) -> Result<crate::Compaction> {
            Ok(crate::Compaction {
                compacted_revision: 0,
                removed_rows: 0,
            })
        }
        async fn wait_for_remote_commit(&self) -> Option<u64> {
            None
        }
    }

    #[tokio::test]
    async fn a_started_write_is_queued_before_the_next_batch_is_planned() {
        let backend = Arc::new(QueueBackend {
            queue: tokio::sync::Mutex::new(()),
            joined: std::sync::Mutex::new(Vec::new()),
        });
        // The queue is busy, as with a batch being written.
        let busy = backend.queue.lock().await;
        let dyn_backend: Arc<dyn Backend> = backend.clone();
        let timings = BatchTimings {
            previous: Instant::now(),
            taken: Instant::now(),
            gathered: Instant::now(),
            started: Instant::now(),
        };
        let batch = |base: u64| Prepared {
            base,
            plan: Plan::default(),
            unchecked: Vec::new(),
        };
        let first = start(&dyn_backend, timings, Vec::new(), Vec::new(), batch(10));
        // Before this task yields even once, the first write has joined the queue ...
        assert_eq!(*backend.joined.lock().unwrap(), [10]);
        let second = start(&dyn_backend, timings, Vec::new(), Vec::new(), batch(20));
        assert_eq!(*backend.joined.lock().unwrap(), [10, 20]);
        drop(busy);
        // ... so it is written first.
        assert!(first.task.await.unwrap().unwrap());
        assert!(second.task.await.unwrap().unwrap());
    }
}
