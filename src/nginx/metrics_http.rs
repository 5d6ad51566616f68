//! `cql_metrics`: an `http` location that shows the metrics zone in the Prometheus text
//! format, as `stub_status` shows NGINX's own counters.
//!
//! A second module of the same `.so` (`ngx_http_cql_metrics_module`), so one `load_module`
//! brings both; without an `http` block it does nothing and the stream side does not miss
//! it. The zone is looked up by name at each scrape, so a reload that keeps it keeps the
//! series; a configuration whose `cql_metrics` names no `cql_metrics_zone` fails to load.

use core::ffi::{c_char, c_void};
use core::ptr::{addr_of, addr_of_mut, null_mut};

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_chain_t, ngx_command_t, ngx_conf_t, ngx_create_temp_buf, ngx_cycle_t, ngx_http_conf_ctx_t,
    ngx_http_core_loc_conf_t, ngx_http_core_module, ngx_http_discard_request_body, ngx_http_module,
    ngx_http_module_t, ngx_http_output_filter, ngx_http_request_t, ngx_http_send_header, ngx_int_t,
    ngx_module_t, ngx_pcalloc, ngx_pool_cleanup_add, ngx_str_t, NGX_CONF_NOARGS, NGX_CONF_TAKE1,
    NGX_ERROR, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET,
    NGX_HTTP_MODULE, NGX_HTTP_NOT_ALLOWED, NGX_HTTP_OK, NGX_HTTP_SERVICE_UNAVAILABLE, NGX_OK,
};
use ngx::ngx_string;

use super::error_log::{self, Level};

use super::conf::At;
use super::metrics_zone;
use crate::metrics::render;

/// A location's `cql_metrics`: the zone it shows (empty: the `stream` block's only zone).
#[repr(C)]
struct LocConf {
    zone: ngx_str_t,
}

/// Every `cql_metrics` of the `http` block, checked once the whole configuration is read.
struct MainConf {
    handlers: Vec<(At, Option<Vec<u8>>)>,
}

static mut CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: None,
    postconfiguration: None,
    create_main_conf: Some(create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(create_loc_conf),
    merge_loc_conf: None,
};

static mut COMMANDS: [ngx_command_t; 2] = [
    ngx_command_t {
        name: ngx_string!("cql_metrics"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1) as _,
        set: Some(set_metrics),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: null_mut(),
    },
    ngx_command_t::empty(),
];

/// The `http` module NGINX loads from the same file as the stream module.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_cql_metrics_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(CTX) as *mut _,
    commands: unsafe { addr_of_mut!(COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as _,
    init_module: Some(init_module),
    ..ngx_module_t::default()
};

unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    let cleanup = ngx_pool_cleanup_add((*cf).pool, 0);
    if cleanup.is_null() {
        return null_mut();
    }
    let conf = Box::into_raw(Box::new(MainConf {
        handlers: Vec::new(),
    }));
    (*cleanup).handler = Some(drop_main_conf);
    (*cleanup).data = conf.cast();
    conf.cast()
}

unsafe extern "C" fn drop_main_conf(data: *mut c_void) {
    drop(Box::from_raw(data as *mut MainConf));
}

unsafe extern "C" fn create_loc_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // Zeroed: no zone named.
    ngx_pcalloc((*cf).pool, core::mem::size_of::<LocConf>())
}

fn module_index() -> usize {
    // SAFETY: set by NGINX while loading the configuration, read-only afterwards.
    unsafe { (*addr_of!(ngx_http_cql_metrics_module)).ctx_index }
}

/// `cql_metrics [zone]`
unsafe extern "C" fn set_metrics(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let loc = &mut *(conf as *mut LocConf);
    if !loc.zone.data.is_null() {
        return super::conf::refuse(cf, format_args!("\"cql_metrics\" is duplicate"));
    }
    let name = super::conf::words(&*cf).get(1).map(|name| name.to_string());
    let stored = name.clone().unwrap_or_default();
    let data = ngx::ffi::ngx_pnalloc((*cf).pool, stored.len().max(1)) as *mut u8;
    if data.is_null() {
        return NGX_CONF_ERROR;
    }
    core::ptr::copy_nonoverlapping(stored.as_ptr(), data, stored.len());
    loc.zone = ngx_str_t {
        len: stored.len(),
        data,
    };
    let ctx = (*cf).ctx as *mut ngx_http_conf_ctx_t;
    let main = *(*ctx).main_conf.add(module_index()) as *mut MainConf;
    if let Some(main) = main.as_mut() {
        main.handlers
            .push((At::current(cf), name.map(String::into_bytes)));
    }
    let clcf =
        *(*ctx).loc_conf.add(ngx_http_core_module.ctx_index) as *mut ngx_http_core_loc_conf_t;
    (*clcf).handler = Some(metrics_handler);
    NGX_CONF_OK
}

/// Once the whole configuration is read (also by `nginx -t`): every `cql_metrics` names a
/// zone the `stream` block declares.
unsafe extern "C" fn init_module(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    let http = *(*cycle).conf_ctx.add(ngx_http_module.index) as *mut ngx_http_conf_ctx_t;
    let Some(http) = http.as_ref() else {
        return NGX_OK as ngx_int_t;
    };
    let main = *http.main_conf.add(module_index()) as *const MainConf;
    let Some(main) = main.as_ref() else {
        return NGX_OK as ngx_int_t;
    };
    for (at, name) in &main.handlers {
        if !metrics_zone::declared(cycle, name.as_deref()) {
            let what = match name {
                Some(name) => format!(
                    "names the zone \"{}\", which no \"cql_metrics_zone\" of the stream block declares",
                    String::from_utf8_lossy(name)
                ),
                None => "needs a \"cql_metrics_zone\" in the stream block".to_string(),
            };
            error_log::write(
                (*cycle).log,
                Level::Emerg,
                format_args!("\"cql_metrics\" {} in {}", what, at),
            );
            return NGX_ERROR as ngx_int_t;
        }
    }
    NGX_OK as ngx_int_t
}

static CONTENT_TYPE: &str = render::CONTENT_TYPE;

unsafe extern "C" fn metrics_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    if (*r).method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize == 0 {
        return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
    }
    let rc = ngx_http_discard_request_body(r);
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    let loc = *(*r).loc_conf.add(module_index()) as *const LocConf;
    let name = loc
        .as_ref()
        .filter(|loc| loc.zone.len > 0)
        .map(|loc| loc.zone.as_bytes());
    let cycle = *addr_of!(ngx::ffi::ngx_cycle);
    let Some(zone) = metrics_zone::find(cycle, name) else {
        return NGX_HTTP_SERVICE_UNAVAILABLE as ngx_int_t;
    };
    let mut text = String::with_capacity(64 * 1024);
    render::render(&zone, &mut text);

    let out = &mut (*r).headers_out;
    out.status = NGX_HTTP_OK as _;
    out.content_length_n = text.len() as _;
    out.content_type_len = CONTENT_TYPE.len();
    out.content_type = ngx_str_t {
        len: CONTENT_TYPE.len(),
        data: CONTENT_TYPE.as_ptr() as *mut u8,
    };
    let rc = ngx_http_send_header(r);
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
        return rc;
    }
    let b = ngx_create_temp_buf((*r).pool, text.len().max(1));
    if b.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    core::ptr::copy_nonoverlapping(text.as_ptr(), (*b).last, text.len());
    (*b).last = (*b).last.add(text.len());
    (*b).set_last_buf(u32::from(r == (*r).main));
    (*b).set_last_in_chain(1);
    let mut chain = ngx_chain_t {
        buf: b,
        next: null_mut(),
    };
    ngx_http_output_filter(r, &mut chain)
}
