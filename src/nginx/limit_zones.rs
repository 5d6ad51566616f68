//! `cql_limit_req_zone` and `cql_limit_conn_zone`: the shared-memory zones of the per-key
//! limits, made and kept as NGINX's own `limit_req_zone` and `limit_conn_zone` are.
//!
//! `ngx_shared_memory_add` makes each zone; NGINX maps it before the workers fork, and a
//! reload that keeps its name and size hands the old zone over, buckets and counts and
//! all ([`init_zone`]). A reload may not change a zone's key (NGINX refuses that of
//! `limit_req_zone` too): the old workers would go on counting other keys into it. The
//! layouts are [`crate::limits`]'; servers reach a zone through its [`LimitZone`], bound to
//! the memory once the zone is set up. The directives are read in [`super::conf::zones`].

use core::ffi::c_void;
use core::ptr::addr_of;
use core::sync::atomic::AtomicU64;

use std::hash::{BuildHasher, RandomState};
use std::rc::Rc;

use super::error_log::{self, Level};
use ngx::ffi::{ngx_int_t, ngx_shm_zone_t, NGX_ERROR, NGX_OK};

use crate::limits::{CountZone, KeyTemplate, Rate, RateZone};
use crate::session::LimitZone;

/// The tag of the limit zones: NGINX refuses a name that another kind of zone has, and the
/// metrics zones (tagged with the module) are never mistaken for these.
static ZONE_TAG: u8 = 0;

/// The tag the limit zones are declared with.
pub fn tag() -> *mut c_void {
    addr_of!(ZONE_TAG) as *mut c_void
}

/// The zones a `stream` block declares. Boxed: each shared-memory zone points at its
/// declaration, which must not move as the list grows.
#[derive(Default)]
#[allow(clippy::vec_box)]
pub struct Zones {
    rates: Vec<Box<Declared<RateZone>>>,
    counts: Vec<Box<Declared<CountZone>>>,
}

/// One declared zone: what servers use, and what a reload compares.
pub struct Declared<Z> {
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
    pub fn any(&self, name: &str) -> bool {
        self.rates.iter().any(|z| z.limit.name == name)
            || self.counts.iter().any(|z| z.limit.name == name)
    }

    /// The zone `name` NGINX declared (`shm`), of the key `key` (as written) and, for a
    /// `cql_limit_req_zone`, the rate: set up by [`init_zone`] when NGINX maps it.
    pub unsafe fn attach<Z: Layout>(
        &mut self,
        shm: *mut ngx_shm_zone_t,
        name: String,
        template: KeyTemplate,
        key: &str,
        rate: Option<Rate>,
    ) {
        let list = Z::declared(self);
        list.push(Box::new(Declared {
            limit: Rc::new(LimitZone::new(name, template)),
            rate,
            key: key.to_string(),
            words: None,
        }));
        if let Some(declared) = list.last_mut() {
            // Boxed: the declaration does not move as the list grows.
            (*shm).init = Some(init_zone::<Z>);
            (*shm).data = (&mut **declared as *mut Declared<Z>).cast();
        }
    }
}

/// A zone kind's part: its directive, its layout's constructors.
#[allow(clippy::vec_box)]
pub trait Layout: Sized + 'static {
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
            error_log::write(
                log,
                Level::Emerg,
                format_args!(
                    "{} \"{}\" uses the \"{}\" key while previously it used the \"{}\" key: to \
                 change it, give the zone another name or size",
                    Z::DIRECTIVE,
                    name,
                    declared.key,
                    old.key
                ),
            );
            return NGX_ERROR as ngx_int_t;
        }
    }
    let (words, layout) = match old.and_then(|old| old.words) {
        Some(words) => (words, Z::attach(words)),
        None => {
            let Some(words) = super::shm::take_free_pages(zone, log, Z::DIRECTIVE, &name) else {
                return NGX_ERROR as ngx_int_t;
            };
            // Keyed hashing: no client can aim two keys at one bucket.
            let seed = RandomState::new().hash_one((name.as_str(), words.as_ptr() as usize));
            (words, Z::create(words, seed))
        }
    };
    let Some(layout) = layout else {
        error_log::write(
            log,
            Level::Emerg,
            format_args!(
                "{} \"{}\" of {} bytes is too small",
                Z::DIRECTIVE,
                name,
                (*zone).shm.size
            ),
        );
        return NGX_ERROR as ngx_int_t;
    };
    declared.limit.bind(layout);
    declared.words = Some(words);
    NGX_OK as ngx_int_t
}
