//! NGINX's shared-memory zones, as the module's zones use them: declared by name and size
//! while the configuration is read, their free pages taken as one region of atomic words
//! when NGINX maps them (before the workers fork).

use core::ffi::c_void;
use core::sync::atomic::AtomicU64;

use ngx::ffi::{ngx_conf_t, ngx_shm_zone_t, ngx_slab_alloc, ngx_slab_pool_t, ngx_str_t};

use super::error_log::{self, Level};

/// The smallest zone: NGINX's slab allocator needs eight pages (`limit_req_zone` asks as
/// much).
pub fn min_size() -> usize {
    // SAFETY: NGINX sets the page size once, at start, before any configuration is read.
    8 * unsafe { ngx::ffi::ngx_pagesize }
}

/// Declares the zone `name` of `size` bytes for `tag`. `Ok(None)`: NGINX refused (it said
/// why); `Err(())`: a zone of that name is already declared for this tag.
pub unsafe fn declare(
    cf: *mut ngx_conf_t,
    name: &str,
    size: usize,
    tag: *mut c_void,
) -> Result<Option<*mut ngx_shm_zone_t>, ()> {
    // NGINX keeps the name: a copy in the configuration's pool.
    let Some(mut shm_name) = ngx_str_t::from_bytes((*cf).pool, name.as_bytes()) else {
        return Ok(None);
    };
    let zone = ngx::ffi::ngx_shared_memory_add(cf, &mut shm_name, size, tag);
    if zone.is_null() {
        return Ok(None);
    }
    if !(*zone).data.is_null() {
        return Err(());
    }
    Ok(Some(zone))
}

/// Every free page of a zone NGINX just mapped, as one region of words; `None` (said in
/// the error log as `DIRECTIVE "NAME": cannot allocate N bytes of the zone`) if the slab
/// allocator had none to give.
pub unsafe fn take_free_pages(
    zone: *mut ngx_shm_zone_t,
    log: *mut ngx::ffi::ngx_log_t,
    directive: &str,
    name: &str,
) -> Option<&'static [AtomicU64]> {
    let pool = (*zone).shm.addr as *mut ngx_slab_pool_t;
    let bytes = free_bytes(zone);
    let region = ngx_slab_alloc(pool, bytes) as *mut AtomicU64;
    if region.is_null() {
        error_log::write(
            log,
            Level::Emerg,
            format_args!("{directive} \"{name}\": cannot allocate {bytes} bytes of the zone"),
        );
        return None;
    }
    // SAFETY: the slab allocator gave `bytes` bytes, page aligned, shared by every process
    // of this NGINX for as long as the zone lives; only atomics touch them.
    Some(core::slice::from_raw_parts(region, bytes / 8))
}

/// How many bytes [`take_free_pages`] finds.
unsafe fn free_bytes(zone: *mut ngx_shm_zone_t) -> usize {
    let pool = (*zone).shm.addr as *mut ngx_slab_pool_t;
    (*pool).pfree << ngx::ffi::ngx_pagesize_shift
}
