//! All `unsafe` NGINX glue lives in this folder, and only here.
//!
//! - [`module`]: the `ngx_module_t` and its stream context;
//! - [`conf`]: the directives, one file per group, with the per-server configuration and its
//!   merge, checked when the configuration loads;
//! - [`audit_log`]: `cql_audit_log` files and syslog targets, written through NGINX's logging;
//! - [`error_log`]: the one way into NGINX's error log while the module runs;
//! - [`filter`]: the stream filter that feeds a [`crate::session::Session`] with bytes;
//! - [`variables`]: the `$cql_*` stream variables;
//! - [`metrics_zone`]: the shared memory of `cql_metrics_zone`, which the workers count into;
//! - [`metrics_http`]: `cql_metrics`, the `http` module that shows it to Prometheus;
//! - [`limit_zones`]: the shared memory of `cql_limit_req_zone` and `cql_limit_conn_zone`, the
//!   per-key limits;
//! - [`shm`]: declaring a shared-memory zone and taking its pages, for both kinds of zone;
//!
//! Nothing outside this folder sees an NGINX type.

// A worker must never panic on a peer's bytes: with `panic = "abort"` a panic kills it.
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::panic))]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod audit_log;
mod conf;
mod error_log;
mod filter;
mod limit_zones;
pub mod metrics_http;
mod metrics_zone;
pub mod module;
mod shm;
mod variables;
