//! CQL types as Cassandra prints them in function signatures, read by the statements that
//! name functions: CREATE FUNCTION and AGGREGATE, DROP FUNCTION, GRANT on a function.

use super::super::lexer::{self, Tok};
use super::{Fail, PResult, Parser, MAX_NESTING};

/// A CQL type as Cassandra prints it in a function signature: `int`, `frozen<list<text>>`,
/// `map<text, int>`, `vector<float, 3>`, `ks.udt`.
pub(super) fn cql_type(p: &mut Parser<'_>, out: &mut String, depth: u32) -> PResult<()> {
    if depth > MAX_NESTING {
        return Err(Fail::unsupported(format!(
            "types nested deeper than {MAX_NESTING} levels"
        )));
    }
    let t = p.peek()?;
    match (t, lexer::name(t)) {
        (Tok::Number(n), _) if depth > 0 => {
            p.bump()?;
            out.push_str(n);
            return Ok(());
        }
        (_, Some(n)) => {
            p.bump()?;
            out.push_str(&n);
        }
        _ => return Err(p.unexpected("a type")),
    }
    if p.eat_sym(".")? {
        out.push('.');
        out.push_str(&p.ident()?);
    }
    if p.eat_sym("<")? {
        out.push('<');
        loop {
            cql_type(p, out, depth + 1)?;
            if p.eat_sym(",")? {
                out.push_str(", ");
            } else {
                break;
            }
        }
        p.expect_sym(">")?;
        out.push('>');
    }
    Ok(())
}

/// `( [name] type, ... )`: the argument types, joined by ", ".
pub(super) fn arg_types(p: &mut Parser<'_>, named: bool) -> PResult<String> {
    p.expect_sym("(")?;
    let mut out = String::new();
    if p.eat_sym(")")? {
        return Ok(out);
    }
    loop {
        if named {
            p.ident()?;
        }
        cql_type(p, &mut out, 0)?;
        if p.eat_sym(",")? {
            out.push_str(", ");
        } else {
            break;
        }
    }
    p.expect_sym(")")?;
    Ok(out)
}
