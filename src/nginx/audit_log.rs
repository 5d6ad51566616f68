//! `cql_audit_log`: where audit lines go, written through NGINX's own log machinery.
//!
//! A file is opened with `ngx_conf_open_file`, so `nginx -s reopen` reopens it and every
//! server naming the same path shares one descriptor; with `buffer=` lines are collected per
//! worker and written when the buffer fills, when `flush=` expires, at reopen and when the
//! worker exits, as `access_log` does. A `syslog:` target sends each line as one datagram
//! with NGINX's syslog code (the `error_log`/`access_log` syntax: `server=`, `facility=`,
//! `severity=`, `tag=`, `nohostname`). Neither ever waits on the network.

use core::ffi::c_void;
use core::ptr::addr_of;

use ngx::ffi::{
    ngx_add_timer, ngx_conf_open_file, ngx_conf_t, ngx_cycle, ngx_cycle_t, ngx_del_timer,
    ngx_event_t, ngx_list_part_t, ngx_log_t, ngx_msec_t, ngx_open_file_t, ngx_parse_size,
    ngx_parse_time, ngx_pcalloc, ngx_pool_cleanup_add, ngx_str_t, ngx_syslog_add_header,
    ngx_syslog_peer_t, ngx_syslog_process_conf, ngx_syslog_send, NGX_ERROR, NGX_LOG_ALERT,
    NGX_LOG_WARN,
};
use ngx::ngx_log_error;

use crate::audit::Format;

/// Where one server's audit lines go.
pub struct Sink {
    target: Target,
    pub format: Format,
}

enum Target {
    /// A file: its buffer, if any, hangs off `data`.
    File(*mut ngx_open_file_t),
    Syslog(*mut ngx_syslog_peer_t),
}

/// Lines of one file waiting to be written (`buffer=`), per worker.
struct FileBuffer {
    data: Vec<u8>,
    capacity: usize,
    /// `flush=`: the longest a line waits; 0: until the buffer fills.
    flush: ngx_msec_t,
    event: ngx_event_t,
}

/// Parses `cql_audit_log off | PATH | syslog:... [format=json|cassandra] [buffer=SIZE]
/// [flush=TIME]` (`args` without the directive's name); `None` for `off`.
pub unsafe fn parse(cf: *mut ngx_conf_t, args: &[&str]) -> Result<Option<Sink>, String> {
    let Some((target, options)) = args.split_first() else {
        return Err("takes a path, a syslog: target or off".to_string());
    };
    if *target == "off" {
        if !options.is_empty() {
            return Err("takes no parameters after off".to_string());
        }
        return Ok(None);
    }
    let mut format = Format::Json;
    let mut buffer: Option<usize> = None;
    let mut flush: Option<ngx_msec_t> = None;
    for option in options {
        if let Some(value) = option.strip_prefix("format=") {
            format = match value {
                "json" => Format::Json,
                "cassandra" => Format::Cassandra,
                other => {
                    return Err(format!(
                        "invalid format \"{other}\": expected json or cassandra"
                    ))
                }
            };
        } else if let Some(value) = option.strip_prefix("buffer=") {
            let mut s = ngx_str(value);
            let size = ngx_parse_size(&mut s);
            if size <= 0 || size > 16 * 1024 * 1024 {
                return Err(format!(
                    "invalid buffer size \"{value}\": expected 1 to 16m"
                ));
            }
            buffer = Some(size as usize);
        } else if let Some(value) = option.strip_prefix("flush=") {
            let mut s = ngx_str(value);
            let ms = ngx_parse_time(&mut s, 0);
            if ms == NGX_ERROR as isize || ms <= 0 {
                return Err(format!("invalid flush time \"{value}\""));
            }
            flush = Some(ms as ngx_msec_t);
        } else {
            return Err(format!("invalid parameter \"{option}\""));
        }
    }
    if target.starts_with("syslog:") {
        if buffer.is_some() || flush.is_some() {
            return Err("a syslog target takes no buffer= or flush=".to_string());
        }
        let peer = ngx_pcalloc((*cf).pool, core::mem::size_of::<ngx_syslog_peer_t>())
            as *mut ngx_syslog_peer_t;
        if peer.is_null() {
            return Err("out of memory".to_string());
        }
        // Reads the target from the directive's first argument, as access_log's does.
        let rv = ngx_syslog_process_conf(cf, peer);
        if !rv.is_null() {
            // It logged the reason with the file and line already.
            return Err(String::new());
        }
        return Ok(Some(Sink {
            target: Target::Syslog(peer),
            format,
        }));
    }
    if flush.is_some() && buffer.is_none() {
        return Err("flush= needs buffer=".to_string());
    }
    let mut name = ngx_str_in_pool(cf, target)?;
    let file = ngx_conf_open_file((*cf).cycle, &mut name);
    if file.is_null() {
        return Err(format!("cannot open \"{target}\""));
    }
    if let Some(capacity) = buffer {
        let existing = (*file).data as *mut FileBuffer;
        if let Some(existing) = existing.as_ref() {
            if existing.capacity != capacity || existing.flush != flush.unwrap_or(0) {
                return Err(format!(
                    "\"{target}\" is already an audit log with other buffer= or flush="
                ));
            }
        } else {
            let buf = file_buffer(cf, file, capacity, flush.unwrap_or(0))?;
            (*file).data = buf.cast();
            (*file).flush = Some(flush_file);
        }
    }
    Ok(Some(Sink {
        target: Target::File(file),
        format,
    }))
}

/// A buffer for `file`, owned by the configuration's pool.
unsafe fn file_buffer(
    cf: *mut ngx_conf_t,
    file: *mut ngx_open_file_t,
    capacity: usize,
    flush: ngx_msec_t,
) -> Result<*mut FileBuffer, String> {
    let cleanup = ngx_pool_cleanup_add((*cf).pool, 0);
    if cleanup.is_null() {
        return Err("out of memory".to_string());
    }
    let buffer = Box::into_raw(Box::new(FileBuffer {
        data: Vec::new(),
        capacity,
        flush,
        event: core::mem::zeroed(),
    }));
    let event = &mut (*buffer).event;
    event.data = file.cast();
    event.handler = Some(flush_timer);
    event.log = &mut (*(*cf).cycle).new_log;
    event.set_cancelable(1);
    (*cleanup).handler = Some(drop_buffer);
    (*cleanup).data = buffer.cast();
    Ok(buffer)
}

unsafe extern "C" fn drop_buffer(data: *mut c_void) {
    let buffer = Box::from_raw(data as *mut FileBuffer);
    if buffer.event.timer_set() != 0 {
        let mut buffer = buffer;
        ngx_del_timer(&mut buffer.event);
    }
}

fn ngx_str(s: &str) -> ngx_str_t {
    ngx_str_t {
        len: s.len(),
        data: s.as_ptr() as *mut u8,
    }
}

/// A copy of `s` in the configuration's pool, for NGINX to keep.
unsafe fn ngx_str_in_pool(cf: *mut ngx_conf_t, s: &str) -> Result<ngx_str_t, String> {
    let data = ngx::ffi::ngx_pnalloc((*cf).pool, s.len() + 1) as *mut u8;
    if data.is_null() {
        return Err("out of memory".to_string());
    }
    core::ptr::copy_nonoverlapping(s.as_ptr(), data, s.len());
    *data.add(s.len()) = 0;
    Ok(ngx_str_t { len: s.len(), data })
}

impl Sink {
    /// Writes whole lines (each ending in `\n`).
    pub unsafe fn write(&self, lines: &[u8], log: *mut ngx_log_t) {
        match self.target {
            Target::File(file) => write_file(file, lines, log),
            Target::Syslog(peer) => {
                for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    send_syslog(peer, line, log);
                }
            }
        }
    }
}

unsafe fn write_file(file: *mut ngx_open_file_t, lines: &[u8], log: *mut ngx_log_t) {
    let Some(buffer) = ((*file).data as *mut FileBuffer).as_mut() else {
        write_fd(file, lines, log);
        return;
    };
    if buffer.data.len() + lines.len() > buffer.capacity {
        flush_file(file, log);
    }
    if lines.len() > buffer.capacity {
        write_fd(file, lines, log);
        return;
    }
    if buffer.data.is_empty() {
        if buffer.data.capacity() < buffer.capacity {
            buffer.data.reserve_exact(buffer.capacity);
        }
        if buffer.flush > 0 {
            ngx_add_timer(&mut buffer.event, buffer.flush);
        }
    }
    buffer.data.extend_from_slice(lines);
}

unsafe fn write_fd(file: *mut ngx_open_file_t, bytes: &[u8], log: *mut ngx_log_t) {
    let n = ngx::ffi::write((*file).fd, bytes.as_ptr().cast(), bytes.len());
    let name = String::from_utf8_lossy((*file).name.as_bytes());
    if n < 0 {
        let err = std::io::Error::last_os_error();
        ngx_log_error!(
            NGX_LOG_ALERT,
            log,
            "cql: write() to audit log \"{}\" failed: {}",
            name,
            err
        );
    } else if n as usize != bytes.len() {
        ngx_log_error!(
            NGX_LOG_ALERT,
            log,
            "cql: write() to audit log \"{}\" was incomplete: {} of {}",
            name,
            n,
            bytes.len()
        );
    }
}

/// Writes what a file's buffer holds: when full, on its timer, before a reopen and at exit.
unsafe extern "C" fn flush_file(file: *mut ngx_open_file_t, log: *mut ngx_log_t) {
    let Some(buffer) = ((*file).data as *mut FileBuffer).as_mut() else {
        return;
    };
    if !buffer.data.is_empty() {
        write_fd(file, &buffer.data, log);
        buffer.data.clear();
    }
    if buffer.event.timer_set() != 0 {
        ngx_del_timer(&mut buffer.event);
    }
}

unsafe extern "C" fn flush_timer(event: *mut ngx_event_t) {
    flush_file((*event).data as *mut ngx_open_file_t, (*event).log);
}

/// At worker exit: writes every audit buffer.
pub unsafe fn flush_all(cycle: *mut ngx_cycle_t) {
    let mut part: *mut ngx_list_part_t = &mut (*cycle).open_files.part;
    let mut i = 0;
    while let Some(p) = part.as_mut() {
        if i >= p.nelts {
            part = p.next;
            i = 0;
            continue;
        }
        let file = (p.elts as *mut ngx_open_file_t).add(i);
        // One function in one codegen unit: its address marks the files this module owns.
        let ours = (*file)
            .flush
            .is_some_and(|f| f as usize == flush_file as unsafe extern "C" fn(_, _) as usize);
        if ours {
            flush_file(file, (*cycle).log);
        }
        i += 1;
    }
}

/// One syslog datagram: NGINX's header, then the line.
unsafe fn send_syslog(peer: *mut ngx_syslog_peer_t, line: &[u8], log: *mut ngx_log_t) {
    let cycle = *addr_of!(ngx_cycle);
    let hostname = if cycle.is_null() {
        0
    } else {
        (*cycle).hostname.len
    };
    let header = "<255>Jan 01 00:00:00 ".len() + hostname + 1 + (*peer).tag.len + 2;
    let mut message: Vec<u8> = Vec::with_capacity(header + line.len());
    let start = message.as_mut_ptr();
    let end = ngx_syslog_add_header(peer, start);
    if end.is_null() {
        return;
    }
    let written = end.offset_from(start);
    let Ok(written) = usize::try_from(written) else {
        return;
    };
    if written > header {
        return;
    }
    message.set_len(written);
    message.extend_from_slice(line);
    let n = ngx_syslog_send(peer, message.as_mut_ptr(), message.len());
    if n < 0 {
        ngx_log_error!(
            NGX_LOG_WARN,
            log,
            "cql: send() of an audit line to syslog failed"
        );
    }
}
