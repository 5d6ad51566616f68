//! Per-server configuration: creation, merging and the directive handlers that need checks.

use core::ffi::{c_char, c_void};
use core::fmt;
use core::ptr::null_mut;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_set_msec_slot, ngx_conf_set_num_slot, ngx_conf_set_size_slot,
    ngx_conf_t, ngx_flag_t, ngx_int_t, ngx_msec_t, ngx_parse_size, ngx_pcalloc, ngx_str_t,
    NGX_CONF_UNSET, NGX_INVALID_FILE, NGX_LOG_EMERG,
};
use ngx::{ngx_conf_log_error, ngx_log_error};

use super::settings::{Refusal, Settings};
use crate::session::Limits;

const UNSET_FLAG: ngx_flag_t = NGX_CONF_UNSET as ngx_flag_t;
const UNSET_NUM: ngx_int_t = NGX_CONF_UNSET as ngx_int_t;
const UNSET_SIZE: usize = usize::MAX;
const UNSET_MSEC: ngx_msec_t = ngx_msec_t::MAX;

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
/// Bounds of `cql_max_auth_attempts`: at least one try; more than a hundred is a brute force.
const MIN_MAX_AUTH_ATTEMPTS: ngx_int_t = 1;
const MAX_MAX_AUTH_ATTEMPTS: ngx_int_t = 100;
/// Bounds of `cql_auth_timeout`, in milliseconds. There is no `off`: a connection that never
/// logs in would hold its memory and its connection slot for as long as it likes.
const MIN_AUTH_TIMEOUT: ngx_msec_t = 100;
const MAX_AUTH_TIMEOUT: ngx_msec_t = 10 * 60 * 1000;
/// Bounds of `cql_max_queued_size`: below a few frames' worth, every pipelining driver stalls.
const MIN_MAX_QUEUED_SIZE: usize = 16 * 1024;
const MAX_MAX_QUEUED_SIZE: usize = 64 * 1024 * 1024;

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
    /// `cql_max_auth_attempts number`
    pub max_auth_attempts: ngx_int_t,
    /// `cql_auth_timeout time`, in milliseconds
    pub auth_timeout: ngx_msec_t,
    /// `cql_max_queued_size size`
    pub max_queued_size: usize,
    /// Everything else, in Rust: owned by the configuration's pool (dropped with it).
    pub settings: *mut Settings,
}

impl SrvConf {
    pub fn enabled(&self) -> bool {
        self.enabled == 1
    }

    pub fn limits(&self) -> Limits {
        let defaults = Limits::default();
        Limits {
            // Bounded by MAX_MAX_FRAME_SIZE at configuration time, so it fits.
            max_frame_size: u32::try_from(self.max_frame_size).unwrap_or(u32::MAX),
            max_handshake_frame_size: u32::try_from(self.max_handshake_frame_size)
                .unwrap_or(u32::MAX),
            max_auth_response_size: u32::try_from(self.max_auth_response_size).unwrap_or(u32::MAX),
            // Bounded at configuration time; unset only before the merge.
            max_auth_attempts: u32::try_from(self.max_auth_attempts)
                .unwrap_or(defaults.max_auth_attempts),
            auth_timeout_ms: match self.auth_timeout {
                UNSET_MSEC => defaults.auth_timeout_ms,
                ms => ms as u64,
            },
            max_queued: match self.max_queued_size {
                UNSET_SIZE => defaults.max_queued,
                size => size,
            },
        }
    }

    /// The Rust part of the configuration.
    pub fn settings(&self) -> Option<&Settings> {
        // SAFETY: created with the conf and dropped only with the configuration's pool.
        unsafe { self.settings.as_ref() }
    }
}

/// Where a directive was read, as NGINX names it in its messages: `FILE:LINE`, or
/// `command line` for `nginx -g`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At(pub String);

impl At {
    /// The directive (or block) NGINX is reading now.
    pub unsafe fn current(cf: *mut ngx_conf_t) -> At {
        let Some(file) = (*cf).conf_file.as_ref() else {
            return At("command line".to_string());
        };
        if file.file.fd == NGX_INVALID_FILE || file.file.name.data.is_null() {
            return At("command line".to_string());
        }
        let name = String::from_utf8_lossy(file.file.name.as_bytes());
        At(format!("{name}:{}", file.line))
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Logs an error of the configuration as `ngx_conf_log_error` does, but naming `at` (a
/// directive read earlier) rather than the line NGINX is reading now.
pub unsafe fn log_emerg_at(cf: *mut ngx_conf_t, at: &At, message: &str) {
    ngx_log_error!(NGX_LOG_EMERG, (*cf).log, "{} in {}", message, at);
}

/// Logs a refusal at the directive it names, or at the line NGINX is reading.
unsafe fn log_refusal(cf: *mut ngx_conf_t, refusal: &Refusal) {
    match &refusal.at {
        Some(at) => log_emerg_at(cf, at, &refusal.message),
        None => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", refusal.message);
        }
    }
}

/// NGINX's size syntax (`512`, `16k`, `32m`); `None` for anything else.
pub fn parse_size(value: &str) -> Option<usize> {
    let mut s = ngx_str_t {
        len: value.len(),
        data: value.as_ptr() as *mut u8,
    };
    // SAFETY: NGINX only reads the `len` bytes of `s`.
    let size = unsafe { ngx_parse_size(&mut s) };
    usize::try_from(size).ok()
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
    // Created when NGINX reads `server {` (or `stream {`): where the block begins.
    (*settings).block_at = Some(At::current(cf));
    conf.write(SrvConf {
        enabled: UNSET_FLAG,
        max_frame_size: UNSET_SIZE,
        max_handshake_frame_size: UNSET_SIZE,
        max_auth_response_size: UNSET_SIZE,
        max_auth_attempts: UNSET_NUM,
        auth_timeout: UNSET_MSEC,
        max_queued_size: UNSET_SIZE,
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
    let says_cql = conf.enabled != UNSET_FLAG;
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
    let defaults = Limits::default();
    merge(
        &mut conf.max_auth_attempts,
        prev.max_auth_attempts,
        UNSET_NUM,
        defaults.max_auth_attempts as ngx_int_t,
    );
    merge(
        &mut conf.auth_timeout,
        prev.auth_timeout,
        UNSET_MSEC,
        defaults.auth_timeout_ms as ngx_msec_t,
    );
    merge(
        &mut conf.max_queued_size,
        prev.max_queued_size,
        UNSET_SIZE,
        defaults.max_queued,
    );
    let limits = conf.limits();
    let (Some(parent), Some(settings)) = (prev.settings.as_ref(), conf.settings.as_mut()) else {
        return NGX_CONF_ERROR;
    };
    let checked = settings
        .needs_cql_on(conf.enabled == 1, says_cql, parent)
        .and_then(|()| {
            settings.inherit(parent);
            settings.build(cf, limits, conf.enabled == 1)
        });
    match checked {
        Ok(()) => NGX_CONF_OK,
        Err(refusal) => {
            log_refusal(cf, &refusal);
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
    set_bounded(
        cf,
        cmd,
        conf,
        ngx_conf_set_size_slot,
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
    set_bounded(
        cf,
        cmd,
        conf,
        ngx_conf_set_size_slot,
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
    set_bounded(
        cf,
        cmd,
        conf,
        ngx_conf_set_size_slot,
        MIN_MAX_AUTH_RESPONSE_SIZE..=MAX_MAX_AUTH_RESPONSE_SIZE,
        "1k and 64k",
    )
}

/// `cql_max_auth_attempts number;`: failed logins before the proxy closes the connection.
pub unsafe extern "C" fn set_max_auth_attempts(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_bounded(
        cf,
        cmd,
        conf,
        ngx_conf_set_num_slot,
        MIN_MAX_AUTH_ATTEMPTS..=MAX_MAX_AUTH_ATTEMPTS,
        "1 and 100",
    )
}

/// `cql_auth_timeout time;`: NGINX's time syntax, from the first byte to a successful login.
pub unsafe extern "C" fn set_auth_timeout(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_bounded(
        cf,
        cmd,
        conf,
        ngx_conf_set_msec_slot,
        MIN_AUTH_TIMEOUT..=MAX_AUTH_TIMEOUT,
        "100ms and 10m",
    )
}

/// `cql_max_queued_size size;`: bytes queued toward a peer before the proxy stops reading.
pub unsafe extern "C" fn set_max_queued_size(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_bounded(
        cf,
        cmd,
        conf,
        ngx_conf_set_size_slot,
        MIN_MAX_QUEUED_SIZE..=MAX_MAX_QUEUED_SIZE,
        "16k and 64m",
    )
}

/// A slot handler of NGINX's (`ngx_conf_set_size_slot` and friends).
type Slot = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

/// NGINX's `slot`, then a bounds check that names the directive, file and line; the
/// directive is noted for the "needs cql on" check.
unsafe fn set_bounded<T: Copy + PartialOrd>(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
    slot: Slot,
    bounds: core::ops::RangeInclusive<T>,
    said: &str,
) -> *mut c_char {
    let rv = slot(cf, cmd, conf);
    if rv != NGX_CONF_OK {
        return rv;
    }
    // SAFETY: the command's offset names a field of type T of SrvConf (see module.rs).
    let value = *((conf as *const u8).add((*cmd).offset) as *const T);
    let name = core::str::from_utf8((*cmd).name.as_bytes()).unwrap_or("?");
    if !bounds.contains(&value) {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"{name}\" must be between {said}");
        return NGX_CONF_ERROR;
    }
    if let Some(settings) = (*(conf as *mut SrvConf)).settings.as_mut() {
        settings.note_directive(name, At::current(cf));
    }
    NGX_CONF_OK
}
