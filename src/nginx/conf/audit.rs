//! `cql_audit_log` and the `cql_audit_*` filters: where a server's audit lines go and which
//! statements get one. The file or syslog target itself is [`crate::nginx::audit_log`]'s.

use core::ffi::{c_char, c_void};
use std::rc::Rc;

use ngx::ffi::{ngx_command_t, ngx_conf_t, NGX_CONF_1MORE, NGX_CONF_TAKE1};
use ngx::ngx_string;

use super::super::audit_log::{self, Sink};
use super::{duplicate, inherit, on_off, read_setting, setting, strings, Reading};
use crate::audit::{Filter, Settings as AuditSettings};
use crate::classify::Category;

/// The audit directives of a block; `None` is unset.
#[derive(Default)]
pub(super) struct AuditConf {
    /// `cql_audit_log`: `Some(None)` is `off`.
    pub log: Option<Option<Rc<Sink>>>,
    pub categories: Option<Vec<Category>>,
    pub exclude_categories: Option<Vec<Category>>,
    pub keyspaces: Option<Vec<String>>,
    pub exclude_keyspaces: Option<Vec<String>>,
    pub denied_only: Option<bool>,
    pub redact_literals: Option<bool>,
}

pub(super) const COMMANDS: [ngx_command_t; 7] = [
    setting(ngx_string!("cql_audit_log"), NGX_CONF_1MORE, set_audit_log),
    setting(
        ngx_string!("cql_audit_categories"),
        NGX_CONF_1MORE,
        set_audit_categories,
    ),
    setting(
        ngx_string!("cql_audit_exclude_categories"),
        NGX_CONF_1MORE,
        set_audit_exclude_categories,
    ),
    setting(
        ngx_string!("cql_audit_keyspaces"),
        NGX_CONF_1MORE,
        set_audit_keyspaces,
    ),
    setting(
        ngx_string!("cql_audit_exclude_keyspaces"),
        NGX_CONF_1MORE,
        set_audit_exclude_keyspaces,
    ),
    setting(
        ngx_string!("cql_audit_denied_only"),
        NGX_CONF_TAKE1,
        set_audit_denied_only,
    ),
    setting(
        ngx_string!("cql_audit_redact_literals"),
        NGX_CONF_TAKE1,
        set_audit_redact_literals,
    ),
];

/// `cql_audit_log off | PATH | syslog:... [format=json|cassandra] [buffer=SIZE]
/// [flush=TIME]`: the file is opened (or the syslog target read) by NGINX as the directive
/// is, see [`audit_log::parse`].
unsafe extern "C" fn set_audit_log(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    read_setting(cf, conf, |settings, args, reading| {
        if settings.audit.log.is_some() {
            return Err("is duplicate".to_string());
        }
        let sink = audit_log::parse(cf, args, reading.at.clone())?;
        settings.audit.log = Some(sink.map(Rc::new));
        Ok(())
    })
}

setting_handlers! {
    set_audit_categories => audit: categories;
    set_audit_exclude_categories => audit: exclude_categories;
    set_audit_keyspaces => audit: keyspaces;
    set_audit_exclude_keyspaces => audit: exclude_keyspaces;
    set_audit_denied_only => audit: denied_only;
    set_audit_redact_literals => audit: redact_literals;
}

/// `cql_audit_categories category ...`
fn categories(conf: &mut AuditConf, args: &[&str], _: &Reading) -> Result<(), String> {
    category_list(&mut conf.categories, args)
}

/// `cql_audit_exclude_categories category ...`
fn exclude_categories(conf: &mut AuditConf, args: &[&str], _: &Reading) -> Result<(), String> {
    category_list(&mut conf.exclude_categories, args)
}

/// `cql_audit_keyspaces keyspace ... | none`
fn keyspaces(conf: &mut AuditConf, args: &[&str], _: &Reading) -> Result<(), String> {
    keyspace_list(&mut conf.keyspaces, args)
}

/// `cql_audit_exclude_keyspaces keyspace ... | none`
fn exclude_keyspaces(conf: &mut AuditConf, args: &[&str], _: &Reading) -> Result<(), String> {
    keyspace_list(&mut conf.exclude_keyspaces, args)
}

/// `cql_audit_denied_only on | off`
fn denied_only(conf: &mut AuditConf, args: &[&str], _: &Reading) -> Result<(), String> {
    flag(&mut conf.denied_only, args)
}

/// `cql_audit_redact_literals on | off`
fn redact_literals(conf: &mut AuditConf, args: &[&str], _: &Reading) -> Result<(), String> {
    flag(&mut conf.redact_literals, args)
}

fn category_list(slot: &mut Option<Vec<Category>>, args: &[&str]) -> Result<(), String> {
    if slot.is_some() {
        return duplicate();
    }
    let categories = args
        .iter()
        .map(|a| category(a))
        .collect::<Result<Vec<_>, _>>()?;
    *slot = Some(categories);
    Ok(())
}

fn keyspace_list(slot: &mut Option<Vec<String>>, args: &[&str]) -> Result<(), String> {
    if slot.is_some() {
        return duplicate();
    }
    *slot = Some(match args {
        ["none"] => Vec::new(),
        _ => strings(args),
    });
    Ok(())
}

fn flag(slot: &mut Option<bool>, args: &[&str]) -> Result<(), String> {
    if slot.is_some() {
        return duplicate();
    }
    *slot = Some(on_off(args)?);
    Ok(())
}

/// An audit category by Cassandra's name (`QUERY`, `DML`, ...), in any case.
fn category(name: &str) -> Result<Category, String> {
    const ALL: [Category; 8] = [
        Category::Query,
        Category::Dml,
        Category::Ddl,
        Category::Dcl,
        Category::Auth,
        Category::Prepare,
        Category::Error,
        Category::Other,
    ];
    ALL.into_iter()
        .find(|c| c.as_str().eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            format!(
                "invalid category \"{name}\": expected QUERY, DML, DDL, DCL, AUTH, PREPARE, ERROR or OTHER"
            )
        })
}

impl AuditConf {
    /// Unset directives take the `stream` block's values.
    pub(super) fn inherit(&mut self, parent: &AuditConf) {
        inherit(&mut self.log, &parent.log);
        inherit(&mut self.categories, &parent.categories);
        inherit(&mut self.exclude_categories, &parent.exclude_categories);
        inherit(&mut self.keyspaces, &parent.keyspaces);
        inherit(&mut self.exclude_keyspaces, &parent.exclude_keyspaces);
        inherit(&mut self.denied_only, &parent.denied_only);
        inherit(&mut self.redact_literals, &parent.redact_literals);
    }

    /// Where the server's audit lines go, if it has an audit log.
    pub(super) fn sink(&self) -> Option<Rc<Sink>> {
        self.log.clone().flatten()
    }

    /// What sessions audit, and how, for lines that go to `sink`.
    pub(super) fn settings(&self, sink: &Sink) -> AuditSettings {
        let defaults = Filter::default();
        AuditSettings {
            format: sink.format,
            filter: Filter {
                categories: self.categories.clone(),
                exclude_categories: self.exclude_categories.clone().unwrap_or_default(),
                keyspaces: self.keyspaces.clone(),
                exclude_keyspaces: self
                    .exclude_keyspaces
                    .clone()
                    .unwrap_or(defaults.exclude_keyspaces),
                denied_only: self.denied_only.unwrap_or(false),
            },
            redact_literals: self.redact_literals.unwrap_or(false),
        }
    }
}
