//! Coxswain's end-to-end suites and benchmarks. For now: `coxswain bench storage`, which measures the
//! storage engine alone against the plain-INSERT ceiling of the same database.

pub mod bench;
