//! The module definition: `ngx_module_t` and its stream context; the directive table is
//! [`super::conf`]'s.

use core::ptr::{addr_of, addr_of_mut};

use ngx::ffi::{ngx_conf_t, ngx_int_t, ngx_module_t, ngx_stream_module_t, NGX_STREAM_MODULE};

use super::conf::{self, zones};
use super::{filter, metrics_zone, variables};

static mut CTX: ngx_stream_module_t = ngx_stream_module_t {
    preconfiguration: Some(preconfiguration),
    postconfiguration: Some(postconfiguration),
    create_main_conf: Some(zones::create_main_conf),
    init_main_conf: None,
    create_srv_conf: Some(conf::create_srv_conf),
    merge_srv_conf: Some(conf::merge_srv_conf),
};

/// The module NGINX loads. Its name is the file name's stem, as NGINX expects.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_stream_cql_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(CTX) as *mut _,
    commands: unsafe { addr_of_mut!(conf::COMMANDS[0]) },
    type_: NGX_STREAM_MODULE as _,
    init_module: Some(init_module),
    init_process: Some(init_process),
    exit_process: Some(exit_process),
    ..ngx_module_t::default()
};

/// Runs when the whole configuration is loaded (also by `nginx -t`): audit files that a log
/// after the `stream` block writes too.
unsafe extern "C" fn init_module(cycle: *mut ngx::ffi::ngx_cycle_t) -> ngx_int_t {
    super::audit_log::check_files_at_load(cycle)
}

/// Runs when a worker starts: it counts into its own stripe of the metrics zone.
unsafe extern "C" fn init_process(cycle: *mut ngx::ffi::ngx_cycle_t) -> ngx_int_t {
    metrics_zone::init_worker(cycle);
    ngx::ffi::NGX_OK as ngx_int_t
}

/// Runs when a worker exits: buffered audit lines are written.
unsafe extern "C" fn exit_process(cycle: *mut ngx::ffi::ngx_cycle_t) {
    super::audit_log::flush_all(cycle);
}

/// Runs before the `stream` block is parsed: variables must exist before `log_format` uses them.
unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    variables::register(cf)
}

/// Runs after the `stream` block is parsed and merged: refuses an audit file another log of
/// the block writes too, names the servers that count into the metrics zone, then inserts
/// the filter at the top of the chain.
unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    if !super::audit_log::check_files(cf) || !zones::collect_servers(cf) {
        return ngx::ffi::NGX_ERROR as ngx_int_t;
    }
    filter::install();
    ngx::ffi::NGX_OK as ngx_int_t
}

/// The module's index into per-session context and per-server configuration arrays.
pub(super) fn ctx_index() -> usize {
    // SAFETY: NGINX sets ctx_index once while loading the configuration, before any
    // session exists; afterwards the module static is only read.
    unsafe { (*addr_of!(ngx_stream_cql_module)).ctx_index }
}

/// The modules of this file, as NGINX's `load_module` reads them: the stream module, and the
/// `http` module of `cql_metrics`.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_modules: [*const ngx_module_t; 3] = [
    addr_of!(ngx_stream_cql_module),
    addr_of!(super::metrics_http::ngx_http_cql_metrics_module),
    core::ptr::null(),
];

/// Their names, in the same order.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_module_names: [*const core::ffi::c_char; 3] = [
    c"ngx_stream_cql_module".as_ptr(),
    c"ngx_http_cql_metrics_module".as_ptr(),
    core::ptr::null(),
];

/// No module has to come before another.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_module_order: [*const core::ffi::c_char; 1] = [core::ptr::null()];
