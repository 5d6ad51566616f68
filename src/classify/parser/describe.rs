//! Server-side DESCRIBE / DESC (Cassandra 4.0+): a schema read of what it shows.
//!
//! Cassandra lets every role run these; the classifier asks DESCRIBE on the data (or
//! function) resource shown so that a policy decides: `<all keyspaces>` for the cluster-wide
//! forms, `<keyspace ks>`, `<table ks.t>`, `<all functions in ks>`, `<function ks.f>`.

use super::super::lexer::Tok;
use super::super::permission::Permission;
use super::super::resource::Resource;
use super::super::statement::{Flags, Kind, Statement};
use super::{table_resource, PResult, Parser};

pub fn describe<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    if !p.eat_kw("describe")? {
        p.expect_kw("desc")?;
    }
    let mut st = Statement::new(Kind::Describe);
    let current = p.current;
    if p.eat_kw("full")? {
        p.expect_kw("schema")?;
        st.flags |= Flags::INTERNALS;
        st.need(Permission::Describe, Resource::AllKeyspaces);
    } else if p.eat_kw("schema")? || p.eat_kw("cluster")? || p.eat_kw("keyspaces")? {
        st.need(Permission::Describe, Resource::AllKeyspaces);
    } else if p.eat_kw("only")? || p.at_kw("keyspace")? {
        p.expect_kw("keyspace")?;
        let ks = if p.at_name()? {
            p.ident()?
        } else {
            p.keyspace_or_current(None)?
        };
        st.need(Permission::Describe, Resource::Keyspace(ks.clone()));
        st.keyspace = Some(ks);
    } else if p.eat_kw("tables")? || p.eat_kw("types")? {
        // The current keyspace's, or all keyspaces' when there is none.
        match current {
            Some(ks) => {
                st.need(Permission::Describe, Resource::Keyspace(ks.into()));
                st.keyspace = Some(ks.into());
            }
            None => st.need(Permission::Describe, Resource::AllKeyspaces),
        }
    } else if p.eat_kw("functions")? || p.eat_kw("aggregates")? {
        match current {
            Some(ks) => {
                st.need(Permission::Describe, Resource::KeyspaceFunctions(ks.into()));
                st.keyspace = Some(ks.into());
            }
            None => st.need(Permission::Describe, Resource::AllFunctions),
        }
    } else if p.eat_kw("table")? || p.eat_kw("columnfamily")? || p.eat_kw("materialized")? {
        // (after MATERIALIZED comes VIEW)
        p.eat_kw("view")?;
        let (ks, t) = p.table_name()?;
        st.need(Permission::Describe, table_resource(&ks, &t));
        st.keyspace = Some(ks);
        st.table = Some(t);
    } else if p.eat_kw("index")? || p.eat_kw("type")? {
        // An index name does not give its table, and types are checked on the keyspace.
        let (ks, _) = p.table_name()?;
        st.need(Permission::Describe, Resource::Keyspace(ks.clone()));
        st.keyspace = Some(ks);
    } else if p.eat_kw("function")? || p.eat_kw("aggregate")? {
        let (ks, name) = p.qualified()?;
        let keyspace = p.keyspace_or_current(ks)?;
        st.need(
            Permission::Describe,
            Resource::Function {
                keyspace: keyspace.clone(),
                name,
                args: None,
            },
        );
        st.keyspace = Some(keyspace);
    } else if p.at_name()? {
        // `DESCRIBE x`: a keyspace x or an element x of the current keyspace;
        // `DESCRIBE ks.x`: an element of ks (table, view, index, type, function).
        let (ks, name) = p.qualified()?;
        match ks {
            Some(ks) => {
                st.need(Permission::Describe, table_resource(&ks, &name));
                st.keyspace = Some(ks);
                st.table = Some(name);
            }
            None => {
                st.need(Permission::Describe, Resource::Keyspace(name.clone()));
                if let Some(cur) = current {
                    let cur = cur.into();
                    st.need(Permission::Describe, table_resource(&cur, &name));
                }
                st.keyspace = Some(name);
            }
        }
    } else {
        return Err(p.unexpected("what to DESCRIBE"));
    }
    if p.eat_kw("with")? {
        p.expect_kw("internals")?;
        st.flags |= Flags::INTERNALS;
    }
    if matches!(p.peek()?, Tok::Sym("(")) {
        return Err(p.unexpected("the end of the statement"));
    }
    Ok(st)
}
