//! The module's configuration: what each directive sets, read and checked when NGINX loads
//! the configuration, so `nginx -t` reports every mistake with the file and line of the
//! directive.
//!
//! One file per group of directives, each with its handlers, the state it keeps and its
//! table entries:
//!
//! - [`limits`]: `cql_max_*` and `cql_auth_timeout`, the bounds of a session;
//! - [`auth`]: `cql_auth`, `cql_jwt_*`, `cql_token_cache`, and the logins toward Cassandra
//!   (`cql_upstream_auth`, `cql_upstream_credentials`);
//! - [`policy`]: `cql_policy`, `cql_allow_unbound_identities`, `cql_stream_reuse` and the
//!   decision and prepared-statement caches;
//! - [`topology`]: `cql_topology` and `cql_topology_node`;
//! - [`audit`]: `cql_audit_log` and the `cql_audit_*` filters;
//! - [`quotas`]: `cql_limit_req`, `cql_limit_conn`, `cql_limit_in_flight` and `cql_dry_run`;
//! - [`zones`]: the `stream` block's own configuration, its metrics zone and limit zones;
//! - [`build`]: a server's groups together, checked in combination and built into what its
//!   sessions use when the server is merged.
//!
//! This file: the per-server configuration and its merge, where a directive is ([`At`]), the
//! one place a refusal is logged ([`refuse`], [`log_refusal`]), and the directive table,
//! assembled from the groups'.

use core::ffi::{c_char, c_void};
use core::fmt;
use core::ptr::null_mut;
use std::path::{Path, PathBuf};

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_set_flag_slot, ngx_conf_t, ngx_flag_t, ngx_parse_size, ngx_pcalloc,
    ngx_pool_cleanup_add, ngx_pool_t, ngx_str_t, NGX_CONF_FLAG, NGX_CONF_UNSET, NGX_INVALID_FILE,
    NGX_LOG_EMERG, NGX_STREAM_MAIN_CONF, NGX_STREAM_SRV_CONF, NGX_STREAM_SRV_CONF_OFFSET,
};
use ngx::{ngx_conf_log_error, ngx_string};

use super::error_log::{self, Level};

/// The NGINX handlers of directives kept in [`Settings`], one each: `set_x => group: read`
/// reads the directive with `read` into the `group` of its block's settings (see
/// [`read_setting`]).
macro_rules! setting_handlers {
    ($($(#[$doc:meta])* $handler:ident => $group:ident: $read:path;)+) => {$(
        $(#[$doc])*
        unsafe extern "C" fn $handler(
            cf: *mut ngx::ffi::ngx_conf_t,
            _cmd: *mut ngx::ffi::ngx_command_t,
            conf: *mut core::ffi::c_void,
        ) -> *mut core::ffi::c_char {
            super::read_setting(cf, conf, |settings, args, reading| {
                $read(&mut settings.$group, args, reading)
            })
        }
    )+};
}

mod audit;
mod auth;
mod build;
mod limits;
mod policy;
mod quotas;
mod topology;
pub mod zones;

use build::Settings;
use limits::LimitsConf;

const UNSET_FLAG: ngx_flag_t = NGX_CONF_UNSET as ngx_flag_t;

/// Configuration of one `stream` `server` (or the `stream` block's defaults).
#[repr(C)]
pub struct SrvConf {
    /// `cql on | off`
    pub enabled: ngx_flag_t,
    /// The bounds of a session, read by NGINX's own slot handlers.
    pub limits: LimitsConf,
    /// Everything else, in Rust: owned by the configuration's pool (dropped with it).
    pub settings: *mut Settings,
}

impl SrvConf {
    pub fn enabled(&self) -> bool {
        self.enabled == 1
    }

    pub fn limits(&self) -> crate::session::Limits {
        self.limits.to_limits()
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

/// A directive's value and where it was read, for messages about combinations.
#[derive(Clone, Debug)]
pub(super) struct Located<T> {
    pub value: T,
    pub at: At,
}

/// Why a server's configuration is refused, and which directive to point at (`None`: the
/// line NGINX is reading).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub message: String,
    pub at: Option<At>,
}

impl Refusal {
    fn new(at: Option<&At>, message: String) -> Refusal {
        Refusal {
            message,
            at: at.cloned(),
        }
    }
}

/// What directives are read against.
pub(super) struct Reading<'a> {
    /// NGINX's configuration prefix: relative file names are read from it.
    pub prefix: &'a Path,
    /// Where the directive is.
    pub at: At,
    /// NGINX's size syntax (`16k`, `32m`).
    pub parse_size: fn(&str) -> Option<usize>,
}

impl Reading<'_> {
    /// `value`, read at this directive.
    fn locate<T>(&self, value: T) -> Located<T> {
        Located {
            value,
            at: self.at.clone(),
        }
    }

    /// A file a directive names: relative to NGINX's configuration prefix.
    fn path(&self, arg: &str) -> PathBuf {
        let p = Path::new(arg);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.prefix.join(p)
        }
    }
}

/// What a directive given twice is told.
fn duplicate<T>() -> Result<T, String> {
    Err("is duplicate".to_string())
}

/// A directive's words as owned strings.
fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// The value of a directive that takes one word of `choices`; another is refused naming
/// them (`expected off, jwt, mtls or any`).
fn one_of<T: Copy>(args: &[&str], choices: &[(&str, T)]) -> Result<T, String> {
    let [word] = args else {
        return Err("takes one value".to_string());
    };
    if let Some((_, value)) = choices.iter().find(|(name, _)| name == word) {
        return Ok(*value);
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    let expected = match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(format!("invalid value \"{word}\": expected {expected}"))
}

/// The value of a directive that takes `on` or `off`.
fn on_off(args: &[&str]) -> Result<bool, String> {
    match args {
        ["on"] => Ok(true),
        ["off"] => Ok(false),
        _ => Err("takes on or off".to_string()),
    }
}

/// The entries of a cache (`cql_token_cache`, `cql_decision_cache`, `cql_prepared_cache`).
fn parse_count(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (1..=10_000_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid number \"{value}\": expected 1 to 10000000 entries"
        )),
    }
}

/// Unset takes the `stream` block's value.
fn inherit<T: Clone>(value: &mut Option<T>, parent: &Option<T>) {
    if value.is_none() {
        value.clone_from(parent);
    }
}

/// `ngx_conf_merge_*_value`: unset takes the parent's value, or the default.
fn merge<T: Copy + PartialEq>(value: &mut T, parent: T, unset: T, default: T) {
    if *value == unset {
        *value = if parent == unset { default } else { parent };
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

/// The words of the directive NGINX is reading, its name first.
pub fn args(cf: &ngx_conf_t) -> &[ngx_str_t] {
    // SAFETY: NGINX keeps a directive's words in `cf->args`, an array of `ngx_str_t`, for as
    // long as its handler runs.
    unsafe {
        cf.args
            .as_ref()
            .map(|args| args.as_slice())
            .unwrap_or_default()
    }
}

/// The words of the directive NGINX is reading as text, its name first (a word that is not
/// UTF-8 reads as empty, which no directive accepts).
pub fn words(cf: &ngx_conf_t) -> Vec<&str> {
    args(cf).iter().map(|s| s.to_str().unwrap_or("")).collect()
}

/// Refuses the directive NGINX is reading: `message` is logged with its file and line, as
/// NGINX logs its own refusals.
pub unsafe fn refuse(cf: *mut ngx_conf_t, message: fmt::Arguments<'_>) -> *mut c_char {
    ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", message);
    NGX_CONF_ERROR
}

/// Logs an error of the configuration as `ngx_conf_log_error` does, but naming `at` (a
/// directive read earlier) rather than the line NGINX is reading now.
pub unsafe fn log_emerg_at(cf: *mut ngx_conf_t, at: &At, message: &str) {
    error_log::write(
        (*cf).log,
        Level::Emerg,
        format_args!("{} in {}", message, at),
    );
}

/// Logs a refusal at the directive it names, or at the line NGINX is reading.
unsafe fn log_refusal(cf: *mut ngx_conf_t, refusal: &Refusal) {
    match &refusal.at {
        Some(at) => log_emerg_at(cf, at, &refusal.message),
        None => {
            refuse(cf, format_args!("{}", refusal.message));
        }
    }
}

/// `value` owned by `pool`: dropped when the pool is destroyed.
unsafe fn owned_by_pool<T>(pool: *mut ngx_pool_t, value: T) -> Option<*mut T> {
    unsafe extern "C" fn drop_boxed<T>(data: *mut c_void) {
        drop(Box::from_raw(data as *mut T));
    }
    let cleanup = ngx_pool_cleanup_add(pool, 0);
    if cleanup.is_null() {
        return None;
    }
    let value = Box::into_raw(Box::new(value));
    (*cleanup).handler = Some(drop_boxed::<T>);
    (*cleanup).data = value.cast();
    Some(value)
}

/// The folder relative paths are read from: NGINX's configuration prefix.
unsafe fn conf_prefix(cf: *mut ngx_conf_t) -> PathBuf {
    match (*cf).cycle.as_ref() {
        Some(cycle) => {
            PathBuf::from(String::from_utf8_lossy(cycle.conf_prefix.as_bytes()).as_ref())
        }
        None => PathBuf::new(),
    }
}

/// The handler of every directive kept in [`Settings`]: the directive is noted for the
/// "needs cql on" check, `read` reads its words after its name into the block's settings,
/// and a mistake is refused as `"NAME" REASON` with the directive's file and line (an empty
/// reason: NGINX has said why already).
unsafe fn read_setting(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    read: impl FnOnce(&mut Settings, &[&str], &Reading) -> Result<(), String>,
) -> *mut c_char {
    let conf = &mut *(conf as *mut SrvConf);
    let Some(settings) = conf.settings.as_mut() else {
        return NGX_CONF_ERROR;
    };
    let words = words(&*cf);
    let Some((name, args)) = words.split_first() else {
        return NGX_CONF_ERROR;
    };
    let at = At::current(cf);
    settings.note_directive(name, at.clone());
    let prefix = conf_prefix(cf);
    let reading = Reading {
        prefix: &prefix,
        at,
        parse_size,
    };
    match read(settings, args, &reading) {
        Ok(()) => NGX_CONF_OK,
        Err(message) if message.is_empty() => NGX_CONF_ERROR,
        Err(message) => refuse(cf, format_args!("\"{name}\" {message}")),
    }
}

pub unsafe extern "C" fn create_srv_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    let conf = ngx_pcalloc((*cf).pool, core::mem::size_of::<SrvConf>()) as *mut SrvConf;
    if conf.is_null() {
        return null_mut();
    }
    let Some(settings) = owned_by_pool((*cf).pool, Settings::default()) else {
        return null_mut();
    };
    // Created when NGINX reads `server {` (or `stream {`): where the block begins.
    (*settings).block_at = Some(At::current(cf));
    conf.write(SrvConf {
        enabled: UNSET_FLAG,
        limits: LimitsConf::UNSET,
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
    conf.limits.merge(&prev.limits);
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

/// Context of a directive: `stream` and `server` blocks.
const STREAM_AND_SERVER: u32 = NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF;

/// A NGINX directive handler.
type Handler =
    unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

/// A directive of the blocks and arguments `type_` names, read by `set` into the block's
/// configuration (`conf`: NGINX's offset of the main or server configuration) at `offset`.
const fn command(
    name: ngx_str_t,
    type_: u32,
    set: Handler,
    conf: usize,
    offset: usize,
) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: type_ as _,
        set: Some(set),
        conf,
        offset,
        post: null_mut(),
    }
}

/// A directive of `stream` and `server` blocks kept in [`Settings`], read by `set`.
const fn setting(name: ngx_str_t, args: u32, set: Handler) -> ngx_command_t {
    command(
        name,
        STREAM_AND_SERVER | args,
        set,
        NGX_STREAM_SRV_CONF_OFFSET,
        0,
    )
}

/// `cql on | off`: NGINX's own flag slot.
const CQL: [ngx_command_t; 1] = [ngx_command_t {
    name: ngx_string!("cql"),
    type_: (STREAM_AND_SERVER | NGX_CONF_FLAG) as _,
    set: Some(ngx_conf_set_flag_slot),
    conf: NGX_STREAM_SRV_CONF_OFFSET,
    offset: core::mem::offset_of!(SrvConf, enabled),
    post: null_mut(),
}];

/// Every directive of the stream module, the groups' one after another, then the null
/// command that ends the table.
const GROUPS: [&[ngx_command_t]; 8] = [
    &CQL,
    &limits::COMMANDS,
    &auth::COMMANDS,
    &policy::COMMANDS,
    &topology::COMMANDS,
    &audit::COMMANDS,
    &quotas::COMMANDS,
    &zones::COMMANDS,
];

/// How many directives the groups have.
const fn count(groups: &[&[ngx_command_t]]) -> usize {
    let mut n = 0;
    let mut groups = groups;
    while let [group, rest @ ..] = groups {
        n += group.len();
        groups = rest;
    }
    n
}

/// The groups' directives in one array of `N`, one more than they are: the last stays the
/// null command that ends the table.
// `mem::take` is not `const`: `mem::replace` with an empty slice is.
#[allow(clippy::mem_replace_with_default)]
const fn table<const N: usize>(groups: &[&[ngx_command_t]]) -> [ngx_command_t; N] {
    let mut table = [ngx_command_t::empty(); N];
    let mut free: &mut [ngx_command_t] = &mut table;
    let mut groups = groups;
    while let [group, rest @ ..] = groups {
        let mut commands = *group;
        while let [command, more @ ..] = commands {
            if let [slot, after @ ..] = core::mem::replace(&mut free, &mut []) {
                *slot = *command;
                free = after;
            }
            commands = more;
        }
        groups = rest;
    }
    table
}

/// The directive table of the stream module (see [`GROUPS`]).
pub static mut COMMANDS: [ngx_command_t; count(&GROUPS) + 1] = table(&GROUPS);
