//! The `stream` block's own configuration: `cql_metrics_zone`, the shared memory the workers
//! count into, and `cql_limit_req_zone` and `cql_limit_conn_zone`, the shared memory of the
//! per-key limits. The zones are declared here; setting them up when NGINX maps them is
//! [`crate::nginx::metrics_zone`]'s and [`crate::nginx::limit_zones`]'.
//!
//! Once the block is read, the servers with `cql on` are named after their first `listen`
//! address and get a slot each in the metrics zone ([`collect_servers`]).

use core::ffi::{c_char, c_void};
use core::ptr::null_mut;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_stream_conf_ctx_t, ngx_stream_core_main_conf_t,
    ngx_stream_core_module, NGX_CONF_1MORE, NGX_CONF_TAKE2, NGX_CONF_TAKE23, NGX_STREAM_MAIN_CONF,
    NGX_STREAM_MAIN_CONF_OFFSET,
};
#[cfg(ngx_stream_ports)]
use ngx::ffi::{ngx_stream_conf_addr_t, ngx_stream_conf_port_t, ngx_stream_core_srv_conf_t};
use ngx::ngx_string;

use super::super::limit_zones::{self, Layout, Zones};
use super::super::metrics_zone::{self, MetricsZone};
use super::super::module::ctx_index;
use super::super::shm;
use super::{command, owned_by_pool, parse_size, refuse, words, Handler, SrvConf};
use crate::limits::{CountZone, KeyTemplate, Rate, RateZone};

/// `roles=` and `keyspaces=` defaults: names of each kept as labels before `other`.
const DEFAULT_NAMES: usize = 32;
/// Their upper bound: each pair is a counter per server.
const MAX_NAMES: usize = 1024;

/// The `stream` block's configuration of the module.
pub struct MainConf {
    /// `cql_metrics_zone`.
    pub metrics: MetricsZone,
    /// The zones of the per-key limits (`cql_limit_req_zone`, `cql_limit_conn_zone`).
    pub limits: Zones,
}

/// A directive of the `stream` block itself.
const fn main(name: ngx::ffi::ngx_str_t, args: u32, set: Handler) -> ngx_command_t {
    command(
        name,
        NGX_STREAM_MAIN_CONF | args,
        set,
        NGX_STREAM_MAIN_CONF_OFFSET,
        0,
    )
}

pub(super) const COMMANDS: [ngx_command_t; 3] = [
    main(
        ngx_string!("cql_limit_req_zone"),
        NGX_CONF_TAKE23,
        set_limit_req_zone,
    ),
    main(
        ngx_string!("cql_limit_conn_zone"),
        NGX_CONF_TAKE2,
        set_limit_conn_zone,
    ),
    main(
        ngx_string!("cql_metrics_zone"),
        NGX_CONF_1MORE,
        set_metrics_zone,
    ),
];

pub unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    let conf = MainConf {
        metrics: MetricsZone::new(DEFAULT_NAMES, DEFAULT_NAMES),
        limits: Zones::default(),
    };
    match owned_by_pool((*cf).pool, conf) {
        Some(conf) => conf.cast(),
        None => null_mut(),
    }
}

/// The `stream` block's configuration of the module (metrics and limit zones).
pub unsafe fn main_conf_of(ctx: *mut ngx_stream_conf_ctx_t) -> Option<&'static mut MainConf> {
    let conf = *(*ctx).main_conf.add(ctx_index()) as *mut MainConf;
    conf.as_mut()
}

/// `cql_metrics_zone name:size [roles=N] [keyspaces=N]`
unsafe extern "C" fn set_metrics_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let conf = &mut *(conf as *mut MainConf);
    if conf.metrics.is_declared() {
        return refuse(cf, format_args!("\"cql_metrics_zone\" is duplicate"));
    }
    let words = words(&*cf);
    let Some((zone, options)) = words.get(1..).and_then(<[&str]>::split_first) else {
        return NGX_CONF_ERROR;
    };
    let (name, size) = match zone.split_once(':') {
        Some((name, size)) if !name.is_empty() => (name, size),
        _ => {
            return refuse(
                cf,
                format_args!(
                "invalid zone \"{zone}\" of \"cql_metrics_zone\": expected name:size, e.g. cql:1m"
            ),
            )
        }
    };
    let min = shm::min_size();
    let size = match parse_size(size) {
        Some(size) if size >= min => size,
        _ => {
            return refuse(
                cf,
                format_args!(
                    "zone \"{name}\" of \"cql_metrics_zone\" has an invalid size \"{size}\": at least {}k",
                    min / 1024
                ),
            )
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
            Some(("roles", n)) => conf.metrics.roles = n,
            Some(("keyspaces", n)) => conf.metrics.keyspaces = n,
            _ => {
                return refuse(
                    cf,
                    format_args!(
                    "invalid parameter \"{option}\" of \"cql_metrics_zone\": expected roles=N or \
                         keyspaces=N, N from 1 to {MAX_NAMES}"
                ),
                )
            }
        }
    }
    match shm::declare(cf, name, size, metrics_zone::tag()) {
        Ok(Some(zone)) => {
            conf.metrics.attach(zone);
            NGX_CONF_OK
        }
        Ok(None) => NGX_CONF_ERROR,
        Err(()) => refuse(
            cf,
            format_args!("zone \"{name}\" of \"cql_metrics_zone\" is already declared"),
        ),
    }
}

/// `cql_limit_req_zone KEY zone=NAME:SIZE rate=RATE`
unsafe extern "C" fn set_limit_req_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    declare_limit_zone::<RateZone>(cf, conf)
}

/// `cql_limit_conn_zone KEY zone=NAME:SIZE`
unsafe extern "C" fn set_limit_conn_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    declare_limit_zone::<CountZone>(cf, conf)
}

unsafe fn declare_limit_zone<Z: Layout>(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
    let conf = &mut *(conf as *mut MainConf);
    let words = words(&*cf);
    let directive = Z::DIRECTIVE;
    let fail = |message: String| refuse(cf, format_args!("\"{directive}\": {message}"));
    let Some((key, params)) = words.get(1..).and_then(<[&str]>::split_first) else {
        return NGX_CONF_ERROR;
    };
    let template = match KeyTemplate::parse(key) {
        Ok(template) => template,
        Err(reason) => return fail(reason),
    };
    let mut zone = None;
    let mut rate = None;
    for param in params {
        if let Some(value) = param.strip_prefix("zone=") {
            let Some((name, size)) = value.split_once(':').filter(|(n, _)| !n.is_empty()) else {
                return fail(format!(
                    "invalid zone \"{value}\": expected zone=name:size, e.g. zone=per_user:1m"
                ));
            };
            let min = shm::min_size();
            match parse_size(size) {
                Some(bytes) if bytes >= min => zone = Some((name.to_string(), bytes)),
                _ => {
                    return fail(format!(
                        "zone \"{name}\" has an invalid size \"{size}\": at least {}k",
                        min / 1024
                    ))
                }
            }
        } else if let (Some(value), "cql_limit_req_zone") = (param.strip_prefix("rate="), directive)
        {
            match Rate::parse(value) {
                Ok(r) => rate = Some(r),
                Err(reason) => return fail(reason),
            }
        } else {
            return fail(format!("invalid parameter \"{param}\""));
        }
    }
    let Some((name, size)) = zone else {
        return fail("no zone=name:size is given".to_string());
    };
    if directive == "cql_limit_req_zone" && rate.is_none() {
        return fail("no rate=Nr/s or rate=Nr/m is given".to_string());
    }
    if conf.limits.any(&name) {
        return fail(format!("zone \"{name}\" is already declared"));
    }
    let shm = match shm::declare(cf, &name, size, limit_zones::tag()) {
        Ok(Some(shm)) => shm,
        Ok(None) => return NGX_CONF_ERROR,
        Err(()) => return fail(format!("zone \"{name}\" is already declared")),
    };
    conf.limits.attach::<Z>(shm, name, template, key, rate);
    NGX_CONF_OK
}

/// After the `stream` block is read: every server with `cql on` counts into the metrics
/// zone, named after its first `listen` address.
pub unsafe fn collect_servers(cf: *mut ngx_conf_t) -> bool {
    let ctx = (*cf).ctx as *mut ngx_stream_conf_ctx_t;
    let Some(conf) = main_conf_of(ctx) else {
        return true;
    };
    if !conf.metrics.is_declared() {
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
            conf.metrics.add_server(address, settings.meter.clone());
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
    for port in ports.as_slice::<ngx_stream_conf_port_t>() {
        for addr in port.addrs.as_slice::<ngx_stream_conf_addr_t>() {
            let address = String::from_utf8_lossy(addr.opt.addr_text.as_bytes()).into_owned();
            for &cscf in addr.servers.as_slice::<*mut ngx_stream_core_srv_conf_t>() {
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
    cmcf.listen
        .as_slice::<ngx::ffi::ngx_stream_listen_t>()
        .iter()
        .map(|l| {
            (
                String::from_utf8_lossy(l.addr_text.as_bytes()).into_owned(),
                l.ctx,
            )
        })
        .collect()
}
