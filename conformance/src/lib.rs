//! Coxswain's end-to-end suites and benchmarks: `coxswain bench storage` (the storage engine alone
//! against the plain-INSERT ceiling of the same database) and the harness that drives real kubectl
//! binaries against a server started in the test process (`tests/kubectl.rs`).

pub mod bench;
pub mod helm;
pub mod kubectl;
pub mod raw;
