//! The module's one way into NGINX's error log, outside the reading of a directive:
//! connections closed and why, audit lines that cannot be written, zones that cannot be set
//! up, the session's notices, and refusals of the configuration found after its directives
//! were read (which name the directive's file and line themselves). A directive being read
//! is refused through [`super::conf::refuse`], which `ngx_conf_log_error` gives its file and
//! line.

use core::fmt;

use ngx::ffi::{ngx_log_t, NGX_LOG_ALERT, NGX_LOG_EMERG, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_WARN};
use ngx::ngx_log_error;

/// How bad it is, as NGINX's levels name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Level {
    /// The configuration cannot be used (a zone that cannot be set up).
    Emerg,
    /// The module cannot do what it must (an audit line that cannot be written).
    Alert,
    /// A connection ended for a peer's fault, a rewrite that failed.
    Error,
    Warn,
    /// Expected and harmless (a driver probing protocol versions).
    Info,
}

impl Level {
    fn ngx(self) -> u32 {
        match self {
            Level::Emerg => NGX_LOG_EMERG,
            Level::Alert => NGX_LOG_ALERT,
            Level::Error => NGX_LOG_ERR,
            Level::Warn => NGX_LOG_WARN,
            Level::Info => NGX_LOG_INFO,
        }
    }
}

/// Writes `message` to `log` at `level`, if the log takes that level (NGINX checks).
///
/// # Safety
/// `log` is null or a live NGINX log.
pub(super) unsafe fn write(log: *mut ngx_log_t, level: Level, message: fmt::Arguments<'_>) {
    if log.is_null() {
        return;
    }
    ngx_log_error!(level.ngx(), log, "{}", message);
}
