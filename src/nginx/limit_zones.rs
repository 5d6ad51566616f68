//! `cql_limit_req_zone` and `cql_limit_conn_zone`: the shared-memory zones of the per-key
//! limits, made and kept as NGINX's own `limit_req_zone` and `limit_conn_zone` are.
//!
//! `ngx_shared_memory_add` makes each zone; NGINX maps it before the workers fork, and a
//! reload that keeps its name and size hands the old zone over, buckets and counts and
//! all ([`init_zone`]). A reload may not change a zone's key (NGINX refuses that of
//! `limit_req_zone` too): the old workers would go on counting other keys into it. The
//! layouts are [`crate::limits`]'; servers reach a zone through its [`LimitZone`], bound to
//! the memory once the zone is set up.

use core::ffi::{c_char, c_void};
use core::ptr::addr_of;
use core::sync::atomic::AtomicU64;

use std::hash::{BuildHasher, RandomState};
use std::rc::Rc;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_int_t, ngx_shm_zone_t, NGX_ERROR, NGX_LOG_EMERG, NGX_OK,
};
use ngx::{ngx_conf_log_error, ngx_log_error};

use super::config::parse_size;
use super::metrics_zone::MainConf;
use crate::limits::{CountZone, KeyTemplate, Rate, RateZone};
use crate::session::LimitZone;

/// The tag of the limit zones: NGINX refuses a name that another kind of zone has, and the
/// metrics zones (tagged with the module) are never mistaken for these.
static ZONE_TAG: u8 = 0;

/// The zones a `stream` block declares. Boxed: each shared-memory zone points at its
/// declaration, which must not move as the list grows.
#[derive(Default)]
#[allow(clippy::vec_box)]
pub struct Zones {
    rates: Vec<Box<Declared<RateZone>>>,
    counts: Vec<Box<Declared<CountZone>>>,
}

/// One declared zone: what servers use, and what a reload compares.
struct Declared<Z> {
    limit: Rc<LimitZone<Z>>,
    /// `rate=` of a `cql_limit_req_zone`.
    rate: Option<Rate>,
    /// The key as written, compared at reload.
    key: String,
    /// The zone's words, once set up.
    words: Option<&'static [AtomicU64]>,
}

impl Zones {
    /// The rate zone `name` and its rate, for `cql_limit_req zone=name`.
    pub fn rate(&self, name: &str) -> Option<(Rc<LimitZone<RateZone>>, Rate)> {
        let zone = self.rates.iter().find(|z| z.limit.name == name)?;
        Some((zone.limit.clone(), zone.rate?))
    }

    /// The count zone `name`, for `cql_limit_conn` and `cql_limit_in_flight`.
    pub fn count(&self, name: &str) -> Option<Rc<LimitZone<CountZone>>> {
        let zone = self.counts.iter().find(|z| z.limit.name == name)?;
        Some(zone.limit.clone())
    }

    /// Whether any limit zone, of either directive, has this name.
    fn any(&self, name: &str) -> bool {
        self.rates.iter().any(|z| z.limit.name == name)
            || self.counts.iter().any(|z| z.limit.name == name)
    }
}

/// A zone kind's part: its directive, its layout's constructors.
#[allow(clippy::vec_box)]
trait Layout: Sized + 'static {
    const DIRECTIVE: &'static str;
    fn create(words: &'static [AtomicU64], seed: u64) -> Option<Self>;
    fn attach(words: &'static [AtomicU64]) -> Option<Self>;
    fn declared(zones: &mut Zones) -> &mut Vec<Box<Declared<Self>>>;
}

impl Layout for RateZone {
    const DIRECTIVE: &'static str = "cql_limit_req_zone";
    fn create(words: &'static [AtomicU64], seed: u64) -> Option<Self> {
        RateZone::create(words, seed)
    }
    fn attach(words: &'static [AtomicU64]) -> Option<Self> {
        RateZone::attach(words)
    }
    fn declared(zones: &mut Zones) -> &mut Vec<Box<Declared<Self>>> {
        &mut zones.rates
    }
}

impl Layout for CountZone {
    const DIRECTIVE: &'static str = "cql_limit_conn_zone";
    fn create(words: &'static [AtomicU64], seed: u64) -> Option<Self> {
        CountZone::create(words, seed)
    }
    fn attach(words: &'static [AtomicU64]) -> Option<Self> {
        CountZone::attach(words)
    }
    fn declared(zones: &mut Zones) -> &mut Vec<Box<Declared<Self>>> {
        &mut zones.counts
    }
}

/// `cql_limit_req_zone KEY zone=NAME:SIZE rate=RATE`
pub unsafe extern "C" fn set_req_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    declare::<RateZone>(cf, conf)
}

/// `cql_limit_conn_zone KEY zone=NAME:SIZE`
pub unsafe extern "C" fn set_conn_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    declare::<CountZone>(cf, conf)
}

unsafe fn declare<Z: Layout>(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
    let conf = &mut *(conf as *mut MainConf);
    let args = super::settings::args(cf);
    let directive = Z::DIRECTIVE;
    let fail = |message: String| {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"{}\": {}", directive, message);
        NGX_CONF_ERROR
    };
    let Some((key, params)) = args.get(1..).and_then(<[String]>::split_first) else {
        return NGX_CONF_ERROR;
    };
    let template = match KeyTemplate::parse(key) {
        Ok(template) => template,
        Err(reason) => return fail(reason),
    };
    let mut zone = None;
    let mut rate = None;
    for param in params {
        if let Some(value) = param.strip_prefix("zone=") {
            let Some((name, size)) = value.split_once(':').filter(|(n, _)| !n.is_empty()) else {
                return fail(format!(
                    "invalid zone \"{value}\": expected zone=name:size, e.g. zone=per_user:1m"
                ));
            };
            let min = super::shm::min_size();
            match parse_size(size) {
                Some(bytes) if bytes >= min => zone = Some((name.to_string(), bytes)),
                _ => {
                    return fail(format!(
                        "zone \"{name}\" has an invalid size \"{size}\": at least {}k",
                        min / 1024
                    ))
                }
            }
        } else if let (Some(value), "cql_limit_req_zone") = (param.strip_prefix("rate="), directive)
        {
            match Rate::parse(value) {
                Ok(r) => rate = Some(r),
                Err(reason) => return fail(reason),
            }
        } else {
            return fail(format!("invalid parameter \"{param}\""));
        }
    }
    let Some((name, size)) = zone else {
        return fail("no zone=name:size is given".to_string());
    };
    if directive == "cql_limit_req_zone" && rate.is_none() {
        return fail("no rate=Nr/s or rate=Nr/m is given".to_string());
    }
    if conf.limits.any(&name) {
        return fail(format!("zone \"{name}\" is already declared"));
    }
    let declared = Box::new(Declared {
        limit: Rc::new(LimitZone::new(name.clone(), template)),
        rate,
        key: key.clone(),
        words: None,
    });
    let shm = match super::shm::declare(cf, &name, size, addr_of!(ZONE_TAG) as *mut c_void) {
        Ok(Some(shm)) => shm,
        Ok(None) => return NGX_CONF_ERROR,
        Err(()) => return fail(format!("zone \"{name}\" is already declared")),
    };
    let list = Z::declared(&mut conf.limits);
    list.push(declared);
    let Some(declared) = list.last_mut() else {
        return NGX_CONF_ERROR;
    };
    (*shm).init = Some(init_zone::<Z>);
    (*shm).data = (&mut **declared as *mut Declared<Z>).cast();
    NGX_CONF_OK
}

/// Sets a zone up for a configuration: the old zone's words when NGINX reuses it (`data`
/// is the old configuration's declaration), else the free pages of a new one.
unsafe extern "C" fn init_zone<Z: Layout>(
    zone: *mut ngx_shm_zone_t,
    data: *mut c_void,
) -> ngx_int_t {
    let declared = &mut *((*zone).data as *mut Declared<Z>);
    let log = (*zone).shm.log;
    let name = declared.limit.name.clone();
    let old = (data as *const Declared<Z>).as_ref();
    if let Some(old) = old {
        if old.key != declared.key {
            ngx_log_error!(
                NGX_LOG_EMERG,
                log,
                "{} \"{}\" uses the \"{}\" key while previously it used the \"{}\" key: to \
                 change it, give the zone another name or size",
                Z::DIRECTIVE,
                name,
                declared.key,
                old.key
            );
            return NGX_ERROR as ngx_int_t;
        }
    }
    let (words, layout) = match old.and_then(|old| old.words) {
        Some(words) => (words, Z::attach(words)),
        None => {
            let Some(words) = super::shm::take_free_pages(zone) else {
                ngx_log_error!(
                    NGX_LOG_EMERG,
                    log,
                    "{} \"{}\": cannot allocate {} bytes of the zone",
                    Z::DIRECTIVE,
                    name,
                    super::shm::free_bytes(zone)
                );
                return NGX_ERROR as ngx_int_t;
            };
            // Keyed hashing: no client can aim two keys at one bucket.
            let seed = RandomState::new().hash_one((name.as_str(), words.as_ptr() as usize));
            (words, Z::create(words, seed))
        }
    };
    let Some(layout) = layout else {
        ngx_log_error!(
            NGX_LOG_EMERG,
            log,
            "{} \"{}\" of {} bytes is too small",
            Z::DIRECTIVE,
            name,
            (*zone).shm.size
        );
        return NGX_ERROR as ngx_int_t;
    };
    declared.limit.bind(layout);
    declared.words = Some(words);
    NGX_OK as ngx_int_t
}
