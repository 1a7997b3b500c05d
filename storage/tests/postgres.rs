//! The storage contract suite against PostgreSQL (a fresh database per test on the
//! server named by `COXSWAIN_TEST_POSTGRES_URL`).

use coxswain_storage::testing::{self, TestBackend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crud() {
    testing::run_crud(&TestBackend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_writers_and_watchers() {
    testing::run_concurrent_writers_and_watchers(&TestBackend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_guaranteed_update_counter() {
    testing::run_guaranteed_update_counter(&TestBackend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_updates_one_wins() {
    testing::run_concurrent_updates_one_wins(&TestBackend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_paginated_list_snapshot() {
    testing::run_paginated_list_snapshot(&TestBackend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_isolation() {
    testing::run_isolation(&TestBackend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_label_selectors() {
    testing::run_label_selectors(&TestBackend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_compaction() {
    testing::run_compaction(&TestBackend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_progress_and_revisions() {
    testing::run_progress_and_revisions(&TestBackend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reopen() {
    testing::run_reopen(&TestBackend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_recovery() {
    testing::run_crash_recovery(&TestBackend::postgres().await, "crash_child").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_watch() {
    testing::run_postgres_restart_under_watch().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_foreign_newer_and_unreachable_databases() {
    testing::run_postgres_refuses_bad_databases().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_stores_one_database() {
    testing::run_shared_database(&TestBackend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cross_process_watch() {
    testing::run_cross_process_watch(&TestBackend::postgres().await, "crash_child").await;
}

/// Not a test: the writer child process of `postgres_crash_recovery` and `postgres_cross_process_watch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of the crash test"]
async fn crash_child() {
    testing::crash_child_main().await;
}
