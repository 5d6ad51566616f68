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
//! `nohostname`). Neither ever waits on the network. A datagram is at most
//! [`SYSLOG_MAX_DATAGRAM`] bytes, header included; a longer line is shortened with a visible
//! mark (see [`fit_syslog_line`]).

use std::borrow::Cow;

use core::cell::RefCell;
use core::ffi::c_void;
use core::ptr::addr_of;

use ngx::ffi::{
    ngx_add_timer, ngx_array_t, ngx_conf_open_file, ngx_conf_t, ngx_cycle, ngx_cycle_t,
    ngx_del_timer, ngx_event_t, ngx_int_t, ngx_list_part_t, ngx_log_t, ngx_msec_t, ngx_open_file_t,
    ngx_parse_time, ngx_pcalloc, ngx_pool_cleanup_add, ngx_str_t, ngx_stream_conf_ctx_t,
    ngx_stream_core_main_conf_t, ngx_stream_core_module, ngx_stream_core_srv_conf_t,
    ngx_syslog_add_header, ngx_syslog_peer_t, ngx_syslog_process_conf, ngx_syslog_send,
    ngx_test_config, NGX_ERROR, NGX_OK,
};

use super::conf::{self as config, At};
use super::error_log::{self, Level};
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
        if super::metrics_zone::worker_zone().is_some() {
            count_lines(lines_in(lines), 0);
        }
        match self.target {
            Target::File(audit) => (*audit).write(lines, log),
            Target::Syslog(peer) => {
                for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    send_syslog(peer, line, self.format, log);
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

/// Counts audit lines into the metrics zone, if there is one: lines handed to a log, and
/// lines a log could not write.
fn count_lines(written: usize, lost: usize) {
    if let Some(zone) = super::metrics_zone::worker_zone() {
        zone.audit_lines(written as u64, lost as u64);
    }
}

fn lines_in(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

unsafe fn write_fd(file: *mut ngx_open_file_t, bytes: &[u8], log: *mut ngx_log_t) {
    let n = ngx::ffi::write((*file).fd, bytes.as_ptr().cast(), bytes.len());
    let name = String::from_utf8_lossy((*file).name.as_bytes());
    // The lines not (wholly) written are lost.
    let unwritten = usize::try_from(n).map_or(bytes, |n| bytes.get(n..).unwrap_or_default());
    if !unwritten.is_empty() {
        count_lines(0, lines_in(unwritten).max(1));
    }
    if n < 0 {
        let err = std::io::Error::last_os_error();
        error_log::write(
            log,
            Level::Alert,
            format_args!("cql: write() to audit log \"{name}\" failed: {err}"),
        );
    } else if n as usize != bytes.len() {
        error_log::write(
            log,
            Level::Alert,
            format_args!(
                "cql: write() to audit log \"{name}\" was incomplete: {n} of {}",
                bytes.len()
            ),
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

/// At worker exit: writes every audit buffer of the worker's configuration. NGINX's core
/// calls each open file's `flush` at exit too (ours, where [`add_buffer`] set it), before
/// this: whichever comes second finds the buffer empty.
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
        let level = if refuse { Level::Emerg } else { Level::Warn };
        error_log::write(
            (*cycle).log,
            level,
            format_args!("{message} in {}", audit.at),
        );
        if refuse {
            return NGX_ERROR as ngx_int_t;
        }
    }
    NGX_OK as ngx_int_t
}

/// One syslog datagram: NGINX's header, then the line, shortened by [`fit_syslog_line`] to
/// what [`SYSLOG_MAX_DATAGRAM`] leaves after the header.
unsafe fn send_syslog(
    peer: *mut ngx_syslog_peer_t,
    line: &[u8],
    format: Format,
    log: *mut ngx_log_t,
) {
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
    let line = fit_syslog_line(line, SYSLOG_MAX_DATAGRAM.saturating_sub(written), format);
    message.extend_from_slice(&line);
    let n = ngx_syslog_send(peer, message.as_mut_ptr(), message.len());
    if n < 0 {
        count_lines(0, 1);
        error_log::write(
            log,
            Level::Warn,
            format_args!("cql: send() of an audit line to syslog failed"),
        );
    }
}

/// The longest syslog datagram of an audit line, NGINX's header included: rsyslog's default
/// `maxMessageSize` (8k; syslog-ng's default is 64k), so a line arrives whole at a default
/// receiver, and well inside one UDP datagram (65,507 bytes over IPv4). NGINX's own
/// `error_log` lines to syslog are cut at 2048 bytes (`NGX_MAX_ERROR_STR`), too short for a
/// statement; its `access_log` lines are not capped at all.
pub const SYSLOG_MAX_DATAGRAM: usize = 8192;

/// `line` (without its `\n`) in at most `max` bytes. A longer JSON line stays one valid JSON
/// object with every field: its longest string values (the statement text, a batch's
/// statements, a reason) are cut, each at a character boundary and never inside an escape,
/// and end in `...[truncated N bytes]`, N counting the bytes of the line taken out of that
/// value. A line of `format=cassandra`, or a JSON line that cannot be fitted so (a batch of
/// thousands of statements), is cut at a UTF-8 boundary and ends in the same mark: such a
/// JSON line is no longer JSON.
pub fn fit_syslog_line(line: &[u8], max: usize, format: Format) -> Cow<'_, [u8]> {
    if line.len() <= max {
        return Cow::Borrowed(line);
    }
    if format == Format::Json {
        if let Some(fitted) = shorten_json_strings(line, max) {
            return Cow::Owned(fitted);
        }
    }
    Cow::Owned(cut_with_mark(line, max))
}

/// The mark that ends a shortened line or value.
fn truncation_mark(removed: usize) -> String {
    format!("...[truncated {removed} bytes]")
}

/// The first bytes of `line`, up to a UTF-8 boundary, then the mark, in `max` bytes (or the
/// mark alone, if `max` cannot hold it).
fn cut_with_mark(line: &[u8], max: usize) -> Vec<u8> {
    // The mark is never longer than with the whole line removed.
    let room = max.saturating_sub(truncation_mark(line.len()).len());
    let mut keep = room.min(line.len());
    while keep > 0 && line.get(keep).is_some_and(|b| b & 0xC0 == 0x80) {
        keep -= 1;
    }
    let (kept, removed) = line.split_at(keep);
    let mut out = Vec::with_capacity(max);
    out.extend_from_slice(kept);
    out.extend_from_slice(truncation_mark(removed.len()).as_bytes());
    out
}

/// A JSON line with its longest string values cut (see [`fit_syslog_line`]) to fit in `max`
/// bytes; `None` when cutting every value is not enough or the line is not what the audit
/// writer renders.
fn shorten_json_strings(line: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut values = json_string_values(line)?;
    values.sort_by_key(|v| core::cmp::Reverse(v.len()));
    let mut excess = line.len() - max;
    // (start, end, how many bytes of the value are kept), for the values that are cut.
    let mut cuts: Vec<(usize, usize, usize)> = Vec::new();
    for value in values {
        if excess == 0 {
            break;
        }
        let content = line.get(value.clone())?;
        let mark = truncation_mark(content.len()).len();
        let target = content.len().saturating_sub(excess + mark);
        let keep = escaped_boundary(content, target);
        let shortened = keep + truncation_mark(content.len() - keep).len();
        if shortened >= content.len() {
            continue;
        }
        excess = excess.saturating_sub(content.len() - shortened);
        cuts.push((value.start, value.end, keep));
    }
    if excess > 0 {
        return None;
    }
    cuts.sort_unstable();
    let mut out = Vec::with_capacity(max);
    let mut at = 0;
    for (start, end, keep) in cuts {
        out.extend_from_slice(line.get(at..start + keep)?);
        out.extend_from_slice(truncation_mark(end - start - keep).as_bytes());
        at = end;
    }
    out.extend_from_slice(line.get(at..)?);
    Some(out)
}

/// Where the contents of the string values (not the keys) of a JSON line are, between their
/// quotes; `None` for a string that does not end.
fn json_string_values(line: &[u8]) -> Option<Vec<core::ops::Range<usize>>> {
    let mut values = Vec::new();
    let mut i = 0;
    while let Some(&b) = line.get(i) {
        if b != b'"' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut j = start;
        loop {
            match line.get(j)? {
                b'\\' => j += 2,
                b'"' => break,
                _ => j += 1,
            }
        }
        if line.get(j + 1) != Some(&b':') {
            values.push(start..j);
        }
        i = j + 1;
    }
    Some(values)
}

/// The longest prefix of escaped JSON string `content` of at most `target` bytes that ends
/// between two characters and outside an escape (`\n`, `\"`, `\u00e9`).
fn escaped_boundary(content: &[u8], target: usize) -> usize {
    let mut at = 0;
    while let Some(&b) = content.get(at) {
        let next = at
            + match b {
                b'\\' if content.get(at + 1) == Some(&b'u') => 6,
                b'\\' => 2,
                0xF0..=0xFF => 4,
                0xE0..=0xEF => 3,
                0xC0..=0xDF => 2,
                _ => 1,
            };
        if next > target {
            break;
        }
        at = next;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JSON audit line with a statement of `statement` (already escaped).
    fn json_line(statement: &str) -> String {
        format!(
            "{{\"time\":\"2026-11-21T09:30:00.123Z\",\"event\":\"request\",\"session\":17,\
             \"principal\":\"alice\",\"roles\":[\"shop_reader\"],\"stream\":5,\
             \"statement\":\"{statement}\",\"decision\":\"allow\",\"outcome\":\"success\"}}"
        )
    }

    #[test]
    fn a_line_within_the_cap_is_sent_as_it_is() {
        let line = json_line("SELECT * FROM shop.orders");
        let fitted = fit_syslog_line(line.as_bytes(), line.len(), Format::Json);
        assert!(matches!(fitted, Cow::Borrowed(_)));
        assert_eq!(&*fitted, line.as_bytes());
    }

    #[test]
    fn a_long_json_line_keeps_every_field_and_marks_its_cut_statement() {
        let statement = format!(
            "INSERT INTO shop.orders (id) VALUES ('{}')",
            "x".repeat(20_000)
        );
        let line = json_line(&statement);
        let max = 8000;
        let fitted = fit_syslog_line(line.as_bytes(), max, Format::Json);
        assert!(fitted.len() <= max, "{} bytes", fitted.len());
        let value: serde_json::Value = serde_json::from_slice(&fitted).expect("still JSON");
        let text = value["statement"].as_str().expect("a statement");
        let removed = line.len() - fitted.len() + truncation_mark(0).len() + 4;
        assert!(
            text.starts_with("INSERT INTO shop.orders (id) VALUES ('xxx"),
            "{text}"
        );
        assert!(
            text.ends_with(&format!("...[truncated {removed} bytes]")),
            "{}",
            &text[text.len() - 40..]
        );
        assert_eq!(value["outcome"], "success");
        assert_eq!(value["roles"][0], "shop_reader");
        assert_eq!(value["principal"], "alice");
    }

    #[test]
    fn a_json_value_is_cut_between_characters_and_outside_escapes() {
        // Every cut position lands in a run of escapes and multi-byte characters.
        let unit = "\\\"é\\u0001€\\n𝄞";
        for pad in 0..24 {
            let statement = format!("{}{}", "a".repeat(pad), unit.repeat(500));
            let line = json_line(&statement);
            let max = line.len() - 3000;
            let fitted = fit_syslog_line(line.as_bytes(), max, Format::Json);
            assert!(fitted.len() <= max);
            let value: serde_json::Value = serde_json::from_slice(&fitted)
                .unwrap_or_else(|e| panic!("pad {pad}: not JSON ({e})"));
            assert!(value["statement"]
                .as_str()
                .is_some_and(|s| s.contains("...[truncated ")));
        }
    }

    #[test]
    fn the_longest_values_are_cut_first_and_short_ones_stay() {
        let line = format!(
            "{{\"statement\":\"{}\",\"reason\":\"{}\",\"batch\":[{{\"statement\":\"{}\"}}]}}",
            "s".repeat(5000),
            "r".repeat(40),
            "b".repeat(4000)
        );
        let fitted = fit_syslog_line(line.as_bytes(), 6000, Format::Json);
        assert!(fitted.len() <= 6000);
        let value: serde_json::Value = serde_json::from_slice(&fitted).expect("still JSON");
        assert_eq!(value["reason"], "r".repeat(40));
        assert!(value["statement"]
            .as_str()
            .is_some_and(|s| s.ends_with(" bytes]")));
        assert_eq!(value["batch"][0]["statement"], "b".repeat(4000));
    }

    #[test]
    fn a_json_line_that_cannot_keep_its_shape_is_cut_with_the_mark() {
        // A batch of many short statements: its structure alone is over the cap.
        let children = vec!["{\"type\":\"INSERT\",\"statement\":\"I\"}"; 2000].join(",");
        let line = format!("{{\"event\":\"request\",\"batch\":[{children}]}}");
        let fitted = fit_syslog_line(line.as_bytes(), 8000, Format::Json);
        assert!(fitted.len() <= 8000);
        let removed = line.len() - (fitted.len() - truncation_mark(line.len()).len());
        assert!(fitted.ends_with(truncation_mark(removed).as_bytes()));
        assert!(line.as_bytes().starts_with(&fitted[..100]));
    }

    #[test]
    fn a_cassandra_line_is_cut_at_a_character_boundary_with_the_mark() {
        let line = format!(
            "user:alice|host:10.0.0.1:9042|operation:'{}'",
            "é".repeat(5000)
        );
        for max in 7990..8000 {
            let fitted = fit_syslog_line(line.as_bytes(), max, Format::Cassandra);
            assert!(fitted.len() <= max);
            let text = std::str::from_utf8(&fitted).expect("cut between characters");
            let mark = text.rfind("...[truncated ").expect("the mark");
            let removed = line.len() - mark;
            assert!(text.ends_with(&truncation_mark(removed)), "{text}");
        }
    }
}
