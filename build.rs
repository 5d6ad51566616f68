//! Build script: tells the crate about the NGINX it is built against.
//!
//! `nginx-sys` (a direct dependency for this reason: cargo passes a `links` crate's
//! metadata to direct dependents only) configures NGINX, or reads an already configured
//! tree from `NGINX_SOURCE_DIR`/`NGINX_BUILD_DIR`, and reports what it found:
//! - its features become `cfg(ngx_feature = "...")`, so the glue can compile code that
//!   only some NGINX builds support (for example stream SSL);
//! - its build folder becomes `CQL_NGINX_BUILD_DIR` for the integration tests, which run
//!   the NGINX binary built there;
//! - from its version, `cfg(ngx_stream_ports)` says the stream block keeps its listen
//!   addresses by port, with the servers of each (NGINX 1.25.5 and later).

use std::env;

fn main() {
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES_CHECK");
    println!(
        "cargo::rustc-check-cfg=cfg(ngx_feature, values({}))",
        env::var("DEP_NGINX_FEATURES_CHECK").unwrap_or_else(|_| "any()".to_string())
    );
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES");
    if let Ok(features) = env::var("DEP_NGINX_FEATURES") {
        for feature in features.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            println!("cargo::rustc-cfg=ngx_feature=\"{feature}\"");
        }
    }

    // NGINX 1.25.5 reshaped the stream block's listen addresses (virtual servers): the glue
    // reads a server's addresses one way or the other.
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    println!("cargo::rustc-check-cfg=cfg(ngx_stream_ports)");
    let version = env::var("DEP_NGINX_VERSION_NUMBER")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if version.is_none_or(|v| v >= 1_025_005) {
        println!("cargo::rustc-cfg=ngx_stream_ports");
    }

    println!("cargo::rerun-if-env-changed=DEP_NGINX_BUILD_DIR");
    if let Ok(build_dir) = env::var("DEP_NGINX_BUILD_DIR") {
        println!("cargo::rustc-env=CQL_NGINX_BUILD_DIR={build_dir}");
    }
}
