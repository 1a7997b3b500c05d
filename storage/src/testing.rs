//! The storage contract suite (compare k8s.io/apiserver `pkg/storage/testing/store_tests.go`). Every
//! backend's tests call the same `run_*` functions with a [`TestBackend`]; a behaviour that differs
//! between SQLite and PostgreSQL is a bug in one of them.
//!
//! PostgreSQL tests need `COXSWAIN_TEST_POSTGRES_URL` (a server where the user may create databases;
//! `scripts/test.sh` starts a throwaway one) and, for the restart test, `COXSWAIN_TEST_PG_BINDIR`.

// Test support: a failed unwrap here is a failed test, which is the point.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::{Instant, timeout};

use crate::{
    ClusterScope, Error, LabelSelector, ListRequest, ObjectKey, Preconditions, ReadRevision, Scope, SqlStore,
    Store, StoreOptions, WatchEvent, WatchRequest, WatchStream, guaranteed_update,
};

/// How long any single wait in the suite may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// Where a test's store lives: a fresh SQLite file or a fresh PostgreSQL database.
#[derive(Debug)]
pub enum TestBackend {
    Sqlite {
        dir: tempfile::TempDir,
        /// Overrides [`StoreOptions::sqlite_index_lag`] of every store opened.
        index_lag: Option<u64>,
    },
    Postgres {
        url: String,
    },
}

impl TestBackend {
    pub fn sqlite() -> Self {
        TestBackend::Sqlite {
            dir: tempfile::tempdir().expect("temp dir"),
            index_lag: None,
        }
    }

    /// A fresh SQLite file whose key and label indexes trail the rows by at most `index_lag`
    /// revisions, so that reads meet both indexed rows and the unindexed tail.
    pub fn sqlite_with_index_lag(index_lag: u64) -> Self {
        TestBackend::Sqlite {
            dir: tempfile::tempdir().expect("temp dir"),
            index_lag: Some(index_lag),
        }
    }

    /// A new, empty database on the server named by `COXSWAIN_TEST_POSTGRES_URL`.
    pub async fn postgres() -> Self {
        let base = std::env::var("COXSWAIN_TEST_POSTGRES_URL").expect(
            "COXSWAIN_TEST_POSTGRES_URL must name a PostgreSQL server for these tests (scripts/test.sh starts one)",
        );
        TestBackend::Postgres {
            url: fresh_database(&base).await,
        }
    }

    /// The `--storage` value and data dir that open this backend.
    pub fn storage(&self) -> (String, PathBuf) {
        match self {
            TestBackend::Sqlite { dir, .. } => ("sqlite".into(), dir.path().to_path_buf()),
            TestBackend::Postgres { url } => (url.clone(), std::env::temp_dir()),
        }
    }

    pub async fn open(&self, mut options: StoreOptions) -> SqlStore {
        if let TestBackend::Sqlite {
            index_lag: Some(lag), ..
        } = self
        {
            options.sqlite_index_lag = *lag;
        }
        let (storage, dir) = self.storage();
        SqlStore::open(&storage, &dir, options).await.expect("open store")
    }
}

/// Creates a database named `coxswain_test_<random>` on the server of `base` and returns its URL.
pub async fn fresh_database(base: &str) -> String {
    let name = format!("coxswain_test_{:016x}", rand::rng().random::<u64>());
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .expect("connect to COXSWAIN_TEST_POSTGRES_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    with_database(base, &name)
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let authority_start = head.find("://").map_or(0, |i| i + 3);
    let base = match head[authority_start..].find('/') {
        Some(slash) => &head[..authority_start + slash],
        None => head,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// Options for tests: no background compaction, short waits.
pub fn test_options() -> StoreOptions {
    StoreOptions {
        compaction_interval: None,
        revision_wait: Duration::from_millis(300),
        postgres_acquire_timeout: Duration::from_secs(1),
        ..StoreOptions::default()
    }
}

pub fn key(cluster: &str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey::new(cluster, "core/configmaps", namespace, name)
}

pub fn scope(cluster: &str, namespace: Option<&str>) -> Scope {
    Scope::new(
        ClusterScope::one(cluster),
        "core/configmaps",
        namespace.map(str::to_string),
    )
}

/// A small ConfigMap-shaped object.
pub fn object(name: &str, labels: &[(&str, &str)], data: Value) -> Bytes {
    let labels: serde_json::Map<String, Value> =
        labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    Bytes::from(
        serde_json::to_vec(&json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": name, "labels": labels, "uid": format!("uid-{name}") },
            "data": data,
        }))
        .expect("json"),
    )
}

fn json_of(value: &Bytes) -> Value {
    serde_json::from_slice(value).expect("stored value is JSON")
}

async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    match timeout(DEADLINE, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(err))) => panic!("watch failed: {err}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {DEADLINE:?}"),
    }
}

/// Collects object events until one with revision `last` arrives.
async fn events_until(stream: &mut WatchStream, last: u64) -> Vec<WatchEvent> {
    let mut events = Vec::new();
    loop {
        let event = next_event(stream).await;
        if matches!(event, WatchEvent::Progress { .. }) {
            continue;
        }
        let revision = event.revision();
        events.push(event);
        if revision >= last {
            return events;
        }
    }
}

/// Create, get, update, delete and their errors and preconditions.
pub async fn run_crud(backend: &TestBackend) {
    let store = backend.open(test_options()).await;
    let k = key("crud", "ns", "a");
    let created = store
        .create(&k, object("a", &[], json!({"v": "1"})))
        .await
        .unwrap();
    assert_eq!(
        json_of(&created.value)["metadata"]["resourceVersion"],
        created.revision.to_string()
    );
    assert!(matches!(
        store.create(&k, object("a", &[], json!({}))).await,
        Err(Error::AlreadyExists { .. })
    ));
    let got = store.get(&k).await.unwrap();
    assert_eq!(got, created);

    let stale = Preconditions::revision(created.revision + 100);
    assert!(matches!(
        store.update(&k, object("a", &[], json!({})), &stale).await,
        Err(Error::Conflict { .. })
    ));
    let wrong_uid = Preconditions {
        resource_version: None,
        uid: Some("other".into()),
    };
    assert!(matches!(
        store.update(&k, object("a", &[], json!({})), &wrong_uid).await,
        Err(Error::Conflict { .. })
    ));
    let updated = store
        .update(
            &k,
            object("a", &[], json!({"v": "2"})),
            &Preconditions::revision(created.revision),
        )
        .await
        .unwrap();
    assert!(updated.revision > created.revision);
    assert_eq!(json_of(&store.get(&k).await.unwrap().value)["data"]["v"], "2");

    assert!(matches!(
        store.delete(&k, &Preconditions::revision(created.revision)).await,
        Err(Error::Conflict { .. })
    ));
    let right_uid = Preconditions {
        resource_version: None,
        uid: Some("uid-a".into()),
    };
    let deleted = store.delete(&k, &right_uid).await.unwrap();
    assert!(deleted.revision > updated.revision);
    assert_eq!(json_of(&deleted.value)["data"]["v"], "2");
    assert_eq!(
        json_of(&deleted.value)["metadata"]["resourceVersion"],
        deleted.revision.to_string()
    );
    assert!(matches!(store.get(&k).await, Err(Error::NotFound { .. })));
    assert!(matches!(
        store.delete(&k, &Preconditions::none()).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store
            .update(&k, object("a", &[], json!({})), &Preconditions::none())
            .await,
        Err(Error::NotFound { .. })
    ));
    let again = store.create(&k, object("a", &[], json!({}))).await.unwrap();
    assert!(again.revision > deleted.revision);
    assert_eq!(store.current_revision().await.unwrap(), again.revision);

    // Bad input is refused before anything is written.
    let before = store.current_revision().await.unwrap();
    for bad in [
        &b"not json"[..],
        b"[1,2]",
        b"{\"metadata\":\"x\"}",
        b"{\"metadata\":{\"labels\":{\"a\":1}}}",
    ] {
        let result = store
            .create(&key("crud", "ns", "bad"), Bytes::copy_from_slice(bad))
            .await;
        assert!(matches!(result, Err(Error::InvalidValue(_))), "{result:?}");
    }
    for bad_key in [
        key("", "ns", "x"),
        key("crud", "ns", ""),
        key("crud", "n\0s", "x"),
    ] {
        assert!(matches!(
            store.create(&bad_key, object("x", &[], json!({}))).await,
            Err(Error::InvalidKey(_))
        ));
    }
    assert_eq!(store.current_revision().await.unwrap(), before);
}

/// 32 concurrent writers while 4 watchers, started at different revisions, watch: every watcher sees
/// exactly the acknowledged history after its start, in strictly increasing, gap-free order.
pub async fn run_concurrent_writers_and_watchers(backend: &TestBackend) {
    const WRITERS: usize = 32;
    const WRITES_EACH: usize = 40;
    let store = backend.open(test_options()).await;
    let cluster = "watchers";
    let start = store.current_revision().await.unwrap();
    let mut watchers = Vec::new();
    let mut starts = Vec::new();
    let acked: Arc<tokio::sync::Mutex<BTreeMap<u64, (String, &'static str)>>> = Default::default();
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..WRITES_EACH {
                let name = format!("w{writer}-{}", i % 5);
                let k = key(cluster, "ns", &name);
                let (result, kind) = match i % 3 {
                    0 => (
                        store
                            .create(&k, object(&name, &[], json!({"i": i.to_string()})))
                            .await,
                        "ADDED",
                    ),
                    1 => (
                        store
                            .update(
                                &k,
                                object(&name, &[], json!({"i": i.to_string()})),
                                &Preconditions::none(),
                            )
                            .await,
                        "MODIFIED",
                    ),
                    _ => (store.delete(&k, &Preconditions::none()).await, "DELETED"),
                };
                match result {
                    Ok(stored) => {
                        acked.lock().await.insert(stored.revision, (name, kind));
                    }
                    Err(Error::AlreadyExists { .. } | Error::NotFound { .. }) => {}
                    Err(err) => panic!("write failed: {err}"),
                }
            }
        }));
    }
    // Start watchers at different points while the writers run.
    for _ in 0..4 {
        let at = store.current_revision().await.unwrap().max(start);
        starts.push(at);
        let request = WatchRequest {
            scope: scope(cluster, None),
            after_revision: Some(at),
            progress_interval: None,
        };
        watchers.push(store.watch(request).await.unwrap());
        // The next watcher starts at a later revision, unless the writers are already done.
        let deadline = Instant::now() + DEADLINE;
        while store.current_revision().await.unwrap() == at && !writers.iter().all(|w| w.is_finished()) {
            assert!(
                Instant::now() < deadline,
                "no write committed within {DEADLINE:?}"
            );
            tokio::task::yield_now().await;
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().await.clone();
    let last = *acked.keys().last().unwrap();
    // The writers' acknowledged revisions are the whole history of the scope after `start`.
    let history: Vec<u64> = acked.keys().copied().collect();
    for (watcher, from) in watchers.iter_mut().zip(&starts) {
        let events = events_until(watcher, last).await;
        let seen: Vec<(u64, String, &str)> = events
            .iter()
            .map(|e| {
                let kind = match e {
                    WatchEvent::Added(_) => "ADDED",
                    WatchEvent::Modified(_) => "MODIFIED",
                    WatchEvent::Deleted(_) => "DELETED",
                    WatchEvent::Progress { .. } => unreachable!(),
                };
                (e.revision(), e.object().unwrap().key.name.clone(), kind)
            })
            .collect();
        let expected: Vec<(u64, String, &str)> = acked
            .range(from + 1..)
            .map(|(revision, (name, kind))| (*revision, name.clone(), *kind))
            .collect();
        assert_eq!(seen, expected, "watcher from {from}");
    }
    // Revisions are dense: every revision after `start` belongs to exactly one acknowledged write.
    assert_eq!(history, (start + 1..=last).collect::<Vec<_>>());
}

/// guaranteed_update from many tasks on one key: no lost increments.
pub async fn run_guaranteed_update_counter(backend: &TestBackend) {
    const TASKS: usize = 10;
    const TOTAL: usize = 1000;
    let store = backend.open(test_options()).await;
    let k = key("counter", "ns", "c");
    store
        .create(&k, object("c", &[], json!({"n": "0"})))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..TOTAL / TASKS {
                guaranteed_update(&store, &k, &Preconditions::none(), |current| {
                    let mut value = json_of(&current.value);
                    let n: u64 = value["data"]["n"].as_str().unwrap().parse().unwrap();
                    value["data"]["n"] = json!((n + 1).to_string());
                    Ok::<_, Error>(Bytes::from(serde_json::to_vec(&value).unwrap()))
                })
                .await
                .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        json_of(&store.get(&k).await.unwrap().value)["data"]["n"],
        TOTAL.to_string()
    );

    // An update that changes nothing writes nothing.
    let before = store.get(&k).await.unwrap();
    let same = guaranteed_update(&store, &k, &Preconditions::none(), |current| {
        Ok::<_, Error>(current.value.clone())
    })
    .await
    .unwrap();
    assert_eq!(same.revision, before.revision);
    assert_eq!(store.current_revision().await.unwrap(), before.revision);
}

/// N concurrent plain updates from the same revision: exactly one wins.
pub async fn run_concurrent_updates_one_wins(backend: &TestBackend) {
    let store = backend.open(test_options()).await;
    let k = key("race", "ns", "r");
    let created = store.create(&k, object("r", &[], json!({}))).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            store
                .update(
                    &k,
                    object("r", &[], json!({"by": i.to_string()})),
                    &Preconditions::revision(created.revision),
                )
                .await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => wins += 1,
            Err(Error::Conflict { .. }) => {}
            Err(err) => panic!("unexpected {err}"),
        }
    }
    assert_eq!(wins, 1);
}

/// A paginated list during concurrent writes returns exactly the snapshot of its first page.
pub async fn run_paginated_list_snapshot(backend: &TestBackend) {
    let store = backend.open(test_options()).await;
    let cluster = "pages";
    for i in 0..60 {
        let name = format!("o{i:03}");
        store
            .create(
                &key(cluster, &format!("ns{}", i % 3), &name),
                object(&name, &[], json!({"v": "0"})),
            )
            .await
            .unwrap();
    }
    let snapshot: Vec<(ObjectKey, Bytes)> = store
        .list(&ListRequest::new(scope(cluster, None)))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| (o.key, o.value))
        .collect();
    assert_eq!(snapshot.len(), 60);
    let mut request = ListRequest::new(scope(cluster, None));
    request.limit = Some(7);
    let mut page = store.list(&request).await.unwrap();
    let mut seen: Vec<(ObjectKey, Bytes)> = page
        .items
        .iter()
        .map(|o| (o.key.clone(), o.value.clone()))
        .collect();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..60 {
                let name = format!("o{i:03}");
                let k = key(cluster, &format!("ns{}", i % 3), &name);
                match i % 3 {
                    0 => drop(store.delete(&k, &Preconditions::none()).await.unwrap()),
                    1 => drop(
                        store
                            .update(&k, object(&name, &[], json!({"v": "1"})), &Preconditions::none())
                            .await
                            .unwrap(),
                    ),
                    _ => drop(
                        store
                            .create(
                                &key(cluster, "ns0", &format!("new{i}")),
                                object("n", &[], json!({})),
                            )
                            .await
                            .unwrap(),
                    ),
                }
            }
        })
    };
    let mut pages = 1;
    while let Some(token) = page.continue_token.clone() {
        let mut next = ListRequest::new(scope(cluster, None));
        next.limit = Some(7);
        next.continue_token = Some(token);
        let following = store.list(&next).await.unwrap();
        assert_eq!(
            following.revision, page.revision,
            "pages share one snapshot revision"
        );
        seen.extend(following.items.iter().map(|o| (o.key.clone(), o.value.clone())));
        page = following;
        pages += 1;
    }
    writer.await.unwrap();
    assert_eq!(pages, 9);
    assert_eq!(seen, snapshot);
    // The same snapshot is readable exactly, and the latest state differs from it.
    let mut exact = ListRequest::new(scope(cluster, None));
    exact.revision = ReadRevision::Exact(page.revision);
    let exact: Vec<(ObjectKey, Bytes)> = store
        .list(&exact)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| (o.key, o.value))
        .collect();
    assert_eq!(exact, snapshot);
    let latest: Vec<ObjectKey> = store
        .list(&ListRequest::new(scope(cluster, None)))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_ne!(
        latest,
        snapshot.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()
    );
    // Garbage continue tokens are refused.
    let mut bad = ListRequest::new(scope(cluster, None));
    bad.continue_token = Some("garbage!".into());
    assert!(matches!(store.list(&bad).await, Err(Error::InvalidContinue(_))));
}

/// Clusters, namespaces and names are exact: no prefix or pattern leaks.
pub async fn run_isolation(backend: &TestBackend) {
    let store = backend.open(test_options()).await;
    let names = [
        "x",
        "x/y",
        "x%",
        "x_",
        "%",
        "_",
        "ünï/cødé",
        "x\\y",
        "..",
        "x'; DROP TABLE kv; --",
    ];
    for (cluster, namespace) in [
        ("a", "ns1"),
        ("ab", "ns1"),
        ("a", "ns10"),
        ("a", ""),
        ("a%", "ns1"),
    ] {
        for name in names {
            let value = object(
                name,
                &[("cluster", cluster)],
                json!({"cluster": cluster, "ns": namespace}),
            );
            store.create(&key(cluster, namespace, name), value).await.unwrap();
        }
    }
    let list = |cluster: &'static str, namespace: Option<&'static str>| {
        let store = store.clone();
        async move {
            store
                .list(&ListRequest::new(scope(cluster, namespace)))
                .await
                .unwrap()
                .items
        }
    };
    let in_a_ns1 = list("a", Some("ns1")).await;
    assert_eq!(in_a_ns1.len(), names.len());
    for item in &in_a_ns1 {
        let value = json_of(&item.value);
        assert_eq!(
            (value["data"]["cluster"].as_str(), value["data"]["ns"].as_str()),
            (Some("a"), Some("ns1"))
        );
    }
    assert_eq!(list("a", None).await.len(), names.len() * 3);
    assert_eq!(list("ab", None).await.len(), names.len());
    assert_eq!(list("a%", None).await.len(), names.len());
    assert!(list("b", None).await.is_empty());
    for name in names {
        let got = store.get(&key("a", "ns1", name)).await.unwrap();
        assert_eq!(json_of(&got.value)["metadata"]["name"], name);
    }
    assert!(matches!(
        store.get(&key("a", "ns1", "x*")).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.get(&key("a", "ns", "x")).await,
        Err(Error::NotFound { .. })
    ));
    // A watch sees only its own cluster and namespace.
    let from = store.current_revision().await.unwrap();
    let mut watch = store
        .watch(WatchRequest {
            scope: scope("a", Some("ns1")),
            after_revision: Some(from),
            progress_interval: None,
        })
        .await
        .unwrap();
    store
        .create(&key("ab", "ns1", "late"), object("late", &[], json!({})))
        .await
        .unwrap();
    store
        .create(&key("a", "ns10", "late"), object("late", &[], json!({})))
        .await
        .unwrap();
    let mine = store
        .create(&key("a", "ns1", "late"), object("late", &[], json!({})))
        .await
        .unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!(event, WatchEvent::Added(mine));
    // The wildcard scope, for system components, sees every cluster.
    let all = store
        .list(&ListRequest::new(Scope::new(
            ClusterScope::All,
            "core/configmaps",
            Some("ns1".into()),
        )))
        .await
        .unwrap();
    assert_eq!(all.items.len(), names.len() * 3 + 2);
}

/// Label selectors give the same answer as the in-memory matcher, on current and past snapshots —
/// with SQLite's label index trailing the rows by one revision, by a few (so that a list reads both
/// the index and the rows after it) and by more than the test writes.
pub async fn run_label_selectors(backend: &TestBackend) {
    for index_lag in [1, 5, 1_000_000] {
        let options = StoreOptions {
            sqlite_index_lag: index_lag,
            ..test_options()
        };
        let store = backend.open(options).await;
        check_label_selectors(&store, &format!("labels-{index_lag}")).await;
    }
}

async fn check_label_selectors(store: &SqlStore, cluster: &str) {
    let label_sets: [&[(&str, &str)]; 6] = [
        &[("app", "web"), ("tier", "front")],
        &[("app", "web"), ("tier", "back")],
        &[("app", "db")],
        &[("tier", "front"), ("app.kubernetes.io/name", "x")],
        &[],
        &[("app", "web"), ("legacy", "")],
    ];
    for round in 0..4 {
        for (index, labels) in label_sets.iter().enumerate() {
            let name = format!("o{round}-{index}");
            store
                .create(&key(cluster, "ns", &name), object(&name, labels, json!({})))
                .await
                .unwrap();
        }
    }
    let before_change = store.current_revision().await.unwrap();
    store
        .update(
            &key(cluster, "ns", "o0-0"),
            object("o0-0", &[("app", "db")], json!({})),
            &Preconditions::none(),
        )
        .await
        .unwrap();
    store
        .delete(&key(cluster, "ns", "o1-2"), &Preconditions::none())
        .await
        .unwrap();
    let selectors = [
        "app=web",
        "app==web,tier=front",
        "app!=web",
        "app in (web,db)",
        "app notin (web)",
        "tier",
        "!tier",
        "app=web,!legacy",
        "app.kubernetes.io/name=x",
        "app=nope",
        "",
    ];
    for text in selectors {
        let selector = LabelSelector::parse(text).unwrap();
        for at in [ReadRevision::Latest, ReadRevision::Exact(before_change)] {
            let all = {
                let mut request = ListRequest::new(scope(cluster, None));
                request.revision = at;
                store.list(&request).await.unwrap().items
            };
            let expected: Vec<String> = all
                .iter()
                .filter(|o| {
                    let labels = json_of(&o.value)["metadata"]["labels"].clone();
                    let labels: crate::Labels = serde_json::from_value(labels).unwrap();
                    selector.matches(&labels)
                })
                .map(|o| o.key.name.clone())
                .collect();
            let mut request = ListRequest::new(scope(cluster, None));
            request.selector = selector.clone();
            request.revision = at;
            let got: Vec<String> = store
                .list(&request)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|o| o.key.name)
                .collect();
            assert_eq!(got, expected, "selector {text:?} at {at:?}");
        }
    }
}

/// History outside the window is dropped; reads and watches before it get `Expired`.
pub async fn run_compaction(backend: &TestBackend) {
    let options = StoreOptions {
        compaction_window: Duration::ZERO,
        compaction_min_revisions: 10,
        compaction_batch_rows: 7,
        ..test_options()
    };
    let store = backend.open(options).await;
    let cluster = "compact";
    let first = store
        .create(&key(cluster, "ns", "keep"), object("keep", &[], json!({})))
        .await
        .unwrap();
    let mut request = ListRequest::new(scope(cluster, None));
    request.limit = Some(1);
    store
        .create(&key(cluster, "ns", "other"), object("other", &[], json!({})))
        .await
        .unwrap();
    let page = store.list(&request).await.unwrap();
    let old_token = page.continue_token.clone().unwrap();
    for i in 0..40 {
        store
            .update(
                &key(cluster, "ns", "other"),
                object("other", &[], json!({"i": i.to_string()})),
                &Preconditions::none(),
            )
            .await
            .unwrap();
    }
    let current = store.current_revision().await.unwrap();
    let done = store.compact().await.unwrap();
    assert_eq!(done.compacted_revision, current - 10);
    assert!(done.removed_rows >= 25, "{done:?}");
    // The live objects are untouched, whatever their age.
    assert_eq!(store.get(&key(cluster, "ns", "keep")).await.unwrap(), first);
    assert_eq!(
        store
            .list(&ListRequest::new(scope(cluster, None)))
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let expired = store
        .watch(WatchRequest {
            scope: scope(cluster, None),
            after_revision: Some(first.revision),
            progress_interval: None,
        })
        .await;
    assert!(matches!(expired, Err(Error::Expired { .. })));
    let mut exact = ListRequest::new(scope(cluster, None));
    exact.revision = ReadRevision::Exact(first.revision);
    assert!(matches!(store.list(&exact).await, Err(Error::Expired { .. })));
    let mut continued = ListRequest::new(scope(cluster, None));
    continued.continue_token = Some(old_token);
    assert!(matches!(store.list(&continued).await, Err(Error::Expired { .. })));
    // At the compacted revision, history is complete.
    let mut watch = store
        .watch(WatchRequest {
            scope: scope(cluster, None),
            after_revision: Some(done.compacted_revision),
            progress_interval: None,
        })
        .await
        .unwrap();
    let events = events_until(&mut watch, current).await;
    assert_eq!(events.len(), 10);
    assert_eq!(
        events.first().map(WatchEvent::revision),
        Some(done.compacted_revision + 1)
    );
    exact.revision = ReadRevision::Exact(done.compacted_revision);
    assert_eq!(store.list(&exact).await.unwrap().items.len(), 2);
    // Compacting again with nothing new to drop is a no-op.
    assert_eq!(store.compact().await.unwrap().removed_rows, 0);
}

/// Progress events carry the current revision when only other scopes change; reads ahead of the
/// store wait briefly and then fail with `TooLargeRevision`.
pub async fn run_progress_and_revisions(backend: &TestBackend) {
    let store = backend.open(test_options()).await;
    let request = WatchRequest {
        scope: scope("quiet", None),
        after_revision: None,
        progress_interval: Some(Duration::from_millis(50)),
    };
    let mut watch = store.watch(request).await.unwrap();
    let elsewhere = store
        .create(&key("busy", "ns", "x"), object("x", &[], json!({})))
        .await
        .unwrap();
    match next_event(&mut watch).await {
        WatchEvent::Progress { revision } => assert_eq!(revision, elsewhere.revision),
        other => panic!("expected progress, got {other:?}"),
    }
    let current = store.current_revision().await.unwrap();
    let mut ahead = ListRequest::new(scope("quiet", None));
    ahead.revision = ReadRevision::NotOlderThan(current + 1000);
    assert!(matches!(
        store.list(&ahead).await,
        Err(Error::TooLargeRevision { .. })
    ));
    ahead.revision = ReadRevision::NotOlderThan(current);
    assert_eq!(store.list(&ahead).await.unwrap().revision, current);
    let ahead_watch = WatchRequest {
        scope: scope("quiet", None),
        after_revision: Some(current + 1000),
        progress_interval: None,
    };
    assert!(matches!(
        store.watch(ahead_watch).await,
        Err(Error::TooLargeRevision { .. })
    ));
}

/// Closing and reopening keeps every object with its revision; revisions continue upward; a watch
/// from before the restart receives what changed since.
pub async fn run_reopen(backend: &TestBackend) {
    let cluster = "reopen";
    let (before, taken_at) = {
        let store = backend.open(test_options()).await;
        let a = store
            .create(&key(cluster, "ns", "a"), object("a", &[], json!({})))
            .await
            .unwrap();
        let taken_at = store.current_revision().await.unwrap();
        let b = store
            .create(&key(cluster, "ns", "b"), object("b", &[], json!({})))
            .await
            .unwrap();
        (vec![a, b], taken_at)
    };
    let store = backend.open(test_options()).await;
    let listed = store.list(&ListRequest::new(scope(cluster, None))).await.unwrap();
    assert_eq!(listed.items, before);
    let c = store
        .create(&key(cluster, "ns", "c"), object("c", &[], json!({})))
        .await
        .unwrap();
    assert!(c.revision > before[1].revision);
    let mut watch = store
        .watch(WatchRequest {
            scope: scope(cluster, None),
            after_revision: Some(taken_at),
            progress_interval: None,
        })
        .await
        .unwrap();
    let events = events_until(&mut watch, c.revision).await;
    assert_eq!(
        events,
        vec![WatchEvent::Added(before[1].clone()), WatchEvent::Added(c)]
    );
}

/// Entry point of the writer child process of the crash and cross-process tests: opens the store
/// named by the environment and creates objects from 8 tasks as fast as it can, printing
/// `ACK <name> <revision>` after each acknowledged write, until it is killed or, when
/// `COXSWAIN_CHILD_WRITES` is set, each task has written that many.
pub async fn crash_child_main() {
    let storage = std::env::var("COXSWAIN_CRASH_STORAGE").expect("run only by the crash test");
    let dir = PathBuf::from(std::env::var("COXSWAIN_CRASH_DIR").expect("run only by the crash test"));
    let store = SqlStore::open(&storage, &dir, test_options())
        .await
        .expect("open");
    let limit: u64 = std::env::var("COXSWAIN_CHILD_WRITES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut tasks = Vec::new();
    for task in 0..8 {
        let store = store.clone();
        let stdout = stdout.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..limit {
                let name = format!("t{task}-{i}");
                let stored = store
                    .create(&key("crash", "ns", &name), object(&name, &[], json!({})))
                    .await
                    .expect("create");
                use std::io::Write;
                let mut out = stdout.lock().expect("stdout");
                writeln!(out, "ACK {name} {} {}", stored.revision, unix_micros()).expect("stdout");
                out.flush().expect("flush");
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// The command that runs [`crash_child_main`] (the test `test_name` of this test binary) against
/// `backend`'s store.
fn writer_child(backend: &TestBackend, test_name: &str) -> tokio::process::Command {
    let (storage, dir) = backend.storage();
    let mut command = tokio::process::Command::new(std::env::current_exe().expect("test binary"));
    command
        .args([
            "--ignored",
            "--exact",
            test_name,
            "--nocapture",
            "--test-threads=1",
        ])
        .env("COXSWAIN_CRASH_STORAGE", &storage)
        .env("COXSWAIN_CRASH_DIR", &dir);
    command
}

/// Kills a writing child process with SIGKILL at a random moment; every write it acknowledged must
/// be there after reopening, and revisions continue upward. `test_name` is the test in the calling
/// test binary that runs [`crash_child_main`].
pub async fn run_crash_recovery(backend: &TestBackend, test_name: &str) {
    let mut child = writer_child(backend, test_name)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn child");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut acked: Vec<(String, u64)> = Vec::new();
    let kill_after = 100 + rand::rng().random_range(0..400usize);
    let deadline = Instant::now() + DEADLINE;
    while acked.len() < kill_after {
        let line = timeout(deadline - Instant::now(), lines.next_line())
            .await
            .expect("child writes")
            .expect("read");
        let line = line.expect("child exited before it was killed");
        if let Some(ack) = parse_ack(&line) {
            acked.push(ack);
        }
    }
    child.start_kill().expect("SIGKILL");
    // Acknowledgements printed before the kill count too.
    while let Ok(Ok(Some(line))) = timeout(DEADLINE, lines.next_line()).await {
        if let Some(ack) = parse_ack(&line) {
            acked.push(ack);
        }
    }
    let status = child.wait().await.expect("wait");
    assert!(!status.success(), "child was killed");
    let store = backend.open(test_options()).await;
    let mut highest = 0;
    for (name, revision) in &acked {
        let stored = store
            .get(&key("crash", "ns", name))
            .await
            .unwrap_or_else(|err| panic!("acknowledged {name} lost: {err}"));
        assert_eq!(stored.revision, *revision);
        highest = highest.max(*revision);
    }
    let after = store
        .create(&key("crash", "ns", "after"), object("after", &[], json!({})))
        .await
        .unwrap();
    assert!(after.revision > highest);
    // Revisions are dense across the crash: whatever committed without an acknowledgement is there too.
    let all = store.list(&ListRequest::new(scope("crash", None))).await.unwrap();
    let revisions: BTreeSet<u64> = all.items.iter().map(|o| o.revision).collect();
    assert_eq!(revisions.len(), all.items.len());
    assert_eq!(
        revisions.iter().copied().collect::<Vec<_>>(),
        (1..=after.revision).collect::<Vec<_>>()
    );
    eprintln!(
        "crash test: {} acknowledged writes survived SIGKILL; {} objects after reopening",
        acked.len(),
        all.items.len()
    );
}

/// The acknowledgement time (unix micros) of an `ACK` line.
fn ack_time(line: &str) -> Option<u128> {
    line[line.find("ACK ")?..].split(' ').nth(3)?.parse().ok()
}

/// A watcher in this process sees every write another process makes, in order and without gaps
/// (PostgreSQL: woken by NOTIFY; SQLite: by polling). `test_name` runs [`crash_child_main`].
pub async fn run_cross_process_watch(backend: &TestBackend, test_name: &str) {
    const WRITES_PER_TASK: usize = 25;
    let store = backend.open(test_options()).await;
    // The schema exists before the child opens the store; watch from the current revision.
    let from = store.current_revision().await.unwrap();
    let request = WatchRequest {
        scope: scope("crash", None),
        after_revision: Some(from),
        progress_interval: None,
    };
    let mut watch = store.watch(request).await.unwrap();
    let child = writer_child(backend, test_name)
        .env("COXSWAIN_CHILD_WRITES", WRITES_PER_TASK.to_string())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output();
    // Watch while the child writes, noting when each event arrives.
    let watching = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < 8 * WRITES_PER_TASK {
            let event = next_event(&mut watch).await;
            if let Some(object) = event.object() {
                seen.push((object.key.name.clone(), event.revision(), unix_micros()));
            }
        }
        seen
    });
    let output = timeout(DEADLINE, child)
        .await
        .expect("child finishes")
        .expect("run child");
    assert!(output.status.success(), "child failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut acked: Vec<(String, u64)> = stdout.lines().filter_map(parse_ack).collect();
    acked.sort_by_key(|(_, revision)| *revision);
    assert_eq!(acked.len(), 8 * WRITES_PER_TASK);
    let last = acked.last().map(|(_, revision)| *revision).unwrap();
    let arrivals = watching.await.unwrap();
    let seen: Vec<(String, u64)> = arrivals
        .iter()
        .map(|(name, revision, _)| (name.clone(), *revision))
        .collect();
    let acked_at: std::collections::HashMap<u64, u128> = stdout
        .lines()
        .filter_map(|line| Some((parse_ack(line)?.1, ack_time(line)?)))
        .collect();
    let mut delays: Vec<u128> = arrivals
        .iter()
        .filter_map(|(_, revision, at)| Some(at.saturating_sub(*acked_at.get(revision)?)))
        .collect();
    delays.sort_unstable();
    eprintln!(
        "cross-process watch ({}): acknowledged in the writer → delivered to the watcher: median {} µs, max {} µs",
        match backend {
            TestBackend::Sqlite { .. } => "sqlite",
            TestBackend::Postgres { .. } => "postgres",
        },
        delays.get(delays.len() / 2).copied().unwrap_or(0),
        delays.last().copied().unwrap_or(0)
    );
    assert_eq!(
        seen, acked,
        "the other process's writes, in revision order, each once"
    );
    assert_eq!(
        seen.iter().map(|(_, revision)| *revision).collect::<Vec<_>>(),
        (from + 1..=last).collect::<Vec<_>>()
    );
}

fn unix_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

/// `ACK <name> <revision> <unix micros>` → (name, revision); see [`ack_time`] for the time.
fn parse_ack(line: &str) -> Option<(String, u64)> {
    // libtest may print `test crash_child ... ` on the same line before the child's first output.
    let start = line.find("ACK ")?;
    let mut parts = line[start + 4..].split(' ');
    let name = parts.next()?.to_string();
    let revision = parts.next()?.parse().ok()?;
    Some((name, revision))
}

/// Opening something that is not a Coxswain SQLite database fails with a message naming the cause,
/// and leaves the file untouched.
pub async fn run_sqlite_refuses_bad_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("coxswain.db");
    let garbage = b"this is not a database, and it must survive being opened".repeat(100);
    std::fs::write(&path, &garbage).expect("write");
    let err = SqlStore::open("sqlite", dir.path(), test_options())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not an SQLite database"), "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), garbage);

    let foreign = tempfile::tempdir().expect("temp dir");
    let path = foreign.path().join("coxswain.db");
    {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .expect("sqlite");
        sqlx::query("CREATE TABLE users (id INTEGER)")
            .execute(&mut conn)
            .await
            .expect("create");
    }
    let err = SqlStore::open("sqlite", foreign.path(), test_options())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did not create (users)"), "{err}");

    let newer = TestBackend::sqlite();
    drop(newer.open(test_options()).await);
    {
        let (_, dir) = newer.storage();
        let url = format!("sqlite://{}", dir.join("coxswain.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
        sqlx::query("INSERT INTO coxswain_schema (version) VALUES (99)")
            .execute(&mut conn)
            .await
            .expect("insert");
    }
    let (storage, dir) = newer.storage();
    let err = SqlStore::open(&storage, &dir, test_options()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("newer than this coxswain binary supports"),
        "{err}"
    );

    let err = SqlStore::open("mysql://x", Path::new("."), test_options())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown storage"), "{err}");
}

/// Two stores (as two processes would) on one database: a write through either reaches watchers of
/// both, in the same order, and concurrent writes through both keep one dense revision sequence.
pub async fn run_shared_database(backend: &TestBackend) {
    let a = backend.open(test_options()).await;
    let b = backend.open(test_options()).await;
    let cluster = "shared";
    let from = a.current_revision().await.unwrap();
    let request = WatchRequest {
        scope: scope(cluster, None),
        after_revision: Some(from),
        progress_interval: None,
    };
    let mut watch_a = a.watch(request.clone()).await.unwrap();
    let mut watch_b = b.watch(request).await.unwrap();
    // One write from A, timed to B's watcher.
    let started = Instant::now();
    let first = a
        .create(&key(cluster, "ns", "first"), object("first", &[], json!({})))
        .await
        .unwrap();
    assert_eq!(next_event(&mut watch_b).await, WatchEvent::Added(first.clone()));
    eprintln!(
        "shared database: write in store A seen by a watcher of store B after {:?}",
        started.elapsed()
    );
    let mut tasks = Vec::new();
    for (index, store) in [a.clone(), b.clone()].into_iter().enumerate() {
        for writer in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut revisions = Vec::new();
                for i in 0..25 {
                    let name = format!("s{index}-{writer}-{i}");
                    revisions.push(
                        store
                            .create(&key(cluster, "ns", &name), object(&name, &[], json!({})))
                            .await
                            .unwrap()
                            .revision,
                    );
                }
                revisions
            }));
        }
    }
    let mut acked = vec![first.revision];
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    acked.sort_unstable();
    let last = *acked.last().unwrap();
    assert_eq!(
        acked,
        (from + 1..=last).collect::<Vec<_>>(),
        "one dense revision sequence across stores"
    );
    let seen_a: Vec<u64> = events_until(&mut watch_a, last)
        .await
        .iter()
        .map(WatchEvent::revision)
        .collect();
    let mut seen_b = vec![first.revision];
    seen_b.extend(
        events_until(&mut watch_b, last)
            .await
            .iter()
            .map(WatchEvent::revision),
    );
    assert_eq!(seen_a, acked);
    assert_eq!(seen_b, acked);

    // Both stores race to create the same keys: exactly one create of each key wins.
    let mut races = Vec::new();
    for store in [a.clone(), b.clone()] {
        for i in 0..16 {
            let store = store.clone();
            races.push(tokio::spawn(async move {
                let name = format!("contested-{i}");
                store
                    .create(&key(cluster, "ns", &name), object(&name, &[], json!({})))
                    .await
            }));
        }
    }
    let mut won = 0;
    for race in races {
        match race.await.unwrap() {
            Ok(_) => won += 1,
            Err(Error::AlreadyExists { .. }) => {}
            Err(other) => panic!("unexpected error from a contested create: {other}"),
        }
    }
    assert_eq!(won, 16, "each contested key is created exactly once");
}

/// A throwaway PostgreSQL server in a temp dir (initdb + postgres), stopped by pid on drop.
#[derive(Debug)]
pub struct PostgresServer {
    bindir: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<std::process::Child>,
}

impl PostgresServer {
    /// Initialises and starts a server with the binaries in `COXSWAIN_TEST_PG_BINDIR`.
    pub fn start() -> Self {
        let bindir = PathBuf::from(
            std::env::var("COXSWAIN_TEST_PG_BINDIR")
                .expect("COXSWAIN_TEST_PG_BINDIR must name PostgreSQL's bin dir"),
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        chown_to_postgres(dir.path());
        chown_to_postgres(&data);
        let status = as_postgres(&bindir.join("initdb"))
            .args([
                "-D",
                data.to_str().expect("utf-8"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .status()
            .expect("initdb");
        assert!(status.success(), "initdb failed");
        let mut server = Self {
            bindir,
            dir,
            port,
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let data = self.dir.path().join("data");
        let child = as_postgres(&self.bindir.join("postgres"))
            .args([
                "-D",
                data.to_str().expect("utf-8"),
                "-k",
                self.dir.path().to_str().expect("utf-8"),
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=on",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + DEADLINE;
        let ready = || {
            std::process::Command::new(self.bindir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        };
        while !ready() {
            assert!(std::time::Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (fast shutdown) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = std::process::Command::new("kill").args(["-INT", &pid]).status();
            let _ = child.wait();
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn chown_to_postgres(path: &Path) {
    if is_root() {
        let status = std::process::Command::new("chown")
            .args(["postgres:postgres"])
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success());
    }
}

/// A command that runs as the `postgres` user when we are root (PostgreSQL refuses root).
fn as_postgres(program: &Path) -> std::process::Command {
    if is_root() {
        let mut command = std::process::Command::new("setpriv");
        command
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(program);
        command
    } else {
        std::process::Command::new(program)
    }
}

/// PostgreSQL stopped and restarted under an open watch: the watcher resumes without a gap, and
/// writes during the outage fail instead of being acknowledged.
pub async fn run_postgres_restart_under_watch() {
    let mut server = PostgresServer::start();
    let url = fresh_database(&server.url()).await;
    let backend = TestBackend::Postgres { url };
    let store = backend.open(test_options()).await;
    let cluster = "restart";
    let before = store
        .create(&key(cluster, "ns", "before"), object("before", &[], json!({})))
        .await
        .unwrap();
    let mut watch = store
        .watch(WatchRequest {
            scope: scope(cluster, None),
            after_revision: Some(before.revision - 1),
            progress_interval: None,
        })
        .await
        .unwrap();
    assert_eq!(next_event(&mut watch).await, WatchEvent::Added(before.clone()));
    tokio::task::spawn_blocking({
        let mut stopper = server.child.take();
        move || {
            if let Some(child) = stopper.as_mut() {
                let _ = std::process::Command::new("kill")
                    .args(["-INT", &child.id().to_string()])
                    .status();
                let _ = child.wait();
            }
        }
    })
    .await
    .unwrap();
    let during = store
        .create(&key(cluster, "ns", "during"), object("during", &[], json!({})))
        .await;
    assert!(matches!(during, Err(ref err) if err.is_transient()), "{during:?}");
    server.restart();
    // The pool reconnects; retry until a write goes through.
    let deadline = Instant::now() + DEADLINE;
    let mut written = Vec::new();
    for i in 0..20 {
        let name = format!("after{i}");
        loop {
            match store
                .create(&key(cluster, "ns", &name), object(&name, &[], json!({})))
                .await
            {
                Ok(stored) => {
                    written.push(stored);
                    break;
                }
                Err(err) if err.is_transient() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(err) => panic!("write after restart failed: {err}"),
            }
        }
    }
    let last = written.last().unwrap().revision;
    let events = events_until(&mut watch, last).await;
    let expected: Vec<WatchEvent> = written.into_iter().map(WatchEvent::Added).collect();
    assert_eq!(events, expected, "no gap and no repeat across the restart");
    let revisions: Vec<u64> = events.iter().map(WatchEvent::revision).collect();
    assert_eq!(revisions, (before.revision + 1..=last).collect::<Vec<_>>());
}

/// A foreign database, a newer schema and an unreachable server each fail with a message naming the
/// cause; nothing is migrated.
pub async fn run_postgres_refuses_bad_databases() {
    let base = std::env::var("COXSWAIN_TEST_POSTGRES_URL").expect("COXSWAIN_TEST_POSTGRES_URL");
    let foreign = fresh_database(&base).await;
    {
        let mut conn = sqlx::PgConnection::connect(&foreign).await.expect("connect");
        sqlx::query("CREATE TABLE users (id int)")
            .execute(&mut conn)
            .await
            .expect("create");
    }
    let err = SqlStore::open(&foreign, Path::new("."), test_options())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did not create (users)"), "{err}");
    {
        let mut conn = sqlx::PgConnection::connect(&foreign).await.expect("connect");
        let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        assert_eq!(tables, 1, "nothing was migrated into the foreign database");
    }

    let newer = TestBackend::postgres().await;
    drop(newer.open(test_options()).await);
    let (url, dir) = newer.storage();
    {
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query("INSERT INTO coxswain_schema (version) VALUES (99)")
            .execute(&mut conn)
            .await
            .expect("insert");
    }
    let err = SqlStore::open(&url, &dir, test_options()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("newer than this coxswain binary supports"),
        "{err}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let unreachable = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let err = SqlStore::open(&unreachable, &dir, test_options())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot connect to PostgreSQL"), "{err}");
}
