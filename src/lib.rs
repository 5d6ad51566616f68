//! `ngx_stream_cql_module`: a CQL-aware identity proxy inside NGINX's stream module.
//!
//! This file only wires. The pure, NGINX-free parts live in their own folders:
//! - [`codec`]: the CQL native protocol (envelopes, v5 segments, compression, messages);
//! - [`classify`]: what a CQL statement does and which permissions it needs;
//! - [`identity`]: who the client is (OIDC tokens, TLS client certificates);
//! - [`policy`]: what an identity may do (roles, grants, guardrails);
//! - [`audit`]: audit records, their filters and their lines (JSON, Cassandra's format);
//! - [`metrics`]: counters all workers share, rendered for Prometheus;
//! - [`topology`]: the cluster as clients see it (system.local/peers rows, topology events);
//! - [`session`]: the per-connection state machine that the NGINX filter feeds with bytes.
//!
//! Every `unsafe` NGINX call lives in [`nginx`].

pub mod audit;
pub mod classify;
pub mod codec;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod policy;
pub mod session;
pub mod topology;

mod nginx;

// The modules this file holds (`ngx_modules`, `ngx_module_names`) are exported by
// `nginx::module`: the stream module and the `http` module of `cql_metrics`.
