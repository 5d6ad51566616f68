//! The stream filter: hands every byte of both directions to the connection's
//! [`Session`] with the time ([`Now`]), then does what the session's output queue says.
//!
//! Buffers the session lets pass go on untouched: the filter reads each buffer's bytes in
//! place and forwards the very same buffers, so nothing is copied. A buffer the session
//! took in ([`Action::Replace`]) is marked sent, and what the session gives instead
//! ([`Output::Send`]) goes out from buffers this filter owns until NGINX has sent them.
//! Audit lines go to the server's audit sink, notices and the reasons connections end to
//! the error log. Special buffers (flush, last) and empty calls (`in == NULL`, when NGINX
//! only wants the output flushed) pass on.

use core::ptr::{addr_of, addr_of_mut, null_mut};

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;

use ngx::ffi::{
    ngx_add_timer, ngx_buf_t, ngx_buf_tag_t, ngx_cached_time, ngx_chain_t, ngx_connection_t,
    ngx_del_timer, ngx_event_t, ngx_int_t, ngx_msec_t, ngx_pool_cleanup_add, ngx_post_event,
    ngx_posted_events, ngx_stream_filter_pt, ngx_stream_get_indexed_variable, ngx_stream_session_t,
    ngx_stream_top_filter, ngx_uint_t, NGX_ERROR, NGX_OK,
};

use super::audit_log::Sink;
use super::conf::SrvConf;
use super::error_log::{self, Level};
use super::module::ctx_index;
use crate::audit::Peer;
use crate::identity::Identity;
use crate::session::{Action, Direction, Now, Output, Session, Violation};

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
    /// A refusal was queued for the client: once it is sent, the connection ends.
    closing: bool,
    /// Bytes of the proxy's own that NGINX is still sending, oldest first: toward the
    /// server, toward the client.
    inflight: Flows<VecDeque<Inflight>>,
    /// Buffers of NGINX's proxy not yet fed to the session, oldest first: from the client,
    /// from the server. While a buffer waits here NGINX's proxy cannot reuse it, so it stops
    /// reading that peer once its `proxy_buffer_size` is full: the back-pressure of a plain
    /// `proxy_pass`.
    held: Flows<VecDeque<*mut ngx_buf_t>>,
    /// Sent buffers (NGINX's buffer header and the bytes), reused for the next output, so
    /// that an output allocates nothing in the steady state.
    spare: Vec<Inflight>,
    /// The buffer the session's output queue is polled into.
    polled: Vec<u8>,
    /// Where the session's audit lines go.
    audit: Option<Rc<Sink>>,
    /// `cql_auth_timeout`: the handshake deadline.
    deadline: ngx_event_t,
}

/// A buffer handed to NGINX: the header and the bytes it points at live until sent.
struct Inflight {
    buf: Box<ngx_buf_t>,
    data: Vec<u8>,
}

impl Inflight {
    fn new() -> Self {
        Inflight {
            // SAFETY: ngx_buf_t is a C struct of pointers, integers and bit fields, for
            // which all zeroes is the empty buffer NGINX itself starts from (ngx_calloc_buf).
            buf: Box::new(unsafe { core::mem::zeroed() }),
            data: Vec::new(),
        }
    }
}

/// How many emptied buffers a connection keeps for reuse, and up to which size.
const SPARE_BUFFERS: usize = 4;
const SPARE_CAPACITY: usize = 64 * 1024;

/// One of each per flow of bytes ([`Ctx::inflight`], [`Ctx::held`]).
#[derive(Default)]
struct Flows<T> {
    client_to_server: T,
    server_to_client: T,
}

impl<T> Flows<T> {
    fn of(&self, flow: Direction) -> &T {
        match flow {
            Direction::ClientToServer => &self.client_to_server,
            Direction::ServerToClient => &self.server_to_client,
        }
    }

    fn of_mut(&mut self, flow: Direction) -> &mut T {
        match flow {
            Direction::ClientToServer => &mut self.client_to_server,
            Direction::ServerToClient => &mut self.server_to_client,
        }
    }

    fn both_mut(&mut self) -> [&mut T; 2] {
        [&mut self.client_to_server, &mut self.server_to_client]
    }
}

/// The state of a connection, if one was created.
pub(super) unsafe fn ctx<'a>(s: *mut ngx_stream_session_t) -> Option<&'a mut Ctx> {
    let ctx = *(*s).ctx.add(ctx_index()) as *mut Ctx;
    ctx.as_mut()
}

/// Creates the connection's state; it is dropped with the connection's pool.
unsafe fn create_ctx<'a>(s: *mut ngx_stream_session_t, conf: &SrvConf) -> Option<&'a mut Ctx> {
    let pool = (*(*s).connection).pool;
    let mut audit = None;
    let session = match conf.settings().and_then(|settings| settings.built.as_ref()) {
        Some(built) => {
            let certificate = match built.certificate_variables {
                Some((verify, cert)) => client_certificate(s, verify, cert),
                None => None,
            };
            let mut session = Session::new(built.config.clone(), built.shared.clone(), certificate);
            if let Some(address) = local_address(s) {
                session.set_local_address(address);
            }
            if !built.key_variables.is_empty() {
                let values = built
                    .key_variables
                    .iter()
                    .map(|(name, index)| {
                        let value = variable(s, *index).unwrap_or_default().to_vec();
                        (name.clone(), value)
                    })
                    .collect();
                session.set_connection_variables(values);
            }
            if let Some(sink) = &built.audit {
                session.open_audit(peer(s), clock());
                audit = Some(sink.clone());
            }
            session
        }
        None => Session::watching(conf.limits(), conf.settings().map(|s| s.meter.clone())),
    };
    let cleanup = ngx_pool_cleanup_add(pool, 0);
    if cleanup.is_null() {
        return None;
    }
    let ctx = Box::into_raw(Box::new(Ctx {
        session,
        closing: false,
        inflight: Flows::default(),
        held: Flows::default(),
        spare: Vec::new(),
        polled: Vec::new(),
        audit,
        deadline: core::mem::zeroed(),
    }));
    (*cleanup).handler = Some(drop_ctx);
    (*cleanup).data = ctx.cast();
    *(*s).ctx.add(ctx_index()) = ctx.cast();
    let ctx = ctx.as_mut()?;
    if let Some(ms) = ctx.session.auth_deadline_ms() {
        let ev = &mut ctx.deadline;
        ev.data = s.cast();
        ev.log = (*(*s).connection).log;
        ev.handler = Some(auth_deadline);
        // A graceful shutdown does not wait for it.
        ev.set_cancelable(1);
        ngx_add_timer(ev, ms as ngx_msec_t);
    }
    Some(ctx)
}

unsafe extern "C" fn drop_ctx(data: *mut core::ffi::c_void) {
    let mut ctx = Box::from_raw(data as *mut Ctx);
    if ctx.deadline.timer_set() != 0 {
        ngx_del_timer(&mut ctx.deadline);
    }
    ctx.session.close(clock());
    // The connection is closed already: what is left goes to the cycle's log.
    let cycle = *addr_of!(ngx::ffi::ngx_cycle);
    if !cycle.is_null() {
        ctx.write_logs((*cycle).log);
    }
}

/// `cql_auth_timeout` expired: a client that has not logged in is disconnected the way
/// NGINX's proxy ends a connection that timed out, after a line saying why.
unsafe extern "C" fn auth_deadline(ev: *mut ngx_event_t) {
    let s = (*ev).data as *mut ngx_stream_session_t;
    let Some(ctx) = ctx(s) else {
        return;
    };
    ctx.session.handle_timeout(clock());
    match ctx.poll_outputs(s) {
        Polled::Close(violation) | Polled::Refuse(violation) => log_closing(s, &violation),
        Polled::Done => return,
        Polled::Error => {}
    }
    ctx.closing = true;
    let read = (*(*s).connection).read;
    if let Some(handler) = (*read).handler {
        (*read).set_timedout(1);
        // Finalizes the session: `ctx` is gone after this call.
        handler(read);
    }
}

/// The connection's number and both ends' addresses, for audit records.
unsafe fn peer(s: *mut ngx_stream_session_t) -> Peer {
    let c = (*s).connection;
    let mut text = [0u8; 128];
    let mut address = |sa: *mut ngx::ffi::sockaddr, len: ngx::ffi::socklen_t| -> String {
        if sa.is_null() {
            return String::new();
        }
        let n = ngx::ffi::ngx_sock_ntop(sa, len, text.as_mut_ptr(), text.len(), 1);
        String::from_utf8_lossy(text.get(..n).unwrap_or(&text)).into_owned()
    };
    let client = address((*c).sockaddr, (*c).socklen);
    let server = if ngx::ffi::ngx_connection_local_sockaddr(c, null_mut(), 0) == NGX_OK as ngx_int_t
    {
        address((*c).local_sockaddr, (*c).local_socklen)
    } else {
        String::new()
    };
    Peer {
        session: (*c).number,
        client,
        server,
    }
}

/// The address the client connected to (the listening address, resolved for a wildcard
/// `listen`), as `system.local` names it to the client.
unsafe fn local_address(s: *mut ngx_stream_session_t) -> Option<SocketAddr> {
    let c = (*s).connection;
    if ngx::ffi::ngx_connection_local_sockaddr(c, null_mut(), 0) != NGX_OK as ngx_int_t {
        return None;
    }
    let sa = (*c).local_sockaddr;
    if sa.is_null() {
        return None;
    }
    match u32::from((*sa).sa_family) {
        ngx::ffi::AF_INET => {
            let sin = &*(sa as *const ngx::ffi::sockaddr_in);
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        ngx::ffi::AF_INET6 => {
            let sin6 = &*(sa as *const ngx::ffi::sockaddr_in6);
            let ip = Ipv6Addr::from(sin6.sin6_addr.__in6_u.__u6_addr8);
            Some(SocketAddr::new(
                IpAddr::V6(ip),
                u16::from_be(sin6.sin6_port),
            ))
        }
        _ => None,
    }
}

/// The time of a call: wall-clock milliseconds (NGINX's cached time) and monotonic
/// microseconds for latencies and the rate limits, which every worker process reads the
/// same (`CLOCK_MONOTONIC`).
unsafe fn clock() -> Now {
    clock_of(true)
}

/// [`clock`], the monotonic clock read only if `monotonic` (a session that measures no
/// latency and limits no rate does not look at it: `Session::reads_monotonic_clock`).
unsafe fn clock_of(monotonic: bool) -> Now {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let monotonic = if monotonic && libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) == 0 {
        u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000
            + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1000
    } else {
        0
    };
    let t = *addr_of!(ngx_cached_time);
    let unix_ms = if t.is_null() {
        0
    } else {
        u64::try_from((*t).sec).unwrap_or(0) * 1000 + (*t).msec as u64
    };
    Now {
        unix_ms,
        monotonic_us: monotonic,
    }
}

/// The identity of the client certificate NGINX verified (`$ssl_client_verify` is
/// `SUCCESS`), read from `$ssl_client_raw_cert`.
unsafe fn client_certificate(
    s: *mut ngx_stream_session_t,
    verify: ngx_int_t,
    cert: ngx_int_t,
) -> Option<Identity> {
    let verified = variable(s, verify)?;
    if verified != b"SUCCESS" {
        return None;
    }
    let pem = core::str::from_utf8(variable(s, cert)?).ok()?;
    match crate::identity::identity_from_pem(pem) {
        Ok(identity) => Some(identity),
        Err(reason) => {
            error_log::write(
                (*(*s).connection).log,
                Level::Error,
                format_args!("cql: cannot read the client certificate: {reason}"),
            );
            None
        }
    }
}

unsafe fn variable<'a>(s: *mut ngx_stream_session_t, index: ngx_int_t) -> Option<&'a [u8]> {
    let v = ngx_stream_get_indexed_variable(s, index as ngx_uint_t);
    if v.is_null() || (*v).not_found() != 0 || (*v).data.is_null() {
        return None;
    }
    Some(core::slice::from_raw_parts((*v).data, (*v).len() as usize))
}

unsafe extern "C" fn cql_filter(
    s: *mut ngx_stream_session_t,
    chain: *mut ngx_chain_t,
    from_upstream: ngx_uint_t,
) -> ngx_int_t {
    let rc = filter(s, chain, from_upstream);
    if let Some(ctx) = ctx(s) {
        if ctx.deadline.timer_set() != 0 && ctx.session.is_authenticated() {
            ngx_del_timer(&mut ctx.deadline);
        }
    }
    rc
}

const OK: ngx_int_t = NGX_OK as ngx_int_t;
const ERROR: ngx_int_t = NGX_ERROR as ngx_int_t;

unsafe fn filter(
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
            None => return ERROR,
        },
    };
    ctx.reclaim();
    if ctx.closing {
        return ctx.finish(s, chain, from_upstream);
    }
    let direction = if from_upstream != 0 {
        Direction::ServerToClient
    } else {
        Direction::ClientToServer
    };
    let now = clock_of(ctx.session.reads_monotonic_clock());
    if chain.is_null() {
        // NGINX asks only for what is pending to be flushed; the writer refuses an empty
        // call, so it is asked only when it holds something.
        let dst = destination(s, direction);
        if !dst.is_null() && (*dst).buffered() != 0 && next(s, null_mut(), from_upstream) == ERROR {
            return ERROR;
        }
        ctx.reclaim();
        return ctx.resume(s, now);
    }
    // Bytes held back earlier go first, if there is room for them now.
    if ctx.resume(s, now) == ERROR {
        return ERROR;
    }
    if ctx.closing {
        return ctx.finish(s, chain, from_upstream);
    }

    // Links whose bytes go on as they came are forwarded in runs; a link the session
    // replaced is marked sent and its replacement goes in its place; a link that finds the
    // queue full waits in `held`, and so does every data link after it.
    let mut run = chain;
    let mut prev: *mut ngx_chain_t = null_mut();
    let mut cl = chain;
    while let Some(link) = cl.as_mut() {
        if let Some(buf) = link.buf.as_mut() {
            if buf.in_file() != 0 {
                // The stream proxy only hands memory buffers; anything else cannot be inspected.
                return close(s, &"cannot inspect a file buffer");
            }
            if !buf.pos.is_null() && buf.pos < buf.last {
                if !ctx.held.of(direction).is_empty() || ctx.full(direction) {
                    if forward_run(s, run, prev, cl, from_upstream) == ERROR {
                        return ERROR;
                    }
                    ctx.hold(direction, cl);
                    return OK;
                }
                let len = buf.last.offset_from(buf.pos) as usize;
                let bytes = core::slice::from_raw_parts(buf.pos, len);
                if ctx.session.feed(direction, bytes, now) == Action::Replace {
                    // What went before goes on; this buffer's bytes were taken in.
                    if forward_run(s, run, prev, cl, from_upstream) == ERROR {
                        return ERROR;
                    }
                    buf.pos = buf.last;
                    run = link.next;
                }
                match ctx.poll_outputs(s) {
                    Polled::Done => {}
                    Polled::Error => return ERROR,
                    Polled::Close(violation) => return close(s, &violation),
                    Polled::Refuse(violation) => {
                        // The rest is the closing's.
                        return ctx.refuse(s, &violation, link.next, from_upstream);
                    }
                }
            }
        }
        prev = cl;
        cl = link.next;
    }

    if run.is_null() {
        return OK;
    }
    next(s, run, from_upstream)
}

/// The connection that `flow` writes to.
unsafe fn destination(s: *mut ngx_stream_session_t, flow: Direction) -> *mut ngx_connection_t {
    match flow {
        Direction::ServerToClient => (*s).connection,
        Direction::ClientToServer => {
            let u = (*s).upstream;
            if u.is_null() {
                null_mut()
            } else {
                (*u).peer.connection
            }
        }
    }
}

/// Forwards the links from `run` up to (not including) `stop`, `last` being the one before
/// `stop`. The chain is cut for the call and mended after: the next filters copy the links
/// they keep, and the proxy walks the whole chain afterwards.
unsafe fn forward_run(
    s: *mut ngx_stream_session_t,
    run: *mut ngx_chain_t,
    last: *mut ngx_chain_t,
    stop: *mut ngx_chain_t,
    from_upstream: ngx_uint_t,
) -> ngx_int_t {
    if last.is_null() || run == stop {
        return OK;
    }
    (*last).next = null_mut();
    let rc = next(s, run, from_upstream);
    (*last).next = stop;
    rc
}

impl Ctx {
    /// Does what the session's output queue says: bytes go to NGINX toward their peer,
    /// audit lines to the sink, notices to the error log; stops at the end of the
    /// connection, which the caller carries out.
    unsafe fn poll_outputs(&mut self, s: *mut ngx_stream_session_t) -> Polled {
        let log = (*(*s).connection).log;
        while let Some(output) = self.session.poll_output(&mut self.polled) {
            match output {
                Output::Send(flow) => {
                    // The bytes go in a buffer NGINX keeps until sent; a spare one takes
                    // their place for the next poll.
                    let mut out = self.spare.pop().unwrap_or_else(Inflight::new);
                    core::mem::swap(&mut out.data, &mut self.polled);
                    if self.send(s, flow, out) == ERROR {
                        return Polled::Error;
                    }
                }
                Output::Refuse(violation) => return Polled::Refuse(violation),
                Output::Close(violation) => return Polled::Close(violation),
                logged => self.write_log(&logged, log),
            }
        }
        Polled::Done
    }

    /// After the connection closed: the audit lines and notices still queued go to `log`.
    unsafe fn write_logs(&mut self, log: *mut ngx::ffi::ngx_log_t) {
        while let Some(output) = self.session.poll_output(&mut self.polled) {
            self.write_log(&output, log);
        }
    }

    /// An output for the logs: audit lines (in [`Ctx::polled`]) to the server's audit sink,
    /// a notice to the error log; other outputs are not the logs'.
    unsafe fn write_log(&self, output: &Output, log: *mut ngx::ffi::ngx_log_t) {
        match output {
            Output::Audit => {
                if let Some(sink) = &self.audit {
                    sink.write(&self.polled, log);
                }
            }
            Output::Notice(line) => error_log::write(log, Level::Error, format_args!("{line}")),
            _ => {}
        }
    }

    /// Releases the buffers NGINX has finished sending (it sends each direction in order).
    fn reclaim(&mut self) {
        for queue in self.inflight.both_mut() {
            while let Some(front) = queue.front() {
                if front.buf.pos < front.buf.last {
                    break;
                }
                if let Some(mut done) = queue.pop_front() {
                    if self.spare.len() < SPARE_BUFFERS && done.data.capacity() <= SPARE_CAPACITY {
                        done.data.clear();
                        self.spare.push(done);
                    }
                }
            }
        }
    }

    /// Bytes of the proxy's own handed to NGINX toward `flow`'s peer and not yet sent.
    fn unsent(&self, flow: Direction) -> usize {
        self.inflight
            .of(flow)
            .iter()
            .map(|f| unsafe { f.buf.last.offset_from(f.buf.pos) }.max(0) as usize)
            .sum()
    }

    /// Whether the bytes of `from`'s peer must wait: what the proxy queued is at
    /// `cql_max_queued_size`. A client's bytes wait for the queues toward both peers (its
    /// requests and the proxy's answers to it); the server's only for the queue toward the
    /// client, so that its answers, which drain the rest, always come in.
    fn full(&self, from: Direction) -> bool {
        let max = self.session.max_queued();
        let toward_client = self
            .unsent(Direction::ServerToClient)
            .saturating_add(self.session.queued_toward(Direction::ServerToClient));
        match from {
            Direction::ServerToClient => toward_client >= max,
            Direction::ClientToServer => {
                toward_client
                    .saturating_add(self.unsent(Direction::ClientToServer))
                    .saturating_add(self.session.queued_toward(Direction::ClientToServer))
                    >= max
            }
        }
    }

    /// Keeps the data links from `cl` on for later, in `direction`'s queue: NGINX's proxy
    /// keeps their buffers busy until they are marked sent, so it reads no more than its
    /// buffer holds.
    unsafe fn hold(&mut self, direction: Direction, mut cl: *mut ngx_chain_t) {
        while let Some(link) = cl.as_ref() {
            if let Some(buf) = link.buf.as_ref() {
                if !buf.pos.is_null() && buf.pos < buf.last {
                    self.held.of_mut(direction).push_back(link.buf);
                }
            }
            cl = link.next;
        }
    }

    /// Feeds the held buffers while there is room, in order, and tells NGINX's proxy to
    /// read on from the peer whose buffers were taken.
    unsafe fn resume(&mut self, s: *mut ngx_stream_session_t, now: Now) -> ngx_int_t {
        for direction in [Direction::ClientToServer, Direction::ServerToClient] {
            let mut resumed = false;
            while let Some(&buf) = self.held.of(direction).front() {
                if self.full(direction) {
                    break;
                }
                self.held.of_mut(direction).pop_front();
                resumed = true;
                let up = ngx_uint_t::from(direction == Direction::ServerToClient);
                let len = (*buf).last.offset_from((*buf).pos).max(0) as usize;
                let bytes = core::slice::from_raw_parts((*buf).pos, len);
                match self.session.feed(direction, bytes, now) {
                    Action::Forward => {
                        let mut link = ngx_chain_t {
                            buf,
                            next: null_mut(),
                        };
                        if next(s, &mut link, up) == ERROR {
                            return ERROR;
                        }
                    }
                    Action::Replace => (*buf).pos = (*buf).last,
                }
                match self.poll_outputs(s) {
                    Polled::Done => {}
                    Polled::Error => return ERROR,
                    Polled::Close(violation) => return close(s, &violation),
                    Polled::Refuse(violation) => {
                        return self.refuse(s, &violation, null_mut(), up);
                    }
                }
            }
            if resumed {
                // The proxy reads that peer again when it next writes to the other.
                let dst = destination(s, direction);
                if !dst.is_null() {
                    ngx_post_event((*dst).write, addr_of_mut!(ngx_posted_events));
                }
            }
        }
        OK
    }

    /// Hands bytes of the session's toward one peer to NGINX; they stay alive here until
    /// they are sent.
    unsafe fn send(
        &mut self,
        s: *mut ngx_stream_session_t,
        flow: Direction,
        out: Inflight,
    ) -> ngx_int_t {
        let Inflight { mut buf, mut data } = out;
        *buf = core::mem::zeroed();
        let start = data.as_mut_ptr();
        buf.start = start;
        buf.pos = start;
        buf.last = start.add(data.len());
        buf.end = buf.last;
        buf.set_temporary(1);
        buf.set_flush(1);
        buf.tag = addr_of!(super::module::ngx_stream_cql_module) as ngx_buf_tag_t;
        let mut link = ngx_chain_t {
            buf: &mut *buf,
            next: null_mut(),
        };
        let up = ngx_uint_t::from(flow == Direction::ServerToClient);
        self.inflight.of_mut(flow).push_back(Inflight { buf, data });
        let rc = next(s, &mut link, up);
        self.reclaim();
        rc
    }

    /// The session refused the client: the reason goes to the error log, the refusal (with
    /// what the client was owed before it) on its way, and the connection ends once it is
    /// sent. `rest` is the part of the chain not fed yet.
    unsafe fn refuse(
        &mut self,
        s: *mut ngx_stream_session_t,
        violation: &Violation,
        rest: *mut ngx_chain_t,
        from_upstream: ngx_uint_t,
    ) -> ngx_int_t {
        log_closing(s, violation);
        self.closing = true;
        self.finish(s, rest, from_upstream)
    }

    /// While a refusal is on its way to the client: nothing more is forwarded but the end of
    /// the server's response in progress, and the connection ends as soon as the client has
    /// been sent everything.
    unsafe fn finish(
        &mut self,
        s: *mut ngx_stream_session_t,
        chain: *mut ngx_chain_t,
        from_upstream: ngx_uint_t,
    ) -> ngx_int_t {
        let now = clock_of(self.session.reads_monotonic_clock());
        if from_upstream != 0 && !self.session.is_drained() {
            let mut cl = chain;
            while let Some(link) = cl.as_ref() {
                if let Some(buf) = link.buf.as_mut() {
                    if !buf.pos.is_null() && buf.pos < buf.last && buf.in_file() == 0 {
                        let len = buf.last.offset_from(buf.pos) as usize;
                        let bytes = core::slice::from_raw_parts(buf.pos, len);
                        let _ = self.session.feed(Direction::ServerToClient, bytes, now);
                        buf.pos = buf.last;
                        match self.poll_outputs(s) {
                            Polled::Done | Polled::Refuse(_) => {}
                            Polled::Error => return ERROR,
                            Polled::Close(violation) => return close(s, &violation),
                        }
                    }
                }
                cl = link.next;
            }
        }
        consume(chain);
        for queue in self.held.both_mut() {
            for buf in queue.drain(..) {
                (*buf).pos = (*buf).last;
            }
        }
        let client = (*s).connection;
        // Only ask the writer to flush when it holds something: an empty call is an error to it.
        if (*client).buffered() != 0 && next(s, null_mut(), 1) == ERROR {
            return ERROR;
        }
        if (*client).buffered() != 0 || !self.session.is_drained() {
            // Still sending, or waiting for the server's frame to end; NGINX calls the
            // filter again when the client can take more or the server sends more.
            return OK;
        }
        ERROR
    }
}

/// What polling the session's output queue came to.
enum Polled {
    /// Everything was done; the connection goes on.
    Done,
    /// NGINX failed to take bytes: the connection ends.
    Error,
    Refuse(Violation),
    Close(Violation),
}

/// Ends the connection with an error-log line saying why.
unsafe fn close(s: *mut ngx_stream_session_t, why: &dyn core::fmt::Display) -> ngx_int_t {
    error_log::write(
        (*(*s).connection).log,
        Level::Error,
        format_args!("cql: closing connection: {why}"),
    );
    ERROR
}

/// The error-log line of a connection the session ends: a driver probing protocol
/// versions is expected (info), anything else an error.
unsafe fn log_closing(s: *mut ngx_stream_session_t, violation: &Violation) {
    let level = if violation.is_version_probe() {
        Level::Info
    } else {
        Level::Error
    };
    error_log::write(
        (*(*s).connection).log,
        level,
        format_args!("cql: closing connection: {violation}"),
    );
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
