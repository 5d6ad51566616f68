//! SELECT, INSERT, UPDATE, DELETE, inline BATCH, TRUNCATE and USE.

use std::borrow::Cow;
use std::collections::HashSet;

use super::super::lexer::Tok;
use super::super::permission::Permission;
use super::super::resource::Resource;
use super::super::statement::{Flags, Kind, Need, Statement};
use super::{is_kw, on_table, table_resource, Fail, PResult, Parser, MAX_BATCH_NEEDS};

/// Words that end a WHERE or IF clause: the next statement of a batch, or its end.
const CLAUSE_END: &[&str] = &["insert", "update", "delete", "apply"];
const WHERE_END: &[&str] = &["if", "insert", "update", "delete", "apply"];
/// Words that end the SET clause of an UPDATE.
const SET_END: &[&str] = &["where", "if", "insert", "update", "delete", "apply"];
/// Words that end the column list of a DELETE.
const DELETE_COLUMNS_END: &[&str] = &["from", "where", "insert", "update", "delete", "apply"];
/// What may follow the table of a SELECT.
const SELECT_CLAUSES: &[&str] = &["where", "group", "order", "per", "limit", "allow"];

/// `SELECT [JSON] [DISTINCT] selectors FROM [ks.]t [WHERE ...] [GROUP BY ...]
/// [ORDER BY ...] [PER PARTITION LIMIT n] [LIMIT n] [ALLOW FILTERING]`
pub fn select<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    p.expect_kw("select")?;
    let mut st = Statement::new(Kind::Select);
    // JSON and DISTINCT are also valid column names: `SELECT json FROM t`.
    if p.at_kw("json")? && !ends_selector(p.peek2()?) {
        p.bump()?;
        st.flags |= Flags::JSON;
    }
    if p.at_kw("distinct")? && !ends_selector(p.peek2()?) {
        p.bump()?;
        st.flags |= Flags::DISTINCT;
    }
    if p.scan(&mut st, &["from"], true)? == 0 {
        return Err(p.unexpected("a selection"));
    }
    p.expect_kw("from")?;
    let (ks, t) = p.table_name()?;
    let next = p.peek()?;
    if !(matches!(next, Tok::End | Tok::Sym(";")) || SELECT_CLAUSES.iter().any(|c| is_kw(next, c)))
    {
        return Err(p.unexpected("WHERE, GROUP BY, ORDER BY, LIMIT or the end of the statement"));
    }
    if p.eat_kw("where")? {
        st.flags |= Flags::WHERE;
        if p.scan(&mut st, &["where", "allow"], true)? == 0 {
            return Err(p.unexpected("a condition after WHERE"));
        }
    }
    p.scan(&mut st, &["where", "allow"], true)?;
    if p.eat_kw("allow")? {
        p.expect_kw("filtering")?;
        st.flags |= Flags::ALLOW_FILTERING;
    }
    st.needs.insert(
        0,
        Need {
            permission: Permission::Select,
            resource: table_resource(&ks, &t),
        },
    );
    st.keyspace = Some(ks);
    st.table = Some(t);
    Ok(st)
}

fn ends_selector(t: Tok<'_>) -> bool {
    is_kw(t, "from") || is_kw(t, "as") || t == Tok::Sym(",")
}

/// Puts MODIFY (and SELECT for a conditional write) first, as Cassandra checks them.
// `&Cow` on purpose: cloning a borrowed Cow keeps it borrowed (no allocation).
#[allow(clippy::ptr_arg)]
fn write_needs<'a>(st: &mut Statement<'a>, ks: &Cow<'a, str>, t: &Cow<'a, str>) {
    let mut first = Vec::with_capacity(st.needs.len() + 2);
    first.push(Need {
        permission: Permission::Modify,
        resource: table_resource(ks, t),
    });
    if st.flags.contains(Flags::CONDITIONAL) {
        first.push(Need {
            permission: Permission::Select,
            resource: table_resource(ks, t),
        });
    }
    if st.needs.is_empty() {
        st.needs = first;
    } else {
        first.append(&mut st.needs);
        st.needs = first;
    }
}

/// `USING TTL n AND TIMESTAMP n`
fn using<'a>(p: &mut Parser<'a>, st: &mut Statement<'a>, ttl_allowed: bool) -> PResult<()> {
    p.expect_kw("using")?;
    loop {
        if ttl_allowed && p.eat_kw("ttl")? {
            st.flags |= Flags::USING_TTL;
        } else if p.eat_kw("timestamp")? {
            st.flags |= Flags::USING_TIMESTAMP;
        } else {
            return Err(p.unexpected(if ttl_allowed {
                "TTL or TIMESTAMP"
            } else {
                "TIMESTAMP"
            }));
        }
        // A number, `-` and a number, `?` or `:name`; the last token is consumed below.
        match p.peek()? {
            Tok::Number(_) => {}
            Tok::Sym("-") if matches!(p.peek2()?, Tok::Number(_)) => {
                p.bump()?;
            }
            Tok::Sym("?") => st.flags |= Flags::BIND_MARKERS,
            Tok::Sym(":") => {
                p.bump()?;
                if !p.at_name()? {
                    return Err(p.unexpected("a bind marker name after ':'"));
                }
                st.flags |= Flags::BIND_MARKERS;
            }
            _ => return Err(p.unexpected("a number or a bind marker after USING")),
        }
        p.bump()?;
        if !p.eat_kw("and")? {
            return Ok(());
        }
    }
}

/// `INSERT INTO [ks.]t (cols) VALUES (values) | JSON 'json' [DEFAULT NULL|UNSET]
/// [IF NOT EXISTS] [USING ...]`
pub fn insert<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    p.expect_kw("insert")?;
    p.expect_kw("into")?;
    let (ks, t) = p.table_name()?;
    let mut st = Statement::new(Kind::Insert);
    if p.eat_kw("json")? {
        st.flags |= Flags::JSON;
        match p.peek()? {
            Tok::Str(_) | Tok::Dollar(_) => {
                p.bump()?;
            }
            Tok::Sym("?") => {
                p.bump()?;
                st.flags |= Flags::BIND_MARKERS;
            }
            Tok::Sym(":") => {
                p.bump()?;
                p.ident()?;
                st.flags |= Flags::BIND_MARKERS;
            }
            _ => return Err(p.unexpected("a JSON string or a bind marker after JSON")),
        }
        if p.eat_kw("default")? && !(p.eat_kw("null")? || p.eat_kw("unset")?) {
            return Err(p.unexpected("NULL or UNSET"));
        }
    } else {
        p.expect_sym("(")?;
        if p.scan(&mut st, &[], false)? == 0 {
            return Err(p.unexpected("a column name"));
        }
        p.expect_sym(")")?;
        p.expect_kw("values")?;
        p.expect_sym("(")?;
        p.scan(&mut st, &[], true)?;
        p.expect_sym(")")?;
    }
    loop {
        if p.eat_kw("if")? {
            p.expect_kw("not")?;
            p.expect_kw("exists")?;
            st.flags |= Flags::CONDITIONAL;
        } else if p.at_kw("using")? {
            using(p, &mut st, true)?;
        } else {
            break;
        }
    }
    Ok(written(st, ks, t))
}

/// A write to `ks.t`: its needs put first ([`write_needs`]), and the table it concerns.
fn written<'a>(mut st: Statement<'a>, ks: Cow<'a, str>, t: Cow<'a, str>) -> Statement<'a> {
    write_needs(&mut st, &ks, &t);
    st.keyspace = Some(ks);
    st.table = Some(t);
    st
}

/// `WHERE ... [IF EXISTS | IF conditions]`, the end of an UPDATE or a DELETE.
fn where_and_conditions<'a>(p: &mut Parser<'a>, st: &mut Statement<'a>) -> PResult<()> {
    p.expect_kw("where")?;
    st.flags |= Flags::WHERE;
    if p.scan(st, WHERE_END, true)? == 0 {
        return Err(p.unexpected("a condition after WHERE"));
    }
    conditions(p, st)
}

/// `IF EXISTS` or `IF conditions` after a WHERE clause.
fn conditions<'a>(p: &mut Parser<'a>, st: &mut Statement<'a>) -> PResult<()> {
    if p.eat_kw("if")? {
        st.flags |= Flags::CONDITIONAL;
        if !p.eat_kw("exists")? && p.scan(st, CLAUSE_END, true)? == 0 {
            return Err(p.unexpected("EXISTS or a condition"));
        }
    }
    Ok(())
}

/// `UPDATE [ks.]t [USING ...] SET assignments WHERE ... [IF EXISTS | IF conditions]`
pub fn update<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    p.expect_kw("update")?;
    let (ks, t) = p.table_name()?;
    let mut st = Statement::new(Kind::Update);
    if p.at_kw("using")? {
        using(p, &mut st, true)?;
    }
    p.expect_kw("set")?;
    if p.scan(&mut st, SET_END, true)? == 0 {
        return Err(p.unexpected("an assignment"));
    }
    where_and_conditions(p, &mut st)?;
    Ok(written(st, ks, t))
}

/// `DELETE [columns] FROM [ks.]t [USING TIMESTAMP n] WHERE ... [IF EXISTS | IF conditions]`
pub fn delete<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    p.expect_kw("delete")?;
    let mut st = Statement::new(Kind::Delete);
    if !p.at_kw("from")? {
        p.scan(&mut st, DELETE_COLUMNS_END, true)?;
    }
    p.expect_kw("from")?;
    let (ks, t) = p.table_name()?;
    if p.at_kw("using")? {
        using(p, &mut st, false)?;
    }
    where_and_conditions(p, &mut st)?;
    Ok(written(st, ks, t))
}

/// `BEGIN [UNLOGGED | COUNTER] BATCH [USING TIMESTAMP n] (INSERT | UPDATE | DELETE [;])*
/// APPLY BATCH`: every child classified; the batch needs the union of their needs.
pub fn batch<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    p.expect_kw("begin")?;
    let mut st = Statement::new(Kind::Batch);
    if p.eat_kw("unlogged")? {
        st.flags |= Flags::UNLOGGED_BATCH;
    } else if p.eat_kw("counter")? {
        st.flags |= Flags::COUNTER_BATCH;
    }
    p.expect_kw("batch")?;
    if p.at_kw("using")? {
        using(p, &mut st, false)?;
    }
    loop {
        let t = p.peek()?;
        let child = if is_kw(t, "insert") {
            insert(p)?
        } else if is_kw(t, "update") {
            update(p)?
        } else if is_kw(t, "delete") {
            delete(p)?
        } else if is_kw(t, "apply") {
            break;
        } else {
            return Err(p.unexpected("INSERT, UPDATE, DELETE or APPLY BATCH in a batch"));
        };
        p.eat_sym(";")?;
        st.children.push(child);
    }
    p.expect_kw("apply")?;
    p.expect_kw("batch")?;
    if st.children.is_empty() {
        return Err(Fail::unsupported(
            "empty batch: no statement between BEGIN BATCH and APPLY BATCH",
        ));
    }
    let mut needs: Vec<Need<'a>> = Vec::with_capacity(st.children.len());
    // Large batches de-duplicate through a hash set, so the union stays linear.
    let large = st.children.len() > 16;
    let mut seen: HashSet<Need<'a>> = HashSet::new();
    let mut flags = st.flags;
    let mut same_ks = true;
    let mut same_table = true;
    let first = &st.children[0];
    for c in &st.children {
        flags |= c.flags;
        same_ks &= c.keyspace == first.keyspace;
        same_table &= same_ks && c.table == first.table;
        for n in &c.needs {
            let new = if large {
                seen.insert(n.clone())
            } else {
                !needs.contains(n)
            };
            if new {
                if needs.len() >= MAX_BATCH_NEEDS {
                    return Err(Fail::unsupported(format!(
                        "a batch needing more than {MAX_BATCH_NEEDS} distinct permissions"
                    )));
                }
                needs.push(n.clone());
            }
        }
    }
    if same_ks {
        st.keyspace = first.keyspace.clone();
    }
    if same_table {
        st.table = first.table.clone();
    }
    st.flags = flags;
    st.needs = needs;
    Ok(st)
}

/// `TRUNCATE [TABLE] [ks.]t`
pub fn truncate<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    p.expect_kw("truncate")?;
    if !p.eat_kw("table")? {
        p.eat_kw("columnfamily")?;
    }
    let (ks, t) = p.table_name()?;
    let r = table_resource(&ks, &t);
    let mut st = on_table(Kind::Truncate, ks, t);
    st.need(Permission::Modify, r);
    Ok(st)
}

/// `USE ks`. Cassandra asks no permission; the classifier asks DESCRIBE on the keyspace so
/// that a policy decides (see the module documentation).
pub fn use_keyspace<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    p.expect_kw("use")?;
    let ks = p.ident()?;
    let mut st = Statement::new(Kind::Use);
    st.need(Permission::Describe, Resource::Keyspace(ks.clone()));
    st.keyspace = Some(ks);
    Ok(st)
}
