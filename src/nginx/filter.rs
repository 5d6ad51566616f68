//! The stream filter: hands every byte of both directions to the connection's
//! [`Session`] and does what it answers.
//!
//! Buffers pass through untouched: the filter reads each buffer's bytes in place and
//! forwards the very same chain, so nothing is copied. Special buffers (flush, last)
//! and empty calls (`in == NULL`, when NGINX only wants the output flushed) pass on.

use core::ptr::{addr_of, addr_of_mut};

use ngx::ffi::{
    ngx_chain_t, ngx_int_t, ngx_pool_cleanup_add, ngx_stream_filter_pt, ngx_stream_session_t,
    ngx_stream_top_filter, ngx_uint_t, NGX_ERROR, NGX_LOG_ERR,
};
use ngx::ngx_log_error;

use super::config::SrvConf;
use super::module::ctx_index;
use crate::session::{Action, Direction, Session};

/// The filter below this one (NGINX's write filter, or another module's filter).
static mut NEXT_FILTER: ngx_stream_filter_pt = None;

/// Puts this module's filter at the top of the stream filter chain.
///
/// Called from postconfiguration, in the master process, once per configuration cycle.
pub(super) unsafe fn install() {
    *addr_of_mut!(NEXT_FILTER) = *addr_of!(ngx_stream_top_filter);
    *addr_of_mut!(ngx_stream_top_filter) = Some(cql_filter);
}

unsafe fn next(s: *mut ngx_stream_session_t, chain: *mut ngx_chain_t, up: ngx_uint_t) -> ngx_int_t {
    match *addr_of!(NEXT_FILTER) {
        Some(next) => next(s, chain, up),
        None => NGX_ERROR as ngx_int_t,
    }
}

/// This server's configuration, if the module is configured at all.
pub(super) unsafe fn srv_conf<'a>(s: *mut ngx_stream_session_t) -> Option<&'a SrvConf> {
    let conf = *(*s).srv_conf.add(ctx_index()) as *const SrvConf;
    conf.as_ref()
}

/// The session state of a connection, if one was created.
pub(super) unsafe fn session<'a>(s: *mut ngx_stream_session_t) -> Option<&'a mut Session> {
    let ctx = *(*s).ctx.add(ctx_index()) as *mut Session;
    ctx.as_mut()
}

/// Creates the connection's session; it is dropped with the connection's pool.
unsafe fn create_session<'a>(
    s: *mut ngx_stream_session_t,
    conf: &SrvConf,
) -> Option<&'a mut Session> {
    let pool = (*(*s).connection).pool;
    let cleanup = ngx_pool_cleanup_add(pool, 0);
    if cleanup.is_null() {
        return None;
    }
    let session = Box::into_raw(Box::new(Session::new(conf.limits())));
    (*cleanup).handler = Some(drop_session);
    (*cleanup).data = session.cast();
    *(*s).ctx.add(ctx_index()) = session.cast();
    session.as_mut()
}

unsafe extern "C" fn drop_session(data: *mut core::ffi::c_void) {
    drop(Box::from_raw(data as *mut Session));
}

unsafe extern "C" fn cql_filter(
    s: *mut ngx_stream_session_t,
    chain: *mut ngx_chain_t,
    from_upstream: ngx_uint_t,
) -> ngx_int_t {
    let conf = match srv_conf(s) {
        Some(conf) if conf.enabled() => conf,
        _ => return next(s, chain, from_upstream),
    };
    let session = match session(s) {
        Some(session) => session,
        None => match create_session(s, conf) {
            Some(session) => session,
            None => return NGX_ERROR as ngx_int_t,
        },
    };
    let direction = if from_upstream != 0 {
        Direction::ServerToClient
    } else {
        Direction::ClientToServer
    };

    let mut cl = chain;
    while let Some(link) = cl.as_ref() {
        if let Some(buf) = link.buf.as_ref() {
            if buf.in_file() != 0 {
                // The stream proxy only hands memory buffers; anything else cannot be inspected.
                return close(s, &"cannot inspect a file buffer");
            }
            if !buf.pos.is_null() && buf.pos < buf.last {
                let len = buf.last.offset_from(buf.pos) as usize;
                let bytes = core::slice::from_raw_parts(buf.pos, len);
                if let Action::Close(violation) = session.feed(direction, bytes) {
                    return close(s, &violation);
                }
            }
        }
        cl = link.next;
    }

    next(s, chain, from_upstream)
}

/// Ends the connection with an error-log line saying why.
unsafe fn close(s: *mut ngx_stream_session_t, why: &dyn core::fmt::Display) -> ngx_int_t {
    let log = (*(*s).connection).log;
    ngx_log_error!(NGX_LOG_ERR, log, "cql: closing connection: {}", why);
    NGX_ERROR as ngx_int_t
}
