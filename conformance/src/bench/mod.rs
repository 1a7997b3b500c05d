//! Benchmarks behind `coxswain bench …`. Each prints one JSON line so that runs can be compared and
//! collected by scripts.

pub mod storage;
