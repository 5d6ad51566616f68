//! All `unsafe` NGINX glue lives in this folder, and only here.
//!
//! - [`module`]: the `ngx_module_t`, its stream context and the directive table;
//! - [`config`]: the per-server configuration, merging and the size directives;
//! - [`settings`]: the identity, policy and audit directives, checked when the configuration
//!   loads;
//! - [`audit_log`]: `cql_audit_log` files and syslog targets, written through NGINX's logging;
//! - [`filter`]: the stream filter that feeds a [`crate::session::Session`] with bytes;
//! - [`variables`]: the `$cql_*` stream variables;
//! - [`metrics_zone`]: `cql_metrics_zone`, the shared memory the workers count into;
//! - [`metrics_http`]: `cql_metrics`, the `http` module that shows it to Prometheus;
//! - [`limit_zones`]: `cql_limit_req_zone` and `cql_limit_conn_zone`, the shared memory of
//!   the per-key limits;
//! - [`shm`]: declaring a shared-memory zone and taking its pages, for both kinds of zone;
//!
//! Nothing outside this folder sees an NGINX type.

// A worker must never panic on a peer's bytes: with `panic = "abort"` a panic kills it.
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::panic))]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod audit_log;
mod config;
mod error_log;
mod filter;
mod limit_zones;
pub mod metrics_http;
mod metrics_zone;
pub mod module;
mod settings;
mod shm;
mod variables;
