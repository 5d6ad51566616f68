//! The `$cql_*` stream variables, for `log_format` and `access_log`.

use core::fmt::Write;

use ngx::ffi::{
    ngx_conf_t, ngx_int_t, ngx_pnalloc, ngx_str_t, ngx_stream_add_variable, ngx_stream_session_t,
    ngx_stream_variable_value_t, NGX_ERROR, NGX_OK, NGX_STREAM_VAR_NOCACHEABLE,
};

use super::filter;
use crate::session::Session;

/// A variable: its name and how its value is written from the session.
struct Variable {
    name: &'static str,
    write: fn(&Session, &mut ValueBuf) -> core::fmt::Result,
}

const VARIABLES: &[Variable] = &[
    Variable {
        name: "cql_protocol_version",
        write: |s, out| match s.protocol_version() {
            Some(v) => write!(out, "{v}"),
            None => Ok(()),
        },
    },
    Variable {
        name: "cql_principal",
        write: |s, out| match s.identity() {
            Some(identity) => out.write_str(&identity.principal),
            None => Ok(()),
        },
    },
    Variable {
        name: "cql_roles",
        write: |s, out| {
            for (i, role) in s.roles().enumerate() {
                if i > 0 {
                    out.write_str(",")?;
                }
                out.write_str(role)?;
            }
            Ok(())
        },
    },
    Variable {
        name: "cql_auth_method",
        write: |s, out| match s.auth_method() {
            Some(method) => out.write_str(method),
            None => Ok(()),
        },
    },
    Variable {
        name: "cql_keyspace",
        write: |s, out| match s.keyspace() {
            Some(keyspace) => out.write_str(keyspace),
            None => Ok(()),
        },
    },
    Variable {
        name: "cql_requests",
        write: |s, out| write!(out, "{}", s.requests()),
    },
    Variable {
        name: "cql_denied",
        write: |s, out| write!(out, "{}", s.denied()),
    },
    Variable {
        name: "cql_client_frames",
        write: |s, out| write!(out, "{}", s.counters().client.frames),
    },
    Variable {
        name: "cql_server_frames",
        write: |s, out| write!(out, "{}", s.counters().server.frames),
    },
    Variable {
        name: "cql_client_segments",
        write: |s, out| write!(out, "{}", s.counters().client.segments),
    },
    Variable {
        name: "cql_server_segments",
        write: |s, out| write!(out, "{}", s.counters().server.segments),
    },
];

/// Registers every variable; called from the module's preconfiguration.
pub(super) unsafe fn register(cf: *mut ngx_conf_t) -> ngx_int_t {
    for (index, var) in VARIABLES.iter().enumerate() {
        let mut name = ngx_str_t {
            len: var.name.len(),
            data: var.name.as_ptr() as *mut u8,
        };
        let v = ngx_stream_add_variable(cf, &mut name, NGX_STREAM_VAR_NOCACHEABLE as _);
        if v.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        (*v).get_handler = Some(get);
        (*v).data = index;
    }
    NGX_OK as ngx_int_t
}

/// The buffer a value is formatted into before it is copied to the pool.
type ValueBuf = String;

unsafe extern "C" fn get(
    s: *mut ngx_stream_session_t,
    v: *mut ngx_stream_variable_value_t,
    data: usize,
) -> ngx_int_t {
    let v = &mut *v;
    let (Some(var), Some(ctx)) = (VARIABLES.get(data), filter::ctx(s)) else {
        v.set_not_found(1);
        return NGX_OK as ngx_int_t;
    };
    let mut buf = ValueBuf::new();
    if (var.write)(&ctx.session, &mut buf).is_err() || buf.is_empty() {
        v.set_not_found(1);
        return NGX_OK as ngx_int_t;
    }
    let p = ngx_pnalloc((*(*s).connection).pool, buf.len()) as *mut u8;
    if p.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    core::ptr::copy_nonoverlapping(buf.as_ptr(), p, buf.len());
    v.data = p;
    v.set_len(buf.len() as _);
    v.set_valid(1);
    v.set_no_cacheable(0);
    v.set_not_found(0);
    NGX_OK as ngx_int_t
}
