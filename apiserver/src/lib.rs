//! Coxswain's Kubernetes HTTP API: the TLS server, authentication, discovery, OpenAPI and the
//! generic REST handler that serves every resource in the [`registry`] through the storage engine.

pub mod allocator;
pub mod apply;
pub mod auth;
pub mod cel;
pub mod conversion;
pub mod crd;
pub mod deletion;
pub mod discovery;
pub mod error;
pub mod fields;
pub mod garbage;
pub mod jsonpath;
pub mod managed;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod protobuf;
pub mod registry;
pub mod request;
pub mod rest;
pub mod schema;
pub mod server;
pub mod strategy;
pub mod structural;
pub mod table;
pub mod validation;

pub use server::{RunningServer, ServerConfig, ServerError, start};
