//! CREATE, ALTER and DROP of keyspaces, tables, indexes, types, functions, aggregates,
//! materialized views and triggers (roles and users are in `dcl`).

use std::borrow::Cow;

use super::super::lexer::Tok;
use super::super::permission::Permission;
use super::super::resource::Resource;
use super::super::statement::{Flags, Kind, Statement};
use super::types::{arg_types, cql_type};
use super::{dcl, table_resource, Fail, PResult, Parser};

/// `CREATE ...`
pub fn create<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    p.expect_kw("create")?;
    let or_replace = if p.eat_kw("or")? {
        p.expect_kw("replace")?;
        true
    } else {
        false
    };
    if p.eat_kw("function")? {
        return create_function(p, or_replace);
    }
    if p.eat_kw("aggregate")? {
        return create_aggregate(p, or_replace);
    }
    if or_replace {
        return Err(p.unexpected("FUNCTION or AGGREGATE after CREATE OR REPLACE"));
    }
    if p.eat_kw("keyspace")? {
        let mut st = Statement::new(Kind::CreateKeyspace);
        p.if_not_exists(&mut st)?;
        let ks = p.ident()?;
        p.expect_kw("with")?;
        p.skip_rest(&mut st, false)?;
        st.need(Permission::Create, Resource::AllKeyspaces);
        st.keyspace = Some(ks);
        return Ok(st);
    }
    if p.eat_kw("table")? || p.eat_kw("columnfamily")? {
        let mut st = Statement::new(Kind::CreateTable);
        p.if_not_exists(&mut st)?;
        let (ks, t) = p.table_name()?;
        st.need(Permission::Create, Resource::Keyspace(ks.clone()));
        if p.eat_kw("like")? {
            // CREATE TABLE ... LIKE copies another table's schema: it reads it.
            let (sks, stable) = p.table_name()?;
            st.need(Permission::Select, table_resource(&sks, &stable));
        } else if !matches!(p.peek()?, Tok::Sym("(")) {
            return Err(p.unexpected("'(' and the column definitions"));
        }
        p.skip_rest(&mut st, true)?;
        st.keyspace = Some(ks);
        st.table = Some(t);
        return Ok(st);
    }
    if p.eat_kw("custom")? {
        if !p.at_kw("index")? {
            return Err(p.unexpected("INDEX after CREATE CUSTOM"));
        }
        return create_index(p);
    }
    if p.at_kw("index")? {
        return create_index(p);
    }
    if p.eat_kw("type")? {
        let mut st = Statement::new(Kind::CreateType);
        p.if_not_exists(&mut st)?;
        let (ks, _) = p.table_name()?;
        if !matches!(p.peek()?, Tok::Sym("(")) {
            return Err(p.unexpected("'(' and the field definitions"));
        }
        p.skip_rest(&mut st, false)?;
        return Ok(st.with_keyspace_need(Permission::Create, ks));
    }
    if p.eat_kw("materialized")? {
        p.expect_kw("view")?;
        return create_view(p);
    }
    if p.eat_kw("trigger")? {
        let mut st = Statement::new(Kind::CreateTrigger);
        p.if_not_exists(&mut st)?;
        p.ident()?;
        p.expect_kw("on")?;
        let (ks, t) = p.table_name()?;
        p.expect_kw("using")?;
        if !matches!(p.peek()?, Tok::Str(_) | Tok::Dollar(_)) {
            return Err(p.unexpected("the trigger class as a string after USING"));
        }
        p.bump()?;
        return Ok(trigger(st, ks, t));
    }
    if p.at_kw("role")? || p.at_kw("user")? {
        return dcl::create_role(p);
    }
    Err(p.unexpected("what to CREATE (KEYSPACE, TABLE, INDEX, TYPE, FUNCTION, ...)"))
}

/// Triggers: Cassandra allows them to superusers only; the need is ALTER on the table.
fn trigger<'a>(mut st: Statement<'a>, ks: Cow<'a, str>, t: Cow<'a, str>) -> Statement<'a> {
    st.flags |= Flags::SUPERUSER_ONLY;
    st.with_table_need(Permission::Alter, ks, t)
}

/// `CREATE [CUSTOM] INDEX [IF NOT EXISTS] [name] ON [ks.]t (target) [USING 'class'
/// [WITH OPTIONS = {...}]]`: ALTER on the base table.
fn create_index<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    p.expect_kw("index")?;
    let mut st = Statement::new(Kind::CreateIndex);
    p.if_not_exists(&mut st)?;
    if !p.at_kw("on")? {
        p.qualified()?;
    }
    p.expect_kw("on")?;
    let (ks, t) = p.table_name()?;
    if !matches!(p.peek()?, Tok::Sym("(")) {
        return Err(p.unexpected("'(' and the indexed column"));
    }
    p.skip_rest(&mut st, false)?;
    Ok(st.with_table_need(Permission::Alter, ks, t))
}

/// `CREATE MATERIALIZED VIEW [IF NOT EXISTS] [ks.]v AS SELECT ... FROM [ks.]base WHERE ...
/// PRIMARY KEY (...) [WITH ...]`: ALTER on the base table, which must be in the view's
/// keyspace.
fn create_view<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    let mut st = Statement::new(Kind::CreateMaterializedView);
    p.if_not_exists(&mut st)?;
    let (ks, v) = p.table_name()?;
    p.expect_kw("as")?;
    p.expect_kw("select")?;
    if p.scan(&mut st, &["from"], false)? == 0 {
        return Err(p.unexpected("a selection"));
    }
    p.expect_kw("from")?;
    let (bks, base) = p.qualified()?;
    let bks = bks.unwrap_or_else(|| ks.clone());
    if bks != ks {
        return Err(Fail::invalid(format!(
            "a materialized view must be in the keyspace of its base table ({bks}), not {ks}"
        )));
    }
    loop {
        p.scan(&mut st, &["allow"], false)?;
        if p.eat_kw("allow")? {
            p.expect_kw("filtering")?;
            st.flags |= Flags::ALLOW_FILTERING;
        } else {
            break;
        }
    }
    st.need(Permission::Alter, table_resource(&ks, &base));
    st.keyspace = Some(ks);
    st.table = Some(v);
    Ok(st)
}

fn function<'a>(ks: &Cow<'a, str>, name: &Cow<'a, str>, args: Option<String>) -> Resource<'a> {
    Resource::Function {
        keyspace: ks.clone(),
        name: name.clone(),
        args: args.map(Cow::Owned),
    }
}

// `&Cow` on purpose: cloning a borrowed Cow keeps it borrowed (no allocation).
#[allow(clippy::ptr_arg)]
/// CREATE on the keyspace's functions; with OR REPLACE also ALTER on the function, since
/// Cassandra asks ALTER when it exists and CREATE when not, and the proxy cannot tell.
fn create_function_needs<'a>(
    st: &mut Statement<'a>,
    or_replace: bool,
    ks: &Cow<'a, str>,
    name: &Cow<'a, str>,
    args: &str,
) {
    st.need(Permission::Create, Resource::KeyspaceFunctions(ks.clone()));
    if or_replace {
        st.need(
            Permission::Alter,
            function(ks, name, Some(args.to_string())),
        );
    }
}

/// `CREATE [OR REPLACE] FUNCTION [IF NOT EXISTS] [ks.]f (args) (CALLED | RETURNS NULL) ON
/// NULL INPUT RETURNS type LANGUAGE l AS 'body'`
fn create_function<'a>(p: &mut Parser<'a>, or_replace: bool) -> PResult<Statement<'a>> {
    let mut st = Statement::new(Kind::CreateFunction);
    p.if_not_exists(&mut st)?;
    let (ks, name) = p.qualified()?;
    let ks = p.keyspace_or_current(ks)?;
    let args = arg_types(p, true)?;
    if !(p.at_kw("called")? || p.at_kw("returns")?) {
        return Err(p.unexpected("CALLED ON NULL INPUT or RETURNS NULL ON NULL INPUT"));
    }
    p.skip_rest(&mut st, false)?;
    create_function_needs(&mut st, or_replace, &ks, &name, &args);
    st.keyspace = Some(ks);
    Ok(st)
}

/// `CREATE [OR REPLACE] AGGREGATE [IF NOT EXISTS] [ks.]a (types) SFUNC f STYPE type
/// [FINALFUNC f] [INITCOND term]`: also EXECUTE on the state and final functions.
fn create_aggregate<'a>(p: &mut Parser<'a>, or_replace: bool) -> PResult<Statement<'a>> {
    let mut st = Statement::new(Kind::CreateAggregate);
    p.if_not_exists(&mut st)?;
    let (ks, name) = p.qualified()?;
    let ks = p.keyspace_or_current(ks)?;
    let args = arg_types(p, false)?;
    p.expect_kw("sfunc")?;
    let sfunc = p.ident()?;
    p.expect_kw("stype")?;
    let mut stype = String::new();
    cql_type(p, &mut stype, 0)?;
    let ffunc = if p.eat_kw("finalfunc")? {
        Some(p.ident()?)
    } else {
        None
    };
    if p.eat_kw("initcond")? && p.scan(&mut st, &["deterministic"], false)? == 0 {
        return Err(p.unexpected("the initial condition"));
    }
    p.skip_rest(&mut st, false)?;
    create_function_needs(&mut st, or_replace, &ks, &name, &args);
    let sargs = if args.is_empty() {
        stype.clone()
    } else {
        format!("{stype}, {args}")
    };
    st.need(Permission::Execute, function(&ks, &sfunc, Some(sargs)));
    if let Some(f) = ffunc {
        st.need(Permission::Execute, function(&ks, &f, Some(stype)));
    }
    st.keyspace = Some(ks);
    Ok(st)
}

/// `ALTER ...`
pub fn alter<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    p.expect_kw("alter")?;
    if p.eat_kw("keyspace")? {
        let mut st = Statement::new(Kind::AlterKeyspace);
        p.if_exists(&mut st)?;
        let ks = p.ident()?;
        p.expect_kw("with")?;
        p.skip_rest(&mut st, false)?;
        return Ok(st.with_keyspace_need(Permission::Alter, ks));
    }
    if p.eat_kw("table")? || p.eat_kw("columnfamily")? {
        let mut st = Statement::new(Kind::AlterTable);
        p.if_exists(&mut st)?;
        let (ks, t) = p.table_name()?;
        if matches!(p.peek()?, Tok::End | Tok::Sym(";")) {
            return Err(p.unexpected("ADD, ALTER, DROP, RENAME or WITH"));
        }
        p.skip_rest(&mut st, true)?;
        return Ok(st.with_table_need(Permission::Alter, ks, t));
    }
    if p.eat_kw("type")? {
        let mut st = Statement::new(Kind::AlterType);
        p.if_exists(&mut st)?;
        let (ks, _) = p.table_name()?;
        if matches!(p.peek()?, Tok::End | Tok::Sym(";")) {
            return Err(p.unexpected("ADD, ALTER or RENAME"));
        }
        p.skip_rest(&mut st, false)?;
        return Ok(st.with_keyspace_need(Permission::Alter, ks));
    }
    if p.eat_kw("materialized")? {
        p.expect_kw("view")?;
        let mut st = Statement::new(Kind::AlterMaterializedView);
        p.if_exists(&mut st)?;
        let (ks, v) = p.table_name()?;
        p.expect_kw("with")?;
        p.skip_rest(&mut st, false)?;
        st.table = Some(v);
        // Cassandra asks ALTER on the base table, which the view's name does not give.
        return Ok(st.with_keyspace_need(Permission::Alter, ks));
    }
    if p.at_kw("role")? || p.at_kw("user")? {
        return dcl::alter_role(p);
    }
    Err(p.unexpected("what to ALTER (KEYSPACE, TABLE, TYPE, MATERIALIZED VIEW, ROLE, USER)"))
}

/// `DROP ...`
pub fn drop<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    p.expect_kw("drop")?;
    if p.eat_kw("keyspace")? {
        let mut st = Statement::new(Kind::DropKeyspace);
        p.if_exists(&mut st)?;
        let ks = p.ident()?;
        return Ok(st.with_keyspace_need(Permission::Drop, ks));
    }
    if p.eat_kw("table")? || p.eat_kw("columnfamily")? {
        let mut st = Statement::new(Kind::DropTable);
        p.if_exists(&mut st)?;
        let (ks, t) = p.table_name()?;
        return Ok(st.with_table_need(Permission::Drop, ks, t));
    }
    if p.eat_kw("index")? {
        // The index name does not give its table: decided at keyspace level.
        let mut st = Statement::new(Kind::DropIndex);
        p.if_exists(&mut st)?;
        let (ks, _) = p.table_name()?;
        return Ok(st.with_keyspace_need(Permission::Alter, ks));
    }
    if p.eat_kw("type")? {
        let mut st = Statement::new(Kind::DropType);
        p.if_exists(&mut st)?;
        let (ks, _) = p.table_name()?;
        return Ok(st.with_keyspace_need(Permission::Drop, ks));
    }
    let func = if p.eat_kw("function")? {
        Some(Kind::DropFunction)
    } else if p.eat_kw("aggregate")? {
        Some(Kind::DropAggregate)
    } else {
        None
    };
    if let Some(kind) = func {
        let mut st = Statement::new(kind);
        p.if_exists(&mut st)?;
        let (ks, name) = p.qualified()?;
        let ks = p.keyspace_or_current(ks)?;
        let args = if matches!(p.peek()?, Tok::Sym("(")) {
            Some(arg_types(p, false)?)
        } else {
            None
        };
        st.need(Permission::Drop, function(&ks, &name, args));
        st.keyspace = Some(ks);
        return Ok(st);
    }
    if p.eat_kw("materialized")? {
        p.expect_kw("view")?;
        let mut st = Statement::new(Kind::DropMaterializedView);
        p.if_exists(&mut st)?;
        let (ks, v) = p.table_name()?;
        st.table = Some(v);
        // Cassandra asks ALTER on the base table, which the view's name does not give.
        return Ok(st.with_keyspace_need(Permission::Alter, ks));
    }
    if p.eat_kw("trigger")? {
        let mut st = Statement::new(Kind::DropTrigger);
        p.if_exists(&mut st)?;
        p.ident()?;
        p.expect_kw("on")?;
        let (ks, t) = p.table_name()?;
        return Ok(trigger(st, ks, t));
    }
    if p.at_kw("role")? || p.at_kw("user")? {
        return dcl::drop_role(p);
    }
    if p.at_kw("identity")? {
        return dcl::drop_identity(p);
    }
    Err(p.unexpected("what to DROP (KEYSPACE, TABLE, INDEX, TYPE, FUNCTION, ...)"))
}
