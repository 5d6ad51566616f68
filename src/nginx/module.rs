//! The module definition: `ngx_module_t`, its stream context and the directive table.

use core::ptr::{addr_of, addr_of_mut, null_mut};

use ngx::ffi::{
    ngx_command_t, ngx_conf_set_flag_slot, ngx_conf_t, ngx_int_t, ngx_module_t, ngx_str_t,
    ngx_stream_module_t, NGX_CONF_1MORE, NGX_CONF_FLAG, NGX_CONF_TAKE1, NGX_CONF_TAKE12,
    NGX_CONF_TAKE2, NGX_CONF_TAKE23, NGX_STREAM_MAIN_CONF, NGX_STREAM_MAIN_CONF_OFFSET,
    NGX_STREAM_MODULE, NGX_STREAM_SRV_CONF, NGX_STREAM_SRV_CONF_OFFSET,
};
use ngx::ngx_string;

use super::config::{self, SrvConf};
use super::settings;
use super::{filter, limit_zones, metrics_zone, variables};

static mut CTX: ngx_stream_module_t = ngx_stream_module_t {
    preconfiguration: Some(preconfiguration),
    postconfiguration: Some(postconfiguration),
    create_main_conf: Some(metrics_zone::create_main_conf),
    init_main_conf: None,
    create_srv_conf: Some(config::create_srv_conf),
    merge_srv_conf: Some(config::merge_srv_conf),
};

/// Context of a directive: `stream` and `server` blocks.
const STREAM_AND_SERVER: u32 = NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF;

static mut COMMANDS: [ngx_command_t; 43] = [
    ngx_command_t {
        name: ngx_string!("cql"),
        type_: (STREAM_AND_SERVER | NGX_CONF_FLAG) as _,
        set: Some(ngx_conf_set_flag_slot),
        conf: NGX_STREAM_SRV_CONF_OFFSET,
        offset: core::mem::offset_of!(SrvConf, enabled),
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("cql_max_frame_size"),
        type_: (STREAM_AND_SERVER | NGX_CONF_TAKE1) as _,
        set: Some(config::set_max_frame_size),
        conf: NGX_STREAM_SRV_CONF_OFFSET,
        offset: core::mem::offset_of!(SrvConf, max_frame_size),
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("cql_max_handshake_frame_size"),
        type_: (STREAM_AND_SERVER | NGX_CONF_TAKE1) as _,
        set: Some(config::set_max_handshake_frame_size),
        conf: NGX_STREAM_SRV_CONF_OFFSET,
        offset: core::mem::offset_of!(SrvConf, max_handshake_frame_size),
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("cql_max_auth_response_size"),
        type_: (STREAM_AND_SERVER | NGX_CONF_TAKE1) as _,
        set: Some(config::set_max_auth_response_size),
        conf: NGX_STREAM_SRV_CONF_OFFSET,
        offset: core::mem::offset_of!(SrvConf, max_auth_response_size),
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("cql_max_auth_attempts"),
        type_: (STREAM_AND_SERVER | NGX_CONF_TAKE1) as _,
        set: Some(config::set_max_auth_attempts),
        conf: NGX_STREAM_SRV_CONF_OFFSET,
        offset: core::mem::offset_of!(SrvConf, max_auth_attempts),
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("cql_auth_timeout"),
        type_: (STREAM_AND_SERVER | NGX_CONF_TAKE1) as _,
        set: Some(config::set_auth_timeout),
        conf: NGX_STREAM_SRV_CONF_OFFSET,
        offset: core::mem::offset_of!(SrvConf, auth_timeout),
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("cql_max_queued_size"),
        type_: (STREAM_AND_SERVER | NGX_CONF_TAKE1) as _,
        set: Some(config::set_max_queued_size),
        conf: NGX_STREAM_SRV_CONF_OFFSET,
        offset: core::mem::offset_of!(SrvConf, max_queued_size),
        post: null_mut(),
    },
    setting(ngx_string!("cql_auth"), NGX_CONF_TAKE1),
    setting(ngx_string!("cql_jwt_keys"), NGX_CONF_1MORE),
    setting(ngx_string!("cql_jwt_secret"), NGX_CONF_TAKE1),
    setting(ngx_string!("cql_jwt_algorithms"), NGX_CONF_1MORE),
    setting(ngx_string!("cql_jwt_issuer"), NGX_CONF_1MORE),
    setting(ngx_string!("cql_jwt_audience"), NGX_CONF_1MORE),
    setting(ngx_string!("cql_jwt_leeway"), NGX_CONF_TAKE1),
    setting(ngx_string!("cql_jwt_require_claims"), NGX_CONF_1MORE),
    setting(ngx_string!("cql_jwt_claim_principal"), NGX_CONF_TAKE1),
    setting(ngx_string!("cql_jwt_claim_roles"), NGX_CONF_TAKE1),
    setting(ngx_string!("cql_jwt_claim_attributes"), NGX_CONF_1MORE),
    setting(ngx_string!("cql_token_cache"), NGX_CONF_TAKE1),
    setting(ngx_string!("cql_decision_cache"), NGX_CONF_TAKE1),
    setting(ngx_string!("cql_prepared_cache"), NGX_CONF_TAKE12),
    setting(ngx_string!("cql_upstream_auth"), NGX_CONF_TAKE2),
    setting(ngx_string!("cql_policy"), NGX_CONF_TAKE1),
    setting(ngx_string!("cql_allow_unbound_identities"), NGX_CONF_TAKE1),
    setting(ngx_string!("cql_stream_reuse"), NGX_CONF_TAKE1),
    setting(ngx_string!("cql_topology"), NGX_CONF_1MORE),
    setting(ngx_string!("cql_topology_node"), NGX_CONF_TAKE2),
    setting(ngx_string!("cql_audit_log"), NGX_CONF_1MORE),
    setting(ngx_string!("cql_audit_categories"), NGX_CONF_1MORE),
    setting(ngx_string!("cql_audit_exclude_categories"), NGX_CONF_1MORE),
    setting(ngx_string!("cql_audit_keyspaces"), NGX_CONF_1MORE),
    setting(ngx_string!("cql_audit_exclude_keyspaces"), NGX_CONF_1MORE),
    setting(ngx_string!("cql_audit_denied_only"), NGX_CONF_TAKE1),
    setting(ngx_string!("cql_audit_redact_literals"), NGX_CONF_TAKE1),
    setting(ngx_string!("cql_limit_req"), NGX_CONF_TAKE12),
    setting(ngx_string!("cql_limit_conn"), NGX_CONF_TAKE2),
    setting(ngx_string!("cql_limit_in_flight"), NGX_CONF_TAKE2),
    setting(ngx_string!("cql_dry_run"), NGX_CONF_TAKE1),
    setting(ngx_string!("cql_upstream_credentials"), NGX_CONF_TAKE1),
    ngx_command_t {
        name: ngx_string!("cql_limit_req_zone"),
        type_: (NGX_STREAM_MAIN_CONF | NGX_CONF_TAKE23) as _,
        set: Some(limit_zones::set_req_zone),
        conf: NGX_STREAM_MAIN_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("cql_limit_conn_zone"),
        type_: (NGX_STREAM_MAIN_CONF | NGX_CONF_TAKE2) as _,
        set: Some(limit_zones::set_conn_zone),
        conf: NGX_STREAM_MAIN_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("cql_metrics_zone"),
        type_: (NGX_STREAM_MAIN_CONF | NGX_CONF_1MORE) as _,
        set: Some(metrics_zone::set_zone),
        conf: NGX_STREAM_MAIN_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t::empty(),
];

/// A directive kept in the Rust settings, handled by [`settings::set_directive`].
const fn setting(name: ngx_str_t, args: u32) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: (STREAM_AND_SERVER | args) as _,
        set: Some(settings::set_directive),
        conf: NGX_STREAM_SRV_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    }
}

/// The module NGINX loads. Its name is the file name's stem, as NGINX expects.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_stream_cql_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(CTX) as *mut _,
    commands: unsafe { addr_of_mut!(COMMANDS[0]) },
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
    if !super::audit_log::check_files(cf) || !metrics_zone::collect_servers(cf) {
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
