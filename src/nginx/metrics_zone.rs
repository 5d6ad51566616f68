//! `cql_metrics_zone`: the shared-memory zone every worker counts into.
//!
//! The zone is NGINX's: `ngx_shared_memory_add` makes it (see [`super::conf::zones`]), NGINX
//! maps it before the workers fork, and a reload that keeps its name and size hands the old
//! zone to the new configuration, counts and all ([`init_zone`]), as NGINX's own zones do.
//! The counters take the zone's free pages in one slab allocation; [`crate::metrics::Zone`]
//! lays them out.
//!
//! The servers with `cql on` get a slot each while the zone is set up; the `cql_metrics`
//! handler of an `http` server finds the zone by name ([`find`]).

use core::ffi::c_void;
use core::ptr::{addr_of, null_mut};
use core::sync::atomic::AtomicU64;

use std::rc::Rc;
use std::sync::OnceLock;

use super::error_log::{self, Level};
use ngx::ffi::{ngx_cycle_t, ngx_int_t, ngx_shm_zone_t, NGX_ERROR, NGX_OK};

use super::module::ngx_stream_cql_module;
use crate::metrics::{ServerMeter, Zone};

/// The metrics zone of a `stream` block.
pub struct MetricsZone {
    /// The zone, if `cql_metrics_zone` names one.
    zone: *mut ngx_shm_zone_t,
    /// `roles=` and `keyspaces=`: names of each kept as labels before `other`.
    pub roles: usize,
    pub keyspaces: usize,
    /// The servers that count into it, by name.
    servers: Vec<(String, Rc<ServerMeter>)>,
    /// The counters, once the zone is set up (in the master, before the workers fork).
    counters: Option<(&'static [AtomicU64], Zone)>,
}

impl MetricsZone {
    /// No zone yet, with `roles` and `keyspaces` names kept as labels.
    pub fn new(roles: usize, keyspaces: usize) -> MetricsZone {
        MetricsZone {
            zone: null_mut(),
            roles,
            keyspaces,
            servers: Vec::new(),
            counters: None,
        }
    }

    /// Whether `cql_metrics_zone` declared the zone.
    pub fn is_declared(&self) -> bool {
        !self.zone.is_null()
    }

    /// The zone NGINX declared for `cql_metrics_zone`: set up by [`init_zone`] when NGINX
    /// maps it. `self` must not move for as long as the zone lives (it is the configuration's).
    pub unsafe fn attach(&mut self, zone: *mut ngx_shm_zone_t) {
        (*zone).init = Some(init_zone);
        (*zone).data = (self as *mut MetricsZone).cast();
        self.zone = zone;
    }

    /// A server that counts into the zone, by name.
    pub fn add_server(&mut self, name: String, meter: Rc<ServerMeter>) {
        self.servers.push((name, meter));
    }
}

/// The tag of the metrics zones: the module.
pub fn tag() -> *mut c_void {
    addr_of!(ngx_stream_cql_module) as *mut c_void
}

/// Sets the zone up for a configuration: the old zone's counters when NGINX reuses it
/// (`data` is the old configuration's [`MetricsZone`]; a reload may not change its layout),
/// else the free pages of a new one.
unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    let conf = &mut *((*zone).data as *mut MetricsZone);
    let log = (*zone).shm.log;
    let name = String::from_utf8_lossy((*zone).shm.name.as_bytes()).into_owned();
    let old = (data as *const MetricsZone).as_ref();
    if let Some(old) = old {
        // The old workers go on counting where the old layout put each counter until they
        // exit: another layout over the same memory would mix their counts into wrong ones.
        if (old.roles, old.keyspaces) != (conf.roles, conf.keyspaces) {
            error_log::write(
                log,
                Level::Emerg,
                format_args!(
                    "cql_metrics_zone \"{}\" was declared with roles={} keyspaces={}: to change \
                 them, give the zone another name or size",
                    name, old.roles, old.keyspaces
                ),
            );
            return NGX_ERROR as ngx_int_t;
        }
    }
    let words = match old.and_then(|old| old.counters) {
        Some((words, _)) => words,
        None => {
            let Some(words) = super::shm::take_free_pages(zone, log, "cql_metrics_zone", &name)
            else {
                return NGX_ERROR as ngx_int_t;
            };
            words
        }
    };
    let Some(counters) = Zone::attach(words, conf.roles, conf.keyspaces) else {
        error_log::write(
            log,
            Level::Emerg,
            format_args!(
                "cql_metrics_zone \"{}\" of {} bytes is too small for one server with roles={} \
             keyspaces={}",
                name,
                (*zone).shm.size,
                conf.roles,
                conf.keyspaces
            ),
        );
        return NGX_ERROR as ngx_int_t;
    };
    for (server, meter) in &conf.servers {
        let Some(slot) = counters.server_slot(server) else {
            let layout = counters.layout();
            error_log::write(
                log,
                Level::Emerg,
                format_args!(
                    "cql_metrics_zone \"{}\" holds {} servers and is full: make it larger (each \
                 server takes about {}k with roles={} keyspaces={})",
                    name,
                    layout.servers,
                    layout.bytes() / layout.servers.max(1) / 1024 + 1,
                    conf.roles,
                    conf.keyspaces
                ),
            );
            return NGX_ERROR as ngx_int_t;
        };
        meter.bind(counters, slot);
    }
    conf.counters = Some((words, counters));
    NGX_OK as ngx_int_t
}

/// The zone of the running configuration, for this worker's audit logs.
static WORKER_ZONE: OnceLock<Zone> = OnceLock::new();

/// In each worker process: counts go to the worker's own stripe, and the audit logs count
/// into the zone.
pub unsafe fn init_worker(cycle: *mut ngx_cycle_t) {
    crate::metrics::set_worker(ngx::ffi::ngx_worker);
    if let Some(zone) = find(cycle, None) {
        let _ = WORKER_ZONE.set(zone);
    }
}

/// The zone the audit logs of this worker count into, if there is one.
pub fn worker_zone() -> Option<&'static Zone> {
    WORKER_ZONE.get()
}

/// The metrics zone named `name` (any, if `None`) of a cycle, once set up.
pub unsafe fn find(cycle: *mut ngx_cycle_t, name: Option<&[u8]>) -> Option<Zone> {
    zones_named(cycle, name)
        .into_iter()
        .find_map(|zone| Some((zone.data as *const MetricsZone).as_ref()?.counters?.1))
}

/// Whether a cycle declares a metrics zone named `name` (any, if `None`).
pub unsafe fn declared(cycle: *mut ngx_cycle_t, name: Option<&[u8]>) -> bool {
    !zones_named(cycle, name).is_empty()
}

/// The shared-memory zones of a cycle that `cql_metrics_zone` declared, named `name` (all,
/// if `None`).
unsafe fn zones_named<'a>(cycle: *mut ngx_cycle_t, name: Option<&[u8]>) -> Vec<&'a ngx_shm_zone_t> {
    let tag = tag();
    let mut found = Vec::new();
    let mut part = addr_of!((*cycle).shared_memory.part);
    while let Some(p) = part.as_ref() {
        let zones = core::slice::from_raw_parts(p.elts as *const ngx_shm_zone_t, p.nelts);
        found.extend(
            zones
                .iter()
                .filter(|z| z.tag == tag && name.is_none_or(|n| n == z.shm.name.as_bytes())),
        );
        part = p.next;
    }
    found
}
