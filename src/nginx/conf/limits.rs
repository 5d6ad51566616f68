//! `cql_max_frame_size`, `cql_max_handshake_frame_size`, `cql_max_auth_response_size`,
//! `cql_max_auth_attempts`, `cql_auth_timeout` and `cql_max_queued_size`: the bounds of a
//! session, read in NGINX's size, number and time syntax by NGINX's own slot handlers, then
//! checked against what Cassandra and the drivers accept.

use core::ffi::{c_char, c_void};
use core::mem::offset_of;

use ngx::core::NGX_CONF_OK;
use ngx::ffi::{
    ngx_command_t, ngx_conf_set_msec_slot, ngx_conf_set_num_slot, ngx_conf_set_size_slot,
    ngx_conf_t, ngx_int_t, ngx_msec_t, NGX_CONF_TAKE1, NGX_CONF_UNSET, NGX_STREAM_SRV_CONF_OFFSET,
};
use ngx::ngx_string;

use super::{command, merge, refuse, At, Handler, SrvConf, STREAM_AND_SERVER};
use crate::session::Limits;

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

/// The bounds of a server's sessions, as NGINX's slot handlers write them.
#[repr(C)]
pub struct LimitsConf {
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
}

impl LimitsConf {
    /// Nothing set yet.
    pub(super) const UNSET: LimitsConf = LimitsConf {
        max_frame_size: UNSET_SIZE,
        max_handshake_frame_size: UNSET_SIZE,
        max_auth_response_size: UNSET_SIZE,
        max_auth_attempts: UNSET_NUM,
        auth_timeout: UNSET_MSEC,
        max_queued_size: UNSET_SIZE,
    };

    /// Unset bounds take the `stream` block's, or the defaults.
    pub(super) fn merge(&mut self, prev: &LimitsConf) {
        merge(
            &mut self.max_frame_size,
            prev.max_frame_size,
            UNSET_SIZE,
            DEFAULT_MAX_FRAME_SIZE,
        );
        merge(
            &mut self.max_handshake_frame_size,
            prev.max_handshake_frame_size,
            UNSET_SIZE,
            DEFAULT_MAX_HANDSHAKE_FRAME_SIZE,
        );
        merge(
            &mut self.max_auth_response_size,
            prev.max_auth_response_size,
            UNSET_SIZE,
            DEFAULT_MAX_AUTH_RESPONSE_SIZE,
        );
        let defaults = Limits::default();
        merge(
            &mut self.max_auth_attempts,
            prev.max_auth_attempts,
            UNSET_NUM,
            defaults.max_auth_attempts as ngx_int_t,
        );
        merge(
            &mut self.auth_timeout,
            prev.auth_timeout,
            UNSET_MSEC,
            defaults.auth_timeout_ms as ngx_msec_t,
        );
        merge(
            &mut self.max_queued_size,
            prev.max_queued_size,
            UNSET_SIZE,
            defaults.max_queued,
        );
    }

    /// What sessions are bounded by.
    pub(super) fn to_limits(&self) -> Limits {
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
}

/// A bounded directive, written by `set` into the field of [`LimitsConf`] at `offset`.
const fn bounded(name: ngx::ffi::ngx_str_t, set: Handler, offset: usize) -> ngx_command_t {
    command(
        name,
        STREAM_AND_SERVER | NGX_CONF_TAKE1,
        set,
        NGX_STREAM_SRV_CONF_OFFSET,
        offset_of!(SrvConf, limits) + offset,
    )
}

pub(super) const COMMANDS: [ngx_command_t; 6] = [
    bounded(
        ngx_string!("cql_max_frame_size"),
        set_max_frame_size,
        offset_of!(LimitsConf, max_frame_size),
    ),
    bounded(
        ngx_string!("cql_max_handshake_frame_size"),
        set_max_handshake_frame_size,
        offset_of!(LimitsConf, max_handshake_frame_size),
    ),
    bounded(
        ngx_string!("cql_max_auth_response_size"),
        set_max_auth_response_size,
        offset_of!(LimitsConf, max_auth_response_size),
    ),
    bounded(
        ngx_string!("cql_max_auth_attempts"),
        set_max_auth_attempts,
        offset_of!(LimitsConf, max_auth_attempts),
    ),
    bounded(
        ngx_string!("cql_auth_timeout"),
        set_auth_timeout,
        offset_of!(LimitsConf, auth_timeout),
    ),
    bounded(
        ngx_string!("cql_max_queued_size"),
        set_max_queued_size,
        offset_of!(LimitsConf, max_queued_size),
    ),
];

/// The handler of a bounded directive: NGINX's `slot`, then [`set_bounded`]'s check.
macro_rules! bounded_handler {
    ($(#[$doc:meta])* $handler:ident: $slot:ident, $bounds:expr, $said:literal) => {
        $(#[$doc])*
        unsafe extern "C" fn $handler(
            cf: *mut ngx_conf_t,
            cmd: *mut ngx_command_t,
            conf: *mut c_void,
        ) -> *mut c_char {
            set_bounded(cf, cmd, conf, $slot, $bounds, $said)
        }
    };
}

bounded_handler!(
    /// `cql_max_frame_size size;`: NGINX's size syntax, bounded to what Cassandra accepts.
    set_max_frame_size: ngx_conf_set_size_slot,
    MIN_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE,
    "64k and 256m"
);
bounded_handler!(
    /// `cql_max_handshake_frame_size size;`: the cap on frames before authentication.
    set_max_handshake_frame_size: ngx_conf_set_size_slot,
    MIN_MAX_HANDSHAKE_FRAME_SIZE..=MAX_MAX_HANDSHAKE_FRAME_SIZE,
    "4k and 1m"
);
bounded_handler!(
    /// `cql_max_auth_response_size size;`: the cap on the AUTH_RESPONSE that carries a token.
    set_max_auth_response_size: ngx_conf_set_size_slot,
    MIN_MAX_AUTH_RESPONSE_SIZE..=MAX_MAX_AUTH_RESPONSE_SIZE,
    "1k and 64k"
);
bounded_handler!(
    /// `cql_max_auth_attempts number;`: failed logins before the proxy closes the connection.
    set_max_auth_attempts: ngx_conf_set_num_slot,
    MIN_MAX_AUTH_ATTEMPTS..=MAX_MAX_AUTH_ATTEMPTS,
    "1 and 100"
);
bounded_handler!(
    /// `cql_auth_timeout time;`: NGINX's time syntax, from the first byte to a successful login.
    set_auth_timeout: ngx_conf_set_msec_slot,
    MIN_AUTH_TIMEOUT..=MAX_AUTH_TIMEOUT,
    "100ms and 10m"
);
bounded_handler!(
    /// `cql_max_queued_size size;`: bytes queued toward a peer before the proxy stops reading.
    set_max_queued_size: ngx_conf_set_size_slot,
    MIN_MAX_QUEUED_SIZE..=MAX_MAX_QUEUED_SIZE,
    "16k and 64m"
);

/// NGINX's `slot`, then a bounds check that names the directive, file and line; the
/// directive is noted for the "needs cql on" check.
unsafe fn set_bounded<T: Copy + PartialOrd>(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
    slot: Handler,
    bounds: core::ops::RangeInclusive<T>,
    said: &str,
) -> *mut c_char {
    let rv = slot(cf, cmd, conf);
    if rv != NGX_CONF_OK {
        return rv;
    }
    // SAFETY: the command's offset names a field of type T of SrvConf (see COMMANDS).
    let value = *((conf as *const u8).add((*cmd).offset) as *const T);
    let name = (*cmd).name.to_str().unwrap_or("?");
    if !bounds.contains(&value) {
        return refuse(cf, format_args!("\"{name}\" must be between {said}"));
    }
    if let Some(settings) = (*(conf as *mut SrvConf)).settings.as_mut() {
        settings.note_directive(name, At::current(cf));
    }
    NGX_CONF_OK
}
