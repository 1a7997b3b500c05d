//! The garbage collector: deletes objects whose owners (`metadata.ownerReferences`) are all gone,
//! carries out foreground deletion (an owner holding the `foregroundDeletion` finalizer waits for
//! its blocking dependents to be deleted) and orphaning (an owner holding `orphan` removes its
//! references from its dependents first), as kube-controller-manager's garbage collector does.
//!
//! It keeps a graph of owner references only (objects without owners cost nothing), fed by one
//! storage watch per resource across every logical cluster, and works level-triggered: every piece
//! of work re-reads the objects it is about and acts on what it finds, so repeated or stale work
//! items are harmless. It runs in the server process against the store for now; it moves to
//! `controllers/` when that crate exists.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use coxswain_storage::{
    ClusterScope, ListRequest, ObjectKey, Preconditions, Scope, Store, StoredObject, WatchEvent, WatchRequest,
};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::crd::Apis;
use crate::deletion::{self, DeleteOptions, FOREGROUND_FINALIZER, ORPHAN_FINALIZER, Propagation};
use crate::registry::ResourceKind;

/// How long a failed piece of work waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One entry of `metadata.ownerReferences`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnerRef {
    api_version: String,
    kind: String,
    name: String,
    uid: String,
    block_owner_deletion: bool,
}

fn owner_refs(object: &Value) -> Vec<OwnerRef> {
    let Some(list) = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| {
            let text = |field: &str| entry.get(field).and_then(Value::as_str).map(str::to_string);
            Some(OwnerRef {
                api_version: text("apiVersion")?,
                kind: text("kind")?,
                name: text("name")?,
                uid: text("uid")?,
                block_owner_deletion: entry
                    .get("blockOwnerDeletion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
        })
        .collect()
}

/// `object` without the owner references whose uids are in `drop` (and without an emptied list).
fn without_owners(mut object: Value, drop: &HashSet<&str>) -> Value {
    if let Some(Value::Array(list)) = object.pointer_mut("/metadata/ownerReferences") {
        list.retain(|entry| {
            !entry
                .get("uid")
                .and_then(Value::as_str)
                .is_some_and(|uid| drop.contains(uid))
        });
        if list.is_empty()
            && let Some(Value::Object(metadata)) = object.get_mut("metadata")
        {
            metadata.remove("ownerReferences");
        }
    }
    object
}

fn uid_of(object: &Value) -> Option<&str> {
    object.pointer("/metadata/uid").and_then(Value::as_str)
}

fn has_finalizer(object: &Value, name: &str) -> bool {
    deletion::finalizers(object).iter().any(|f| f == name)
}

fn being_deleted(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some()
}

/// An owner's identity within a logical cluster.
type OwnerId = (String, String);

/// What the collector has to do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Work {
    /// Look at a dependent's owners: delete it if they are all gone, drop references to absent owners.
    Dependent(ObjectKey),
    /// Carry out an owner's `orphan` or `foregroundDeletion` finalizer.
    Finalize(ObjectKey),
}

/// What reaches the collector's task.
enum Input {
    Event(WatchEvent),
    /// A resource was listed again after its watch failed: events may have been missed.
    Relisted,
    Retry(Work),
}

/// The owner-reference graph.
#[derive(Default)]
struct Graph {
    owners: HashMap<ObjectKey, Vec<OwnerRef>>,
    dependents: HashMap<OwnerId, BTreeSet<ObjectKey>>,
    /// Owners whose `orphan` or `foregroundDeletion` finalizer is being carried out.
    finalizing: HashMap<OwnerId, ObjectKey>,
}

impl Graph {
    /// Records an object's owners; returns the owners it had before.
    fn set_owners(&mut self, key: &ObjectKey, owners: Vec<OwnerRef>) -> Vec<OwnerRef> {
        let before = if owners.is_empty() {
            self.owners.remove(key).unwrap_or_default()
        } else {
            self.owners
                .insert(key.clone(), owners.clone())
                .unwrap_or_default()
        };
        for owner in &before {
            let id = (key.cluster.clone(), owner.uid.clone());
            if let Some(set) = self.dependents.get_mut(&id) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(&id);
                }
            }
        }
        for owner in &owners {
            self.dependents
                .entry((key.cluster.clone(), owner.uid.clone()))
                .or_default()
                .insert(key.clone());
        }
        before
    }

    fn dependents_of(&self, id: &OwnerId) -> Vec<ObjectKey> {
        self.dependents
            .get(id)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Starts the collector; it stops when `shutdown` is cancelled.
pub fn spawn(
    store: Arc<dyn Store>,
    apis: Arc<Apis>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (inputs, received) = mpsc::unbounded_channel();
    // One feeder per storage resource any logical cluster serves, started as custom resources
    // appear.
    let feeders = tokio::spawn(start_feeders(
        store.clone(),
        apis.clone(),
        inputs.clone(),
        shutdown.clone(),
    ));
    let collector = Collector {
        store,
        apis,
        graph: Graph::default(),
        queue: VecDeque::new(),
        queued: HashSet::new(),
        inputs,
    };
    tokio::spawn(async move {
        collector.run(received, shutdown).await;
        let _ = feeders.await;
    })
}

async fn start_feeders(
    store: Arc<dyn Store>,
    apis: Arc<Apis>,
    inputs: mpsc::UnboundedSender<Input>,
    shutdown: CancellationToken,
) {
    let mut fed: HashSet<String> = HashSet::new();
    let mut feeders = Vec::new();
    loop {
        // Registered before looking, so that a change in between is not missed.
        let changed = apis.changed();
        for resource in apis.all_storage_resources() {
            if fed.insert(resource.clone()) {
                feeders.push(tokio::spawn(feed(
                    store.clone(),
                    resource,
                    inputs.clone(),
                    shutdown.clone(),
                )));
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = changed => {}
        }
    }
    for feeder in feeders {
        let _ = feeder.await;
    }
}

/// Lists one resource in every logical cluster, then follows its watch; lists again when the
/// watch fails (for instance after falling behind compaction).
async fn feed(
    store: Arc<dyn Store>,
    resource: String,
    inputs: mpsc::UnboundedSender<Input>,
    shutdown: CancellationToken,
) {
    let mut first = true;
    loop {
        let scope = Scope::new(ClusterScope::All, resource.clone(), None);
        let list = ListRequest::new(scope.clone());
        let listed = tokio::select! {
            () = shutdown.cancelled() => return,
            listed = store.list(&list) => listed,
        };
        let page = match listed {
            Ok(page) => page,
            Err(err) => {
                debug!(%resource, error = %err, "garbage collector cannot list; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(RETRY_AFTER) => continue,
                }
            }
        };
        for object in page.items {
            if inputs.send(Input::Event(WatchEvent::Added(object))).is_err() {
                return;
            }
        }
        if !first && inputs.send(Input::Relisted).is_err() {
            return;
        }
        first = false;
        let request = WatchRequest {
            scope,
            after_revision: Some(page.revision),
            progress_interval: None,
        };
        let mut events = match store.watch(request).await {
            Ok(events) => events,
            Err(err) => {
                debug!(%resource, error = %err, "garbage collector cannot watch; listing again");
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = events.next() => next,
            };
            match next {
                Some(Ok(event)) => {
                    if inputs.send(Input::Event(event)).is_err() {
                        return;
                    }
                }
                Some(Err(err)) => {
                    debug!(%resource, error = %err, "garbage collector watch failed; listing again");
                    break;
                }
                None => break,
            }
        }
    }
}

struct Collector {
    store: Arc<dyn Store>,
    apis: Arc<Apis>,
    graph: Graph,
    queue: VecDeque<Work>,
    queued: HashSet<Work>,
    inputs: mpsc::UnboundedSender<Input>,
}

/// How an owner reference resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnerState {
    /// The owner exists with that uid and is not waiting for its dependents.
    Solid,
    /// The owner is being deleted in the foreground: its dependents are deleted first.
    WaitingForDependents,
    /// No object with that name and uid exists.
    Absent,
}

impl Collector {
    async fn run(mut self, mut received: mpsc::UnboundedReceiver<Input>, shutdown: CancellationToken) {
        loop {
            // Take in everything that arrived before doing more work, so that decisions see the
            // newest graph.
            while let Ok(input) = received.try_recv() {
                self.take(input);
            }
            if let Some(work) = self.queue.pop_front() {
                self.queued.remove(&work);
                if let Err(err) = self.process(&work).await {
                    debug!(?work, error = %err, "garbage collection failed; retrying");
                    let inputs = self.inputs.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(RETRY_AFTER).await;
                        let _ = inputs.send(Input::Retry(work));
                    });
                }
                continue;
            }
            let input = tokio::select! {
                () = shutdown.cancelled() => return,
                input = received.recv() => input,
            };
            match input {
                Some(input) => self.take(input),
                None => return,
            }
        }
    }

    fn enqueue(&mut self, work: Work) {
        if self.queued.insert(work.clone()) {
            self.queue.push_back(work);
        }
    }

    /// Updates the graph from one input and queues the work it calls for.
    fn take(&mut self, input: Input) {
        match input {
            Input::Retry(work) => self.enqueue(work),
            Input::Relisted => {
                let keys: Vec<ObjectKey> = self.graph.owners.keys().cloned().collect();
                for key in keys {
                    self.enqueue(Work::Dependent(key));
                }
            }
            Input::Event(WatchEvent::Progress { .. }) => {}
            Input::Event(WatchEvent::Added(stored) | WatchEvent::Modified(stored)) => {
                let Ok(object) = stored.json() else {
                    return;
                };
                let owners = owner_refs(&object);
                let before = self.graph.set_owners(&stored.key, owners.clone());
                if !owners.is_empty() && owners != before {
                    self.enqueue(Work::Dependent(stored.key.clone()));
                }
                self.owners_changed(&stored.key.cluster, &before, &owners);
                if let Some(uid) = uid_of(&object) {
                    let id = (stored.key.cluster.clone(), uid.to_string());
                    if being_deleted(&object)
                        && (has_finalizer(&object, ORPHAN_FINALIZER)
                            || has_finalizer(&object, FOREGROUND_FINALIZER))
                    {
                        self.graph.finalizing.insert(id, stored.key.clone());
                        self.enqueue(Work::Finalize(stored.key.clone()));
                    } else {
                        self.graph.finalizing.remove(&id);
                    }
                }
            }
            Input::Event(WatchEvent::Deleted(stored)) => {
                let before = self.graph.set_owners(&stored.key, Vec::new());
                self.owners_changed(&stored.key.cluster, &before, &[]);
                let Ok(object) = stored.json() else {
                    return;
                };
                if let Some(uid) = uid_of(&object) {
                    let id = (stored.key.cluster.clone(), uid.to_string());
                    self.graph.finalizing.remove(&id);
                    for dependent in self.graph.dependents_of(&id) {
                        self.enqueue(Work::Dependent(dependent));
                    }
                }
            }
        }
    }

    /// A dependent stopped referring to some owners (or went away): owners waiting on their
    /// dependents look again.
    fn owners_changed(&mut self, cluster: &str, before: &[OwnerRef], after: &[OwnerRef]) {
        for owner in before {
            if after.iter().any(|o| o.uid == owner.uid && o.block_owner_deletion) {
                continue;
            }
            let id = (cluster.to_string(), owner.uid.clone());
            if let Some(key) = self.graph.finalizing.get(&id).cloned() {
                self.enqueue(Work::Finalize(key));
            }
        }
    }

    async fn process(&mut self, work: &Work) -> Result<(), String> {
        match work {
            Work::Dependent(key) => self.process_dependent(key).await,
            Work::Finalize(key) => self.finalize(key).await,
        }
    }

    /// The served kind an owner reference names, if this server knows it.
    fn kind_of(&self, cluster: &str, owner: &OwnerRef) -> Option<ResourceKind> {
        let (group, version) = owner
            .api_version
            .split_once('/')
            .unwrap_or(("", owner.api_version.as_str()));
        self.apis
            .for_cluster(cluster)
            .find_kind(group, version, &owner.kind)
            .cloned()
    }

    /// Reads an owner reference's target.
    async fn owner_state(&self, dependent: &ObjectKey, owner: &OwnerRef) -> Result<OwnerState, String> {
        let Some(kind) = self.kind_of(&dependent.cluster, owner) else {
            // An API this server does not serve: never collect on its account.
            return Ok(OwnerState::Solid);
        };
        if kind.namespaced && dependent.namespace.is_empty() {
            // A cluster-scoped object cannot be owned by a namespaced one.
            return Ok(OwnerState::Absent);
        }
        let namespace = if kind.namespaced {
            dependent.namespace.as_str()
        } else {
            ""
        };
        let key = ObjectKey::new(
            &dependent.cluster,
            kind.storage_resource(),
            namespace,
            &owner.name,
        );
        let stored = match self.store.get(&key).await {
            Ok(stored) => stored,
            Err(coxswain_storage::Error::NotFound { .. }) => return Ok(OwnerState::Absent),
            Err(err) => return Err(err.to_string()),
        };
        let object = stored.json().map_err(|err| err.to_string())?;
        if uid_of(&object) != Some(owner.uid.as_str()) {
            return Ok(OwnerState::Absent);
        }
        if being_deleted(&object) && has_finalizer(&object, FOREGROUND_FINALIZER) {
            return Ok(OwnerState::WaitingForDependents);
        }
        Ok(OwnerState::Solid)
    }

    fn kind_for_key(&self, key: &ObjectKey) -> Option<ResourceKind> {
        self.apis
            .for_cluster(&key.cluster)
            .kind_for_storage(&key.resource)
            .cloned()
    }

    /// Decides a dependent's fate from its owners' states.
    async fn process_dependent(&mut self, key: &ObjectKey) -> Result<(), String> {
        let stored = match self.store.get(key).await {
            Ok(stored) => stored,
            Err(coxswain_storage::Error::NotFound { .. }) => return Ok(()),
            Err(err) => return Err(err.to_string()),
        };
        let object = stored.json().map_err(|err| err.to_string())?;
        let owners = owner_refs(&object);
        if owners.is_empty() {
            return Ok(());
        }
        let mut states = Vec::with_capacity(owners.len());
        for owner in &owners {
            states.push(self.owner_state(key, owner).await?);
        }
        if states.contains(&OwnerState::Solid) {
            // Still owned: only references to absent owners, and to owners waiting for their
            // dependents, are dropped.
            let drop: HashSet<&str> = owners
                .iter()
                .zip(&states)
                .filter(|(_, state)| **state != OwnerState::Solid)
                .map(|(owner, _)| owner.uid.as_str())
                .collect();
            if drop.is_empty() {
                return Ok(());
            }
            return self.remove_owner_refs(&stored, object, &drop).await;
        }
        if being_deleted(&object) && states.contains(&OwnerState::WaitingForDependents) {
            // Already on its way out; the owner waits for it.
            return Ok(());
        }
        let Some(kind) = self.kind_for_key(key) else {
            return Ok(());
        };
        let own_uid = uid_of(&object).unwrap_or_default().to_string();
        let has_dependents = !self
            .graph
            .dependents_of(&(key.cluster.clone(), own_uid.clone()))
            .is_empty();
        let propagation = if has_finalizer(&object, ORPHAN_FINALIZER) {
            Propagation::Orphan
        } else if has_finalizer(&object, FOREGROUND_FINALIZER)
            || (states.contains(&OwnerState::WaitingForDependents) && has_dependents)
        {
            Propagation::Foreground
        } else {
            Propagation::Background
        };
        let options = DeleteOptions {
            propagation: Some(propagation),
            preconditions: Preconditions {
                resource_version: None,
                uid: Some(own_uid),
            },
            ..DeleteOptions::default()
        };
        info!(%key, ?propagation, "garbage collector deleting an object whose owners are gone");
        match deletion::delete_object(self.store.as_ref(), &kind, &key.cluster, &stored, &options).await {
            Ok(_) => Ok(()),
            Err(err) if err.code.as_u16() == 404 => Ok(()),
            Err(err) => Err(err.message),
        }
    }

    /// Writes `object` back without the owner references whose uids are in `drop`.
    async fn remove_owner_refs(
        &self,
        stored: &StoredObject,
        object: Value,
        drop: &HashSet<&str>,
    ) -> Result<(), String> {
        let bytes = Bytes::from(serde_json::to_vec(&without_owners(object, drop)).unwrap_or_default());
        match self
            .store
            .update(&stored.key, bytes, &Preconditions::revision(stored.revision))
            .await
        {
            Ok(_) | Err(coxswain_storage::Error::NotFound { .. }) => Ok(()),
            // Changed meanwhile: its Modified event brings it back here.
            Err(coxswain_storage::Error::Conflict { .. }) => Ok(()),
            Err(err) => Err(err.to_string()),
        }
    }

    /// Carries out an owner's `orphan` or `foregroundDeletion` finalizer.
    async fn finalize(&mut self, key: &ObjectKey) -> Result<(), String> {
        let stored = match self.store.get(key).await {
            Ok(stored) => stored,
            Err(coxswain_storage::Error::NotFound { .. }) => return Ok(()),
            Err(err) => return Err(err.to_string()),
        };
        let object = stored.json().map_err(|err| err.to_string())?;
        if !being_deleted(&object) {
            return Ok(());
        }
        let Some(uid) = uid_of(&object).map(str::to_string) else {
            return Ok(());
        };
        let dependents = self.graph.dependents_of(&(key.cluster.clone(), uid.clone()));
        let release = if has_finalizer(&object, ORPHAN_FINALIZER) {
            for dependent in &dependents {
                self.orphan(dependent, &uid).await?;
            }
            ORPHAN_FINALIZER
        } else if has_finalizer(&object, FOREGROUND_FINALIZER) {
            let mut blocked = false;
            for dependent in &dependents {
                self.enqueue(Work::Dependent(dependent.clone()));
                let blocks = self.graph.owners.get(dependent).is_some_and(|owners| {
                    owners
                        .iter()
                        .any(|owner| owner.uid == uid && owner.block_owner_deletion)
                });
                blocked |= blocks;
            }
            if blocked {
                // Each blocking dependent's deletion brings this owner back here.
                return Ok(());
            }
            FOREGROUND_FINALIZER
        } else {
            return Ok(());
        };
        let mut released = object;
        if let Some(Value::Array(list)) = released.pointer_mut("/metadata/finalizers") {
            list.retain(|f| f.as_str() != Some(release));
        }
        let bytes = Bytes::from(serde_json::to_vec(&released).unwrap_or_default());
        let written = match self
            .store
            .update(key, bytes, &Preconditions::revision(stored.revision))
            .await
        {
            Ok(written) => written,
            Err(coxswain_storage::Error::NotFound { .. } | coxswain_storage::Error::Conflict { .. }) => {
                return Ok(());
            }
            Err(err) => return Err(err.to_string()),
        };
        let kind = self.kind_for_key(key);
        deletion::finish_if_released(self.store.as_ref(), kind.as_ref(), &written).await;
        Ok(())
    }

    /// Removes a dependent's references to `owner_uid`, re-reading it until the write lands.
    async fn orphan(&self, dependent: &ObjectKey, owner_uid: &str) -> Result<(), String> {
        let drop: HashSet<&str> = [owner_uid].into_iter().collect();
        loop {
            let stored = match self.store.get(dependent).await {
                Ok(stored) => stored,
                Err(coxswain_storage::Error::NotFound { .. }) => return Ok(()),
                Err(err) => return Err(err.to_string()),
            };
            let object = stored.json().map_err(|err| err.to_string())?;
            if !owner_refs(&object).iter().any(|o| o.uid == owner_uid) {
                return Ok(());
            }
            let next = without_owners(object, &drop);
            let bytes = Bytes::from(serde_json::to_vec(&next).unwrap_or_default());
            match self
                .store
                .update(dependent, bytes, &Preconditions::revision(stored.revision))
                .await
            {
                Ok(_) | Err(coxswain_storage::Error::NotFound { .. }) => return Ok(()),
                Err(coxswain_storage::Error::Conflict { .. }) => continue,
                Err(err) => {
                    warn!(%dependent, error = %err, "cannot orphan a dependent");
                    return Err(err.to_string());
                }
            }
        }
    }
}
