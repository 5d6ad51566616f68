//! Roles and users, GRANT and REVOKE, LIST, and ADD/DROP IDENTITY.

use std::borrow::Cow;

use super::super::lexer::Tok;
use super::super::permission::{Permission, PermissionSet};
use super::super::resource::Resource;
use super::super::statement::{Flags, Kind, Statement};
use super::{is_kw, Fail, PResult, Parser};

/// Skips role options, flagging `SUPERUSER = true` (and the `SUPERUSER` of CREATE/ALTER
/// USER), which Cassandra allows to superusers only.
fn role_options<'a>(p: &mut Parser<'a>, st: &mut Statement<'a>) -> PResult<()> {
    loop {
        let t = p.peek()?;
        if matches!(t, Tok::End | Tok::Sym(";")) {
            return Ok(());
        }
        if is_kw(t, "superuser") {
            p.bump()?;
            if p.eat_sym("=")? {
                if p.at_kw("true")? {
                    st.flags |= Flags::SUPERUSER_ONLY;
                }
            } else {
                st.flags |= Flags::SUPERUSER_ONLY;
            }
            continue;
        }
        if matches!(t, Tok::Sym("{") | Tok::Sym("(") | Tok::Sym("[")) {
            // Maps and sets of options: skipped by the balanced scanner.
            p.bump()?;
            p.skip_balanced(st)?;
            continue;
        }
        if matches!(t, Tok::Sym(")") | Tok::Sym("]") | Tok::Sym("}")) {
            return Err(p.unexpected("the end of the statement"));
        }
        p.bump()?;
    }
}

impl<'a> Parser<'a> {
    /// After an opening bracket: skips to its matching closing bracket.
    pub fn skip_balanced(&mut self, st: &mut Statement<'a>) -> PResult<()> {
        self.scan(st, &[], false)?;
        match self.peek()? {
            Tok::Sym(")") | Tok::Sym("]") | Tok::Sym("}") => {
                self.bump()?;
                Ok(())
            }
            _ => Err(self.unexpected("a closing bracket")),
        }
    }
}

/// `ROLE` or `USER`: the statement kind `role` or `user`.
fn role_or_user(p: &mut Parser<'_>, role: Kind, user: Kind) -> PResult<Kind> {
    if p.eat_kw("role")? {
        Ok(role)
    } else {
        p.expect_kw("user")?;
        Ok(user)
    }
}

/// `CREATE ROLE [IF NOT EXISTS] r [WITH options]` and `CREATE USER [IF NOT EXISTS] u
/// [WITH PASSWORD 'p'] [SUPERUSER | NOSUPERUSER]`: CREATE on all roles.
pub fn create_role<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    let mut st = Statement::new(role_or_user(p, Kind::CreateRole, Kind::CreateUser)?);
    p.if_not_exists(&mut st)?;
    let role = p.role_name()?;
    role_options(p, &mut st)?;
    st.need(Permission::Create, Resource::AllRoles);
    st.role = Some(role);
    Ok(st)
}

/// `ALTER ROLE [IF EXISTS] r WITH options` / `ALTER USER u ...`: ALTER on the role.
pub fn alter_role<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    let mut st = Statement::new(role_or_user(p, Kind::AlterRole, Kind::AlterUser)?);
    p.if_exists(&mut st)?;
    let role = p.role_name()?;
    role_options(p, &mut st)?;
    Ok(st.with_role_need(Permission::Alter, role))
}

/// `DROP ROLE [IF EXISTS] r` / `DROP USER [IF EXISTS] u`: DROP on the role.
pub fn drop_role<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    let mut st = Statement::new(role_or_user(p, Kind::DropRole, Kind::DropUser)?);
    p.if_exists(&mut st)?;
    let role = p.role_name()?;
    Ok(st.with_role_need(Permission::Drop, role))
}

/// Whether the GRANT/REVOKE ahead grants permissions (has `ON` before `TO`/`FROM`) rather
/// than a role.
fn grants_permissions(p: &mut Parser<'_>) -> PResult<bool> {
    if p.at_kw("all")? {
        return Ok(true);
    }
    let mut l = p.lookahead()?;
    for _ in 0..64 {
        match l.next_token() {
            Ok(t) if is_kw(t, "on") => return Ok(true),
            Ok(t) if is_kw(t, "to") || is_kw(t, "from") => return Ok(false),
            Ok(Tok::End) | Err(_) => return Ok(false),
            Ok(_) => {}
        }
    }
    Ok(false)
}

/// `ALL [PERMISSIONS]` or `perm [PERMISSION] (, perm [PERMISSION])*`; `None` means ALL.
fn permissions(p: &mut Parser<'_>) -> PResult<Option<PermissionSet>> {
    if p.eat_kw("all")? {
        p.eat_kw("permissions")?;
        return Ok(None);
    }
    let mut set = PermissionSet::EMPTY;
    loop {
        let perm = match p.peek()? {
            Tok::Ident(w) => Permission::from_name(w),
            _ => None,
        };
        match perm {
            Some(perm) => {
                p.bump()?;
                set.insert(perm);
            }
            None => return Err(p.unexpected("a permission (SELECT, MODIFY, CREATE, ...)")),
        }
        p.eat_kw("permission")?;
        if !p.eat_sym(",")? {
            return Ok(Some(set));
        }
    }
}

fn resource_type(r: &Resource<'_>) -> &'static str {
    match r {
        Resource::AllKeyspaces | Resource::Keyspace(_) | Resource::Table { .. } => "DataResource",
        Resource::AllFunctions | Resource::KeyspaceFunctions(_) | Resource::Function { .. } => {
            "FunctionResource"
        }
        Resource::AllRoles | Resource::Role(_) => "RoleResource",
        Resource::AllMbeans | Resource::Mbean(_) => "JMXResource",
    }
}

/// The resource of GRANT, REVOKE and LIST: `ALL KEYSPACES`, `KEYSPACE ks`, `[TABLE] [ks.]t`,
/// `ALL ROLES`, `ROLE r`, `ALL FUNCTIONS [IN KEYSPACE ks]`, `FUNCTION [ks.]f(types)`,
/// `ALL MBEANS`, `MBEAN 'name'`, `MBEANS 'pattern'`.
fn resource<'a>(p: &mut Parser<'a>) -> PResult<Resource<'a>> {
    if p.eat_kw("all")? {
        if p.eat_kw("keyspaces")? {
            return Ok(Resource::AllKeyspaces);
        }
        if p.eat_kw("roles")? {
            return Ok(Resource::AllRoles);
        }
        if p.eat_kw("mbeans")? {
            return Ok(Resource::AllMbeans);
        }
        if p.eat_kw("functions")? {
            if p.eat_kw("in")? {
                p.expect_kw("keyspace")?;
                return Ok(Resource::KeyspaceFunctions(p.ident()?));
            }
            return Ok(Resource::AllFunctions);
        }
        return Err(p.unexpected("KEYSPACES, ROLES, FUNCTIONS or MBEANS after ALL"));
    }
    if p.eat_kw("keyspace")? {
        return Ok(Resource::Keyspace(p.ident()?));
    }
    let next = p.peek2()?;
    let named = !(is_kw(next, "to") || is_kw(next, "from") || is_kw(next, "of"))
        && next != Tok::Sym(".")
        && !matches!(next, Tok::End | Tok::Sym(";"));
    if named && p.at_kw("role")? {
        p.bump()?;
        return Ok(Resource::Role(p.role_name()?));
    }
    if named && p.at_kw("function")? {
        p.bump()?;
        let (ks, name) = p.qualified()?;
        let keyspace = p.keyspace_or_current(ks)?;
        let args = arg_list(p)?;
        return Ok(Resource::Function {
            keyspace,
            name,
            args: Some(Cow::Owned(args)),
        });
    }
    if p.at_kw("mbean")? || p.at_kw("mbeans")? {
        p.bump()?;
        let name = match p.peek()? {
            Tok::Str(s) => super::super::lexer::unescape(s, '\''),
            Tok::Dollar(s) => Cow::Borrowed(s),
            _ => return Err(p.unexpected("an MBean name as a string")),
        };
        p.bump()?;
        return Ok(Resource::Mbean(name));
    }
    p.eat_kw("table")?;
    let (keyspace, table) = p.table_name()?;
    Ok(Resource::Table { keyspace, table })
}

/// A function signature's types in GRANT: `(int, text)`.
fn arg_list(p: &mut Parser<'_>) -> PResult<String> {
    super::types::arg_types(p, false)
}

/// `GRANT perms ON resource TO role`, `REVOKE perms ON resource FROM role`,
/// `GRANT role TO role`, `REVOKE role FROM role`.
pub fn grant_revoke<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    let grant = p.eat_kw("grant")?;
    if !grant {
        p.expect_kw("revoke")?;
    }
    let to = if grant { "to" } else { "from" };
    if grants_permissions(p)? {
        let perms = permissions(p)?;
        p.expect_kw("on")?;
        let res = resource(p)?;
        p.expect_kw(to)?;
        let grantee = p.role_name()?;
        let applicable = res.applicable_permissions();
        let perms = match perms {
            None => applicable,
            Some(set) => {
                if let Some(bad) = set.iter().find(|q| !applicable.contains(*q)) {
                    return Err(Fail::syntax(format!(
                        "Resource type {} does not support the requested permissions: {bad}",
                        resource_type(&res)
                    )));
                }
                set
            }
        };
        let mut st = Statement::new(if grant {
            Kind::GrantPermission
        } else {
            Kind::RevokePermission
        });
        st.needs.reserve_exact(1 + perms.iter().count());
        set_data_names(&mut st, &res);
        st.need(Permission::Authorize, res.clone());
        for perm in perms.iter() {
            st.need(perm, res.clone());
        }
        st.role = Some(grantee);
        Ok(st)
    } else {
        let role = p.role_name()?;
        p.expect_kw(to)?;
        let grantee = p.role_name()?;
        let mut st = Statement::new(if grant {
            Kind::GrantRole
        } else {
            Kind::RevokeRole
        });
        st.need(Permission::Authorize, Resource::Role(role));
        st.role = Some(grantee);
        Ok(st)
    }
}

fn set_data_names<'a>(st: &mut Statement<'a>, res: &Resource<'a>) {
    match res {
        Resource::Keyspace(k) | Resource::KeyspaceFunctions(k) => st.keyspace = Some(k.clone()),
        Resource::Function { keyspace, .. } => st.keyspace = Some(keyspace.clone()),
        Resource::Table { keyspace, table } => {
            st.keyspace = Some(keyspace.clone());
            st.table = Some(table.clone());
        }
        _ => {}
    }
}

/// `OF role` and `NORECURSIVE`.
fn of_role<'a>(p: &mut Parser<'a>, st: &mut Statement<'a>) -> PResult<()> {
    if p.eat_kw("of")? {
        st.role = Some(p.role_name()?);
    }
    p.eat_kw("norecursive")?;
    Ok(())
}

/// `LIST ROLES [OF r] [NORECURSIVE]`, `LIST USERS`, `LIST SUPERUSERS`: DESCRIBE on all
/// roles, what Cassandra checks before it lists every role (or, for `OF r`, the roles of any
/// role). [`Statement::role`] names the `OF` role: Cassandra also lets a role list the roles
/// granted to itself or to a role it holds, which the policy decides from the caller.
///
/// `LIST perms [ON resource] [OF r] [NORECURSIVE]`: DESCRIBE on `<role r>`, or on
/// `<all roles>` without `OF` (everyone's permissions). Cassandra asks no permission here
/// (`CassandraAuthorizer.list`): a superuser may list anyone's permissions, another caller
/// only those of itself and of the roles it holds. The need names whose permissions are
/// viewed; the policy decides it by that rule, not by grants.
pub fn list<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    p.expect_kw("list")?;
    let mut st;
    if p.eat_kw("roles")? {
        st = Statement::new(Kind::ListRoles);
        of_role(p, &mut st)?;
    } else if p.eat_kw("users")? {
        st = Statement::new(Kind::ListUsers);
    } else if p.eat_kw("superusers")? {
        st = Statement::new(Kind::ListSuperusers);
    } else {
        st = Statement::new(Kind::ListPermissions);
        permissions(p)?;
        if p.eat_kw("on")? {
            let res = resource(p)?;
            set_data_names(&mut st, &res);
        }
        of_role(p, &mut st)?;
        let whose = match &st.role {
            Some(role) => Resource::Role(role.clone()),
            None => Resource::AllRoles,
        };
        st.need(Permission::Describe, whose);
        return Ok(st);
    }
    st.need(Permission::Describe, Resource::AllRoles);
    Ok(st)
}

/// The identity of ADD / DROP IDENTITY: a string.
fn identity(p: &mut Parser<'_>) -> PResult<()> {
    if !matches!(p.peek()?, Tok::Str(_) | Tok::Dollar(_)) {
        return Err(p.unexpected("the identity as a string"));
    }
    p.bump()?;
    Ok(())
}

/// `ADD IDENTITY [IF NOT EXISTS] 'identity' TO ROLE r`: CREATE on all roles.
pub fn add_identity<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    p.expect_kw("add")?;
    p.expect_kw("identity")?;
    let mut st = Statement::new(Kind::AddIdentity);
    p.if_not_exists(&mut st)?;
    identity(p)?;
    p.expect_kw("to")?;
    p.expect_kw("role")?;
    st.role = Some(p.role_name()?);
    st.need(Permission::Create, Resource::AllRoles);
    Ok(st)
}

/// `DROP IDENTITY [IF EXISTS] 'identity'`: DROP on all roles.
pub fn drop_identity<'a>(p: &mut Parser<'a>) -> PResult<Statement<'a>> {
    p.expect_kw("identity")?;
    let mut st = Statement::new(Kind::DropIdentity);
    p.if_exists(&mut st)?;
    identity(p)?;
    st.need(Permission::Drop, Resource::AllRoles);
    Ok(st)
}
