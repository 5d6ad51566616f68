//! `cql_audit_log`: where audit lines go, written through NGINX's own log machinery.
//!
//! A file is opened with `ngx_conf_open_file`, so `nginx -s reopen` reopens it and every
//! server naming the same path shares one descriptor. Everything else about it lives in this
//! module's own [`AuditFile`], one per file and configuration: with `buffer=` lines are
//! collected per worker and written when the buffer fills, when `flush=` expires (a timer of
//! ours), before a reopen and when the worker exits. NGINX's `ngx_open_file_t.data` is never
//! touched: `access_log` reads it as its own buffer. Its `flush` is set to a function of ours
//! only while no other module wants it, for NGINX to call before a reopen.
//!
//! A file another log writes too is refused while the configuration loads, with the file and
//! line of `cql_audit_log` (see [`check_files`]): lines of both would interleave, and another
//! module's buffer on the same `ngx_open_file_t` is another module's business.
//!
//! A `syslog:` target sends each line as one datagram with NGINX's syslog code (the
//! `error_log`/`access_log` syntax: `server=`, `facility=`, `severity=`, `tag=`,
//! `nohostname`). Neither ever waits on the network.

use core::cell::RefCell;
use core::ffi::c_void;
use core::ptr::addr_of;

use ngx::ffi::{
    ngx_add_timer, ngx_array_t, ngx_conf_open_file, ngx_conf_t, ngx_cycle, ngx_cycle_t,
    ngx_del_timer, ngx_event_t, ngx_int_t, ngx_list_part_t, ngx_log_t, ngx_msec_t, ngx_open_file_t,
    ngx_parse_time, ngx_pcalloc, ngx_pool_cleanup_add, ngx_str_t, ngx_stream_conf_ctx_t,
    ngx_stream_core_main_conf_t, ngx_stream_core_module, ngx_stream_core_srv_conf_t,
    ngx_syslog_add_header, ngx_syslog_peer_t, ngx_syslog_process_conf, ngx_syslog_send,
    ngx_test_config, NGX_ERROR, NGX_LOG_ALERT, NGX_LOG_EMERG, NGX_LOG_WARN, NGX_OK,
};
use ngx::ngx_log_error;

use super::config::{self, At};
use crate::audit::Format;

/// Where one server's audit lines go.
pub struct Sink {
    target: Target,
    pub format: Format,
}

enum Target {
    /// A file of this module's, owned by the configuration's pool.
    File(*mut AuditFile),
    Syslog(*mut ngx_syslog_peer_t),
}

/// One audit log file of one configuration, shared by the servers that name it.
struct AuditFile {
    /// NGINX's open file: the descriptor, reopened by `nginx -s reopen`.
    file: *mut ngx_open_file_t,
    /// The configuration the file belongs to.
    cycle: *mut ngx_cycle_t,
    /// The path as the first `cql_audit_log` naming it wrote it, and where that is.
    path: String,
    at: At,
    /// `buffer=`, per worker.
    buffer: Option<FileBuffer>,
}

/// Lines of one file waiting to be written (`buffer=`).
struct FileBuffer {
    data: Vec<u8>,
    capacity: usize,
    /// `flush=`: the longest a line waits; 0: until the buffer fills.
    flush: ngx_msec_t,
    /// The `flush=` timer; its `data` is the [`AuditFile`].
    event: ngx_event_t,
}

thread_local! {
    /// The audit files of every configuration this process holds, each owned by its
    /// configuration's pool (which takes it out of this list when it is destroyed).
    static FILES: RefCell<Vec<*mut AuditFile>> = const { RefCell::new(Vec::new()) };
}

/// The audit file of ours that writes to NGINX's `file`.
fn ours(file: *mut ngx_open_file_t) -> Option<*mut AuditFile> {
    FILES.with(|files| {
        files
            .borrow()
            .iter()
            .copied()
            // SAFETY: the list holds only live files (see `drop_audit_file`).
            .find(|&audit| unsafe { (*audit).file } == file)
    })
}

/// The audit files of `cycle`'s configuration.
fn files_of(cycle: *mut ngx_cycle_t) -> Vec<*mut AuditFile> {
    FILES.with(|files| {
        files
            .borrow()
            .iter()
            .copied()
            // SAFETY: as in `ours`.
            .filter(|&audit| unsafe { (*audit).cycle } == cycle)
            .collect()
    })
}

/// Parses `cql_audit_log off | PATH | syslog:... [format=json|cassandra] [buffer=SIZE]
/// [flush=TIME]` (`args` without the directive's name, `at` where it is); `None` for `off`.
pub unsafe fn parse(cf: *mut ngx_conf_t, args: &[&str], at: At) -> Result<Option<Sink>, String> {
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
            match config::parse_size(value) {
                Some(size) if (1..=16 * 1024 * 1024).contains(&size) => buffer = Some(size),
                _ => {
                    return Err(format!(
                        "invalid buffer size \"{value}\": expected 1 to 16m"
                    ))
                }
            }
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
    let cycle = (*cf).cycle;
    let mut name = ngx_str_in_pool(cf, target)?;
    let known = open_file_count(cycle);
    let file = ngx_conf_open_file(cycle, &mut name);
    if file.is_null() {
        return Err(format!("cannot open \"{target}\""));
    }
    let audit = match ours(file) {
        Some(audit) => audit,
        // NGINX had this file open already, and not for us: another log writes it.
        None if open_file_count(cycle) == known => return Err(shared_message(target)),
        None => new_audit_file(cf, file, target, at)?,
    };
    if let Some(capacity) = buffer {
        let flush = flush.unwrap_or(0);
        match &(*audit).buffer {
            Some(existing) if existing.capacity != capacity || existing.flush != flush => {
                return Err(format!(
                    "\"{target}\" is already an audit log with other buffer= or flush="
                ));
            }
            Some(_) => {}
            None => add_buffer(cf, audit, capacity, flush),
        }
    }
    Ok(Some(Sink {
        target: Target::File(audit),
        format,
    }))
}

/// What a path another log writes is refused with (after `"cql_audit_log" `).
fn shared_message(path: &str) -> String {
    format!("\"{path}\" is also written by another log; give the audit log a file of its own")
}

/// How many files `cycle`'s configuration has opened so far.
unsafe fn open_file_count(cycle: *mut ngx_cycle_t) -> usize {
    let mut count = 0;
    let mut part: *const ngx_list_part_t = &(*cycle).open_files.part;
    while let Some(p) = part.as_ref() {
        count += p.nelts;
        part = p.next;
    }
    count
}

/// An audit file for NGINX's `file`, owned by the configuration's pool.
unsafe fn new_audit_file(
    cf: *mut ngx_conf_t,
    file: *mut ngx_open_file_t,
    path: &str,
    at: At,
) -> Result<*mut AuditFile, String> {
    let cleanup = ngx_pool_cleanup_add((*cf).pool, 0);
    if cleanup.is_null() {
        return Err("out of memory".to_string());
    }
    let audit = Box::into_raw(Box::new(AuditFile {
        file,
        cycle: (*cf).cycle,
        path: path.to_string(),
        at,
        buffer: None,
    }));
    (*cleanup).handler = Some(drop_audit_file);
    (*cleanup).data = audit.cast();
    FILES.with(|files| files.borrow_mut().push(audit));
    Ok(audit)
}

/// Gives `audit` a buffer of `capacity` bytes, written at the latest `flush` ms after its
/// first line (0: when full), and before NGINX reopens the file.
unsafe fn add_buffer(
    cf: *mut ngx_conf_t,
    audit: *mut AuditFile,
    capacity: usize,
    flush: ngx_msec_t,
) {
    // The buffer stays where it is from here on: the timer's event must not move.
    let buffer = (*audit).buffer.insert(FileBuffer {
        data: Vec::new(),
        capacity,
        flush,
        event: core::mem::zeroed(),
    });
    let event = &mut buffer.event;
    event.data = audit.cast();
    event.handler = Some(flush_timer);
    event.log = &mut (*(*cf).cycle).new_log;
    event.set_cancelable(1);
    let file = (*audit).file;
    if (*file).flush.is_none() {
        (*file).flush = Some(flush_before_reopen);
    }
}

unsafe extern "C" fn drop_audit_file(data: *mut c_void) {
    let audit = data as *mut AuditFile;
    FILES.with(|files| files.borrow_mut().retain(|&f| f != audit));
    let mut audit = Box::from_raw(audit);
    if let Some(buffer) = audit.buffer.as_mut() {
        if buffer.event.timer_set() != 0 {
            ngx_del_timer(&mut buffer.event);
        }
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
            Target::File(audit) => (*audit).write(lines, log),
            Target::Syslog(peer) => {
                for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    send_syslog(peer, line, log);
                }
            }
        }
    }
}

impl AuditFile {
    unsafe fn write(&mut self, lines: &[u8], log: *mut ngx_log_t) {
        let file = self.file;
        let Some(buffer) = self.buffer.as_mut() else {
            write_fd(file, lines, log);
            return;
        };
        if buffer.data.len() + lines.len() > buffer.capacity {
            buffer.write_out(file, log);
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

    /// Writes what the buffer holds: when full, on its timer, before a reopen and at exit.
    unsafe fn flush(&mut self, log: *mut ngx_log_t) {
        let file = self.file;
        if let Some(buffer) = self.buffer.as_mut() {
            buffer.write_out(file, log);
        }
    }
}

impl FileBuffer {
    unsafe fn write_out(&mut self, file: *mut ngx_open_file_t, log: *mut ngx_log_t) {
        if !self.data.is_empty() {
            write_fd(file, &self.data, log);
            self.data.clear();
        }
        if self.event.timer_set() != 0 {
            ngx_del_timer(&mut self.event);
        }
    }
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

/// NGINX's `flush` of a buffered audit file: called before `nginx -s reopen` reopens it, so
/// the lines buffered so far end in the old file.
unsafe extern "C" fn flush_before_reopen(file: *mut ngx_open_file_t, log: *mut ngx_log_t) {
    if let Some(audit) = ours(file) {
        (*audit).flush(log);
    }
}

unsafe extern "C" fn flush_timer(event: *mut ngx_event_t) {
    let audit = (*event).data as *mut AuditFile;
    (*audit).flush((*event).log);
}

/// At worker exit: writes every audit buffer of the worker's configuration.
pub unsafe fn flush_all(cycle: *mut ngx_cycle_t) {
    for audit in files_of(cycle) {
        (*audit).flush((*cycle).log);
    }
}

/// Whether a log other than ours writes `audit`'s file: another module's buffer or flush
/// function on NGINX's open file, or one of the error logs `logs` (each with its `next`).
unsafe fn written_by_another_log(audit: &AuditFile, logs: &[*const ngx_log_t]) -> bool {
    let file = audit.file;
    if !(*file).data.is_null() {
        return true;
    }
    // One function in one codegen unit: its address marks the files this module flushes.
    let flush_of_ours = flush_before_reopen as unsafe extern "C" fn(_, _) as usize;
    if (*file).flush.is_some_and(|f| f as usize != flush_of_ours) {
        return true;
    }
    for &first in logs {
        let mut log = first;
        while let Some(l) = log.as_ref() {
            if l.file == file {
                return true;
            }
            log = l.next;
        }
    }
    false
}

/// At the end of the `stream` block: refuses an audit file that another log opened after
/// `cql_audit_log` (a buffered `access_log`, an `error_log` of the stream block or of a
/// server, the main `error_log`), naming the `cql_audit_log`'s file and line. An earlier one
/// is refused by the directive itself.
pub unsafe fn check_files(cf: *mut ngx_conf_t) -> bool {
    let cycle = (*cf).cycle;
    let mut logs: Vec<*const ngx_log_t> = vec![&(*cycle).new_log];
    logs.extend(stream_error_logs(cf));
    for audit in files_of(cycle) {
        let audit = &*audit;
        if written_by_another_log(audit, &logs) {
            let message = format!("\"cql_audit_log\" {}", shared_message(&audit.path));
            config::log_emerg_at(cf, &audit.at, &message);
            return false;
        }
    }
    true
}

/// The `error_log`s of the stream block's servers (each inherits the block's own).
unsafe fn stream_error_logs(cf: *mut ngx_conf_t) -> Vec<*const ngx_log_t> {
    let mut logs = Vec::new();
    // After the merge, the context of a server of the block: its main_conf is the block's.
    let Some(ctx) = ((*cf).ctx as *const ngx_stream_conf_ctx_t).as_ref() else {
        return logs;
    };
    let index = (*addr_of!(ngx_stream_core_module)).ctx_index;
    let main = *ctx.main_conf.add(index) as *const ngx_stream_core_main_conf_t;
    let Some(main) = main.as_ref() else {
        return logs;
    };
    let servers: &ngx_array_t = &main.servers;
    let elts = servers.elts as *const *const ngx_stream_core_srv_conf_t;
    for i in 0..servers.nelts {
        if let Some(server) = (*elts.add(i)).as_ref() {
            logs.push(server.error_log as *const ngx_log_t);
        }
    }
    logs
}

/// When the whole configuration is loaded (`init_module`, run by `nginx -t` too): an audit
/// file that a log after the `stream` block writes as well (a buffered `access_log` of the
/// `http` block, the main `error_log`, NGINX's default error log). Refused by `nginx -t` and
/// at start; on a reload only a warning, as NGINX ends the master process when
/// `init_module` fails, and the audit log keeps to its own buffer either way.
pub unsafe fn check_files_at_load(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    let logs: [*const ngx_log_t; 1] = [&(*cycle).new_log];
    let old = (*cycle).old_cycle;
    let starting = old.is_null() || (*old).conf_ctx.is_null();
    let refuse = *addr_of!(ngx_test_config) != 0 || starting;
    for audit in files_of(cycle) {
        let audit = &*audit;
        if !written_by_another_log(audit, &logs) {
            continue;
        }
        let message = format!("\"cql_audit_log\" {}", shared_message(&audit.path));
        if refuse {
            ngx_log_error!(NGX_LOG_EMERG, (*cycle).log, "{} in {}", message, audit.at);
            return NGX_ERROR as ngx_int_t;
        }
        ngx_log_error!(NGX_LOG_WARN, (*cycle).log, "{} in {}", message, audit.at);
    }
    NGX_OK as ngx_int_t
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
