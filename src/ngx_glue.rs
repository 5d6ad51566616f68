use ngx::ffi;
#[no_mangle]
pub unsafe extern "C" fn cql_probe(c: *mut ffi::ngx_conf_t) -> *mut ffi::ngx_pool_t {
    let p = ffi::ngx_create_pool(1024, (*c).log);
    p
}
