//! `cql_metrics_zone`: the shared-memory zone every worker counts into.
//!
//! The zone is NGINX's: `ngx_shared_memory_add` makes it, NGINX maps it before the workers
//! fork, and a reload that keeps its name and size hands the old zone to the new
//! configuration, counts and all ([`init_zone`]), as NGINX's own zones do. The counters take
//! the zone's free pages in one slab allocation; [`crate::metrics::Zone`] lays them out.
//!
//! The servers with `cql on` are named after their first `listen` address and get a slot
//! each while the zone is set up; the `cql_metrics` handler of an `http` server finds the
//! zone by name ([`find`]).

use core::ffi::{c_char, c_void};
use core::ptr::{addr_of, null_mut};
use core::sync::atomic::AtomicU64;

use std::rc::Rc;
use std::sync::OnceLock;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_int_t, ngx_pool_cleanup_add, ngx_shm_zone_t,
    ngx_stream_conf_ctx_t, ngx_stream_core_main_conf_t, ngx_stream_core_module, NGX_ERROR,
    NGX_LOG_EMERG, NGX_OK,
};
#[cfg(ngx_stream_ports)]
use ngx::ffi::{ngx_stream_conf_addr_t, ngx_stream_conf_port_t, ngx_stream_core_srv_conf_t};
use ngx::{ngx_conf_log_error, ngx_log_error};

use super::config::{parse_size, SrvConf};
use super::module::{ctx_index, ngx_stream_cql_module};
use crate::metrics::{ServerMeter, Zone};

/// `roles=` and `keyspaces=` defaults: names of each kept as labels before `other`.
const DEFAULT_NAMES: usize = 32;
/// Their upper bound: each pair is a counter per server.
const MAX_NAMES: usize = 1024;

/// The `stream` block's metrics configuration.
pub struct MainConf {
    /// The zone, if `cql_metrics_zone` names one.
    zone: *mut ngx_shm_zone_t,
    roles: usize,
    keyspaces: usize,
    /// The servers that count into it, by name.
    servers: Vec<(String, Rc<ServerMeter>)>,
    /// The counters, once the zone is set up (in the master, before the workers fork).
    counters: Option<(&'static [AtomicU64], Zone)>,
    /// The zones of the per-key limits (`cql_limit_req_zone`, `cql_limit_conn_zone`).
    pub limits: super::limit_zones::Zones,
}

pub unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    let cleanup = ngx_pool_cleanup_add((*cf).pool, 0);
    if cleanup.is_null() {
        return null_mut();
    }
    let conf = Box::into_raw(Box::new(MainConf {
        zone: null_mut(),
        roles: DEFAULT_NAMES,
        keyspaces: DEFAULT_NAMES,
        servers: Vec::new(),
        counters: None,
        limits: Default::default(),
    }));
    (*cleanup).handler = Some(drop_main_conf);
    (*cleanup).data = conf.cast();
    conf.cast()
}

unsafe extern "C" fn drop_main_conf(data: *mut c_void) {
    drop(Box::from_raw(data as *mut MainConf));
}

/// The `stream` block's configuration of the module (metrics and limit zones).
pub(super) unsafe fn main_conf_of(
    ctx: *mut ngx_stream_conf_ctx_t,
) -> Option<&'static mut MainConf> {
    let conf = *(*ctx).main_conf.add(ctx_index()) as *mut MainConf;
    conf.as_mut()
}

/// `cql_metrics_zone name:size [roles=N] [keyspaces=N]`
pub unsafe extern "C" fn set_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let conf = &mut *(conf as *mut MainConf);
    if !conf.zone.is_null() {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"cql_metrics_zone\" is duplicate");
        return NGX_CONF_ERROR;
    }
    let args = super::settings::args(cf);
    let Some((zone, options)) = args.get(1..).and_then(<[String]>::split_first) else {
        return NGX_CONF_ERROR;
    };
    let (name, size) = match zone.split_once(':') {
        Some((name, size)) if !name.is_empty() => (name, size),
        _ => {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "invalid zone \"{}\" of \"cql_metrics_zone\": expected name:size, e.g. cql:1m",
                zone
            );
            return NGX_CONF_ERROR;
        }
    };
    let min = super::shm::min_size();
    let size = match parse_size(size) {
        Some(size) if size >= min => size,
        _ => {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "zone \"{}\" of \"cql_metrics_zone\" has an invalid size \"{}\": at least {}k",
                name,
                size,
                min / 1024
            );
            return NGX_CONF_ERROR;
        }
    };
    for option in options {
        let parsed = option.split_once('=').and_then(|(key, value)| {
            let n = value
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_NAMES).contains(n))?;
            Some((key, n))
        });
        match parsed {
            Some(("roles", n)) => conf.roles = n,
            Some(("keyspaces", n)) => conf.keyspaces = n,
            _ => {
                ngx_conf_log_error!(
                    NGX_LOG_EMERG,
                    cf,
                    "invalid parameter \"{}\" of \"cql_metrics_zone\": expected roles=N or \
                     keyspaces=N, N from 1 to {}",
                    option,
                    MAX_NAMES
                );
                return NGX_CONF_ERROR;
            }
        }
    }
    let tag = addr_of!(ngx_stream_cql_module) as *mut c_void;
    let zone = match super::shm::declare(cf, name, size, tag) {
        Ok(Some(zone)) => zone,
        Ok(None) => return NGX_CONF_ERROR,
        Err(()) => {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "zone \"{}\" of \"cql_metrics_zone\" is already declared",
                name
            );
            return NGX_CONF_ERROR;
        }
    };
    (*zone).init = Some(init_zone);
    (*zone).data = (conf as *mut MainConf).cast();
    conf.zone = zone;
    NGX_CONF_OK
}

/// After the `stream` block is read: every server with `cql on` counts into the zone,
/// named after its first `listen` address.
pub unsafe fn collect_servers(cf: *mut ngx_conf_t) -> bool {
    let ctx = (*cf).ctx as *mut ngx_stream_conf_ctx_t;
    let Some(conf) = main_conf_of(ctx) else {
        return true;
    };
    if conf.zone.is_null() {
        return true;
    }
    let cmcf =
        *(*ctx).main_conf.add(ngx_stream_core_module.ctx_index) as *mut ngx_stream_core_main_conf_t;
    let Some(cmcf) = cmcf.as_ref() else {
        return true;
    };
    let mut seen: Vec<*mut ngx_stream_conf_ctx_t> = Vec::new();
    for (address, server) in listens(cmcf) {
        if server.is_null() || seen.contains(&server) {
            continue;
        }
        seen.push(server);
        let srv = *(*server).srv_conf.add(ctx_index()) as *const SrvConf;
        let Some(srv) = srv.as_ref() else {
            continue;
        };
        if let (true, Some(settings)) = (srv.enabled(), srv.settings()) {
            conf.servers.push((address, settings.meter.clone()));
        }
    }
    true
}

/// Every `listen` of the stream block, in the order NGINX keeps them, with the server it is
/// of: NGINX 1.25.5 and later keep them by port and address, each with its servers.
#[cfg(ngx_stream_ports)]
unsafe fn listens(cmcf: &ngx_stream_core_main_conf_t) -> Vec<(String, *mut ngx_stream_conf_ctx_t)> {
    let mut listens = Vec::new();
    let Some(ports) = cmcf.ports.as_ref() else {
        return listens;
    };
    let ports =
        core::slice::from_raw_parts(ports.elts as *const ngx_stream_conf_port_t, ports.nelts);
    for port in ports {
        let addrs = core::slice::from_raw_parts(
            port.addrs.elts as *const ngx_stream_conf_addr_t,
            port.addrs.nelts,
        );
        for addr in addrs {
            let address = String::from_utf8_lossy(addr.opt.addr_text.as_bytes()).into_owned();
            let servers = core::slice::from_raw_parts(
                addr.servers.elts as *const *mut ngx_stream_core_srv_conf_t,
                addr.servers.nelts,
            );
            for &cscf in servers {
                if let Some(cscf) = cscf.as_ref() {
                    listens.push((address.clone(), cscf.ctx));
                }
            }
        }
    }
    listens
}

/// Before NGINX 1.25.5, one array of `listen`s, each with its server.
#[cfg(not(ngx_stream_ports))]
unsafe fn listens(cmcf: &ngx_stream_core_main_conf_t) -> Vec<(String, *mut ngx_stream_conf_ctx_t)> {
    let listen = &cmcf.listen;
    let listens = core::slice::from_raw_parts(
        listen.elts as *const ngx::ffi::ngx_stream_listen_t,
        listen.nelts,
    );
    listens
        .iter()
        .map(|l| {
            (
                String::from_utf8_lossy(l.addr_text.as_bytes()).into_owned(),
                l.ctx,
            )
        })
        .collect()
}

/// Sets the zone up for a configuration: the old zone's counters when NGINX reuses it
/// (`data` is the old configuration's [`MainConf`]; a reload may not change its layout),
/// else the free pages of a new one.
unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    let conf = &mut *((*zone).data as *mut MainConf);
    let log = (*zone).shm.log;
    let name = String::from_utf8_lossy((*zone).shm.name.as_bytes()).into_owned();
    let old = (data as *const MainConf).as_ref();
    if let Some(old) = old {
        // The old workers go on counting where the old layout put each counter until they
        // exit: another layout over the same memory would mix their counts into wrong ones.
        if (old.roles, old.keyspaces) != (conf.roles, conf.keyspaces) {
            ngx_log_error!(
                NGX_LOG_EMERG,
                log,
                "cql_metrics_zone \"{}\" was declared with roles={} keyspaces={}: to change \
                 them, give the zone another name or size",
                name,
                old.roles,
                old.keyspaces
            );
            return NGX_ERROR as ngx_int_t;
        }
    }
    let words = match old.and_then(|old| old.counters) {
        Some((words, _)) => words,
        None => {
            let Some(words) = super::shm::take_free_pages(zone) else {
                ngx_log_error!(
                    NGX_LOG_EMERG,
                    log,
                    "cql_metrics_zone \"{}\": cannot allocate {} bytes of the zone",
                    name,
                    super::shm::free_bytes(zone)
                );
                return NGX_ERROR as ngx_int_t;
            };
            words
        }
    };
    let Some(counters) = Zone::attach(words, conf.roles, conf.keyspaces) else {
        ngx_log_error!(
            NGX_LOG_EMERG,
            log,
            "cql_metrics_zone \"{}\" of {} bytes is too small for one server with roles={} \
             keyspaces={}",
            name,
            (*zone).shm.size,
            conf.roles,
            conf.keyspaces
        );
        return NGX_ERROR as ngx_int_t;
    };
    for (server, meter) in &conf.servers {
        let Some(slot) = counters.server_slot(server) else {
            let layout = counters.layout();
            ngx_log_error!(
                NGX_LOG_EMERG,
                log,
                "cql_metrics_zone \"{}\" holds {} servers and is full: make it larger (each \
                 server takes about {}k with roles={} keyspaces={})",
                name,
                layout.servers,
                layout.bytes() / layout.servers.max(1) / 1024 + 1,
                conf.roles,
                conf.keyspaces
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
        .find_map(|zone| Some((zone.data as *const MainConf).as_ref()?.counters?.1))
}

/// Whether a cycle declares a metrics zone named `name` (any, if `None`).
pub unsafe fn declared(cycle: *mut ngx_cycle_t, name: Option<&[u8]>) -> bool {
    !zones_named(cycle, name).is_empty()
}

/// The shared-memory zones of a cycle that `cql_metrics_zone` declared, named `name` (all,
/// if `None`).
unsafe fn zones_named<'a>(cycle: *mut ngx_cycle_t, name: Option<&[u8]>) -> Vec<&'a ngx_shm_zone_t> {
    let tag = addr_of!(ngx_stream_cql_module) as *mut c_void;
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
