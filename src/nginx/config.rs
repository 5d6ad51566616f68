//! Per-server configuration: creation, merging and the directive handlers that need checks.

use core::ffi::{c_char, c_void};
use core::ptr::null_mut;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_set_size_slot, ngx_conf_t, ngx_flag_t, ngx_pcalloc, NGX_CONF_UNSET,
    NGX_LOG_EMERG,
};
use ngx::ngx_conf_log_error;

use super::settings::Settings;
use crate::session::Limits;

const UNSET_FLAG: ngx_flag_t = NGX_CONF_UNSET as ngx_flag_t;
const UNSET_SIZE: usize = usize::MAX;

/// `cql_max_frame_size` default: Cassandra 4.0+ caps frames at 16 MiB by default.
const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;
/// Largest `cql_max_frame_size` accepted: Cassandra's own upper bound.
const MAX_MAX_FRAME_SIZE: usize = 256 * 1024 * 1024;
/// Smallest `cql_max_frame_size` accepted: below this, driver handshakes do not fit.
const MIN_MAX_FRAME_SIZE: usize = 64 * 1024;
/// `cql_max_handshake_frame_size` default: frames before authentication are small.
const DEFAULT_MAX_HANDSHAKE_FRAME_SIZE: usize = 64 * 1024;
/// Bounds of `cql_max_handshake_frame_size`.
const MIN_MAX_HANDSHAKE_FRAME_SIZE: usize = 4 * 1024;
const MAX_MAX_HANDSHAKE_FRAME_SIZE: usize = 1024 * 1024;
/// `cql_max_auth_response_size` default: room for any real token.
const DEFAULT_MAX_AUTH_RESPONSE_SIZE: usize = 16 * 1024;
const MIN_MAX_AUTH_RESPONSE_SIZE: usize = 1024;
const MAX_MAX_AUTH_RESPONSE_SIZE: usize = 64 * 1024;

/// Configuration of one `stream` `server` (or the `stream` block's defaults).
#[repr(C)]
pub struct SrvConf {
    /// `cql on | off`
    pub enabled: ngx_flag_t,
    /// `cql_max_frame_size size`
    pub max_frame_size: usize,
    /// `cql_max_handshake_frame_size size`
    pub max_handshake_frame_size: usize,
    /// `cql_max_auth_response_size size`
    pub max_auth_response_size: usize,
    /// Everything else, in Rust: owned by the configuration's pool (dropped with it).
    pub settings: *mut Settings,
}

impl SrvConf {
    pub fn enabled(&self) -> bool {
        self.enabled == 1
    }

    pub fn limits(&self) -> Limits {
        Limits {
            // Bounded by MAX_MAX_FRAME_SIZE at configuration time, so it fits.
            max_frame_size: u32::try_from(self.max_frame_size).unwrap_or(u32::MAX),
            max_handshake_frame_size: u32::try_from(self.max_handshake_frame_size)
                .unwrap_or(u32::MAX),
            max_auth_response_size: u32::try_from(self.max_auth_response_size).unwrap_or(u32::MAX),
        }
    }

    /// The Rust part of the configuration.
    pub fn settings(&self) -> Option<&Settings> {
        // SAFETY: created with the conf and dropped only with the configuration's pool.
        unsafe { self.settings.as_ref() }
    }
}

pub unsafe extern "C" fn create_srv_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    let conf = ngx_pcalloc((*cf).pool, core::mem::size_of::<SrvConf>()) as *mut SrvConf;
    if conf.is_null() {
        return null_mut();
    }
    let settings = match Settings::create((*cf).pool) {
        Some(settings) => settings,
        None => return null_mut(),
    };
    conf.write(SrvConf {
        enabled: UNSET_FLAG,
        max_frame_size: UNSET_SIZE,
        max_handshake_frame_size: UNSET_SIZE,
        max_auth_response_size: UNSET_SIZE,
        settings,
    });
    conf.cast()
}

pub unsafe extern "C" fn merge_srv_conf(
    cf: *mut ngx_conf_t,
    parent: *mut c_void,
    child: *mut c_void,
) -> *mut c_char {
    let prev = &*(parent as *const SrvConf);
    let conf = &mut *(child as *mut SrvConf);
    merge(&mut conf.enabled, prev.enabled, UNSET_FLAG, 0);
    merge(
        &mut conf.max_frame_size,
        prev.max_frame_size,
        UNSET_SIZE,
        DEFAULT_MAX_FRAME_SIZE,
    );
    merge(
        &mut conf.max_handshake_frame_size,
        prev.max_handshake_frame_size,
        UNSET_SIZE,
        DEFAULT_MAX_HANDSHAKE_FRAME_SIZE,
    );
    merge(
        &mut conf.max_auth_response_size,
        prev.max_auth_response_size,
        UNSET_SIZE,
        DEFAULT_MAX_AUTH_RESPONSE_SIZE,
    );
    let limits = conf.limits();
    let (Some(parent), Some(settings)) = (prev.settings.as_ref(), conf.settings.as_mut()) else {
        return NGX_CONF_ERROR;
    };
    settings.inherit(parent);
    match settings.build(cf, limits, conf.enabled == 1) {
        Ok(()) => NGX_CONF_OK,
        Err(message) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", message);
            NGX_CONF_ERROR
        }
    }
}

/// `ngx_conf_merge_*_value`: unset takes the parent's value, or the default.
fn merge<T: Copy + PartialEq>(value: &mut T, parent: T, unset: T, default: T) {
    if *value == unset {
        *value = if parent == unset { default } else { parent };
    }
}

/// `cql_max_frame_size size;`: NGINX's size syntax, bounded to what Cassandra accepts.
pub unsafe extern "C" fn set_max_frame_size(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_bounded_size(
        cf,
        cmd,
        conf,
        MIN_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE,
        "64k and 256m",
    )
}

/// `cql_max_handshake_frame_size size;`: the cap on frames before authentication.
pub unsafe extern "C" fn set_max_handshake_frame_size(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_bounded_size(
        cf,
        cmd,
        conf,
        MIN_MAX_HANDSHAKE_FRAME_SIZE..=MAX_MAX_HANDSHAKE_FRAME_SIZE,
        "4k and 1m",
    )
}

/// `cql_max_auth_response_size size;`: the cap on the AUTH_RESPONSE that carries a token.
pub unsafe extern "C" fn set_max_auth_response_size(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_bounded_size(
        cf,
        cmd,
        conf,
        MIN_MAX_AUTH_RESPONSE_SIZE..=MAX_MAX_AUTH_RESPONSE_SIZE,
        "1k and 64k",
    )
}

/// NGINX's size slot, then a bounds check that names the directive, file and line.
unsafe fn set_bounded_size(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
    bounds: core::ops::RangeInclusive<usize>,
    said: &str,
) -> *mut c_char {
    let rv = ngx_conf_set_size_slot(cf, cmd, conf);
    if rv != NGX_CONF_OK {
        return rv;
    }
    let size = *((conf as *const u8).add((*cmd).offset) as *const usize);
    if !bounds.contains(&size) {
        let name = core::str::from_utf8((*cmd).name.as_bytes()).unwrap_or("?");
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"{name}\" must be between {said}");
        return NGX_CONF_ERROR;
    }
    NGX_CONF_OK
}
