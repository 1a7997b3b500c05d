//! The storage contract suite against the SQLite backend (a fresh file per test).

use coxswain_storage::testing::{self, TestBackend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_crud() {
    testing::run_crud(&TestBackend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_writers_and_watchers() {
    testing::run_concurrent_writers_and_watchers(&TestBackend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_guaranteed_update_counter() {
    testing::run_guaranteed_update_counter(&TestBackend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_updates_one_wins() {
    testing::run_concurrent_updates_one_wins(&TestBackend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_paginated_list_snapshot() {
    testing::run_paginated_list_snapshot(&TestBackend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_isolation() {
    testing::run_isolation(&TestBackend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_label_selectors() {
    testing::run_label_selectors(&TestBackend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_compaction() {
    testing::run_compaction(&TestBackend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_progress_and_revisions() {
    testing::run_progress_and_revisions(&TestBackend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reopen() {
    testing::run_reopen(&TestBackend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_crash_recovery() {
    testing::run_crash_recovery(&TestBackend::sqlite(), "crash_child").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_bad_files() {
    testing::run_sqlite_refuses_bad_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shared_file() {
    testing::run_shared_database(&TestBackend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_cross_process_watch() {
    testing::run_cross_process_watch(&TestBackend::sqlite(), "crash_child").await;
}

/// Not a test: the writer child process of `sqlite_crash_recovery` and `sqlite_cross_process_watch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of the crash test"]
async fn crash_child() {
    testing::crash_child_main().await;
}

/// The contract again with the key and label indexes trailing the rows by at most 3 revisions, so
/// that gets, lists, lookups, the create check and compaction meet indexed rows and the tail.
mod short_index_lag {
    use coxswain_storage::testing::{self, TestBackend};

    fn backend() -> TestBackend {
        TestBackend::sqlite_with_index_lag(3)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_crud() {
        testing::run_crud(&backend()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_concurrent_writers_and_watchers() {
        testing::run_concurrent_writers_and_watchers(&backend()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_guaranteed_update_counter() {
        testing::run_guaranteed_update_counter(&backend()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_concurrent_updates_one_wins() {
        testing::run_concurrent_updates_one_wins(&backend()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_paginated_list_snapshot() {
        testing::run_paginated_list_snapshot(&backend()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_isolation() {
        testing::run_isolation(&backend()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_compaction() {
        testing::run_compaction(&backend()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_reopen() {
        testing::run_reopen(&backend()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_shared_file() {
        testing::run_shared_database(&backend()).await;
    }
}
