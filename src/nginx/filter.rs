//! The stream filter: hands every byte of both directions to the connection's
//! [`Session`] and does what it answers.
//!
//! Buffers pass through untouched: the filter reads each buffer's bytes in place and
//! forwards the very same chain, so nothing is copied. Special buffers (flush, last)
//! and empty calls (`in == NULL`, when NGINX only wants the output flushed) pass on.

use core::ptr::{addr_of, addr_of_mut, null_mut};

use ngx::ffi::{
    ngx_alloc_chain_link, ngx_buf_tag_t, ngx_chain_t, ngx_int_t, ngx_pnalloc, ngx_pool_cleanup_add,
    ngx_stream_filter_pt, ngx_stream_session_t, ngx_stream_top_filter, ngx_uint_t, NGX_ERROR,
    NGX_LOG_ERR, NGX_LOG_INFO, NGX_OK,
};
use ngx::ngx_log_error;

use super::config::SrvConf;
use super::module::ctx_index;
use crate::session::{Action, Direction, Session};

/// `ngx_calloc_buf`: a zeroed buffer header from the pool (a C macro in NGINX).
unsafe fn ngx_calloc_buf(pool: *mut ngx::ffi::ngx_pool_t) -> *mut ngx::ffi::ngx_buf_t {
    ngx::ffi::ngx_pcalloc(pool, core::mem::size_of::<ngx::ffi::ngx_buf_t>()).cast()
}

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

/// What the filter keeps per connection.
pub(super) struct Ctx {
    pub session: Session,
    /// A refusal was sent to the client: once it is flushed, the connection ends.
    closing: bool,
}

/// The state of a connection, if one was created.
pub(super) unsafe fn ctx<'a>(s: *mut ngx_stream_session_t) -> Option<&'a mut Ctx> {
    let ctx = *(*s).ctx.add(ctx_index()) as *mut Ctx;
    ctx.as_mut()
}

/// Creates the connection's state; it is dropped with the connection's pool.
unsafe fn create_ctx<'a>(s: *mut ngx_stream_session_t, conf: &SrvConf) -> Option<&'a mut Ctx> {
    let pool = (*(*s).connection).pool;
    let cleanup = ngx_pool_cleanup_add(pool, 0);
    if cleanup.is_null() {
        return None;
    }
    let ctx = Box::into_raw(Box::new(Ctx {
        session: Session::new(conf.limits()),
        closing: false,
    }));
    (*cleanup).handler = Some(drop_ctx);
    (*cleanup).data = ctx.cast();
    *(*s).ctx.add(ctx_index()) = ctx.cast();
    ctx.as_mut()
}

unsafe extern "C" fn drop_ctx(data: *mut core::ffi::c_void) {
    drop(Box::from_raw(data as *mut Ctx));
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
    let ctx = match ctx(s) {
        Some(ctx) => ctx,
        None => match create_ctx(s, conf) {
            Some(ctx) => ctx,
            None => return NGX_ERROR as ngx_int_t,
        },
    };
    if ctx.closing {
        return flush_then_close(s, chain);
    }
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
                match ctx.session.feed(direction, bytes) {
                    Action::Forward => {}
                    Action::Close(violation) => return close(s, &violation),
                    Action::Refuse { reply, violation } => {
                        let level = if violation.is_version_probe() {
                            NGX_LOG_INFO
                        } else {
                            NGX_LOG_ERR
                        };
                        log(s, level, &violation);
                        ctx.closing = true;
                        if send_to_client(s, &reply) != NGX_OK as ngx_int_t {
                            return NGX_ERROR as ngx_int_t;
                        }
                        return flush_then_close(s, chain);
                    }
                }
            }
        }
        cl = link.next;
    }

    next(s, chain, from_upstream)
}

/// Ends the connection with an error-log line saying why.
unsafe fn close(s: *mut ngx_stream_session_t, why: &dyn core::fmt::Display) -> ngx_int_t {
    log(s, NGX_LOG_ERR, why);
    NGX_ERROR as ngx_int_t
}

unsafe fn log(s: *mut ngx_stream_session_t, level: u32, why: &dyn core::fmt::Display) {
    let log = (*(*s).connection).log;
    ngx_log_error!(level, log, "cql: closing connection: {}", why);
}

/// While a refusal is on its way to the client: nothing more is forwarded, and the
/// connection ends as soon as the client has been sent everything.
unsafe fn flush_then_close(s: *mut ngx_stream_session_t, chain: *mut ngx_chain_t) -> ngx_int_t {
    consume(chain);
    let client = (*s).connection;
    // Only ask the writer to flush when it holds something: an empty call is an error to it.
    if (*client).buffered() != 0 && next(s, null_mut(), 1) == NGX_ERROR as ngx_int_t {
        return NGX_ERROR as ngx_int_t;
    }
    if (*client).buffered() != 0 {
        // Still sending; NGINX calls the filter again when the client can take more.
        return NGX_OK as ngx_int_t;
    }
    NGX_ERROR as ngx_int_t
}

/// Marks every buffer of a chain as handled, so NGINX can reuse its memory.
unsafe fn consume(mut chain: *mut ngx_chain_t) {
    while let Some(link) = chain.as_ref() {
        if let Some(buf) = link.buf.as_mut() {
            buf.pos = buf.last;
        }
        chain = link.next;
    }
}

/// Queues bytes of the proxy's own toward the client, copied into the connection's pool.
unsafe fn send_to_client(s: *mut ngx_stream_session_t, bytes: &[u8]) -> ngx_int_t {
    let pool = (*(*s).connection).pool;
    let link = ngx_alloc_chain_link(pool);
    let buf = ngx_calloc_buf(pool);
    let data = ngx_pnalloc(pool, bytes.len()) as *mut u8;
    if link.is_null() || buf.is_null() || data.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    core::ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len());
    (*buf).start = data;
    (*buf).pos = data;
    (*buf).last = data.add(bytes.len());
    (*buf).end = (*buf).last;
    (*buf).set_temporary(1);
    (*buf).set_flush(1);
    (*buf).tag = addr_of!(super::module::ngx_stream_cql_module) as ngx_buf_tag_t;
    (*link).buf = buf;
    (*link).next = null_mut();
    match next(s, link, 1) {
        rc if rc == NGX_ERROR as ngx_int_t => rc,
        _ => NGX_OK as ngx_int_t,
    }
}
