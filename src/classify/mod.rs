//! The CQL statement classifier: what one statement does, and which Cassandra permissions
//! on which resources it needs. Pure Rust on `nom`, no NGINX types, failing closed.
//!
//! # API
//!
//! ```
//! use ngx_stream_cql_module::classify::{classify, Kind, Permission, Rejection};
//!
//! let st = classify("UPDATE users SET name = 'x' WHERE id = 1 IF EXISTS", Some("demo"));
//! assert_eq!(st.kind, Kind::Update);
//! assert_eq!(st.keyspace.as_deref(), Some("demo"));
//! let needs: Vec<String> = st.needs.iter().map(|n| n.to_string()).collect();
//! assert_eq!(needs, ["MODIFY <table demo.users>", "SELECT <table demo.users>"]);
//! assert_eq!(st.operation.as_str(), "UPDATE");
//! assert_eq!(st.category.as_str(), "DML");
//!
//! let bad = classify("SELECT * FROM t; DROP TABLE t", Some("demo"));
//! assert_eq!(bad.kind, Kind::Unparsed);
//! assert_eq!(bad.rejection, Some(Rejection::Syntax));
//! assert_eq!(
//!     bad.syntax_error(),
//!     Some("line 1:17 mismatched input 'DROP' expecting <EOF> (more than one statement in one text)")
//! );
//! # let _ = Permission::Select;
//! ```
//!
//! [`classify`]`(text, current_keyspace)` returns a [`Statement`]:
//! - `kind` ([`Kind`]), `category` ([`Category`]) and `operation` ([`Operation`]) as
//!   Cassandra's audit log names them. INSERT has its own kind but, as in Cassandra's audit
//!   log, the operation `UPDATE`. TRUNCATE is category DDL in Cassandra's audit log and here.
//!   For a PREPARE request the caller logs [`Category::Prepare`] /
//!   [`Operation::PrepareStatement`]; unparsed text is `ERROR` / `REQUEST_FAILURE`.
//! - `needs`: every [`Need`] (a [`Permission`] on a [`Resource`]) in the order Cassandra checks
//!   them, without duplicates. It is never empty for a classified statement, so "allow when
//!   every need is granted" fails closed.
//! - `keyspace`, `table`: what the statement mainly concerns, resolved against the current
//!   keyspace; `role`: the role created, altered, dropped, granted to, or listed with `OF`.
//! - `flags` ([`Flags`]): ALLOW_FILTERING, CONDITIONAL (LWT), UNLOGGED_BATCH, COUNTER_BATCH,
//!   USING_TIMESTAMP, USING_TTL, JSON, DISTINCT, WHERE, IF_EXISTS (DDL), MASKING,
//!   SUPERUSER_ONLY, INTERNALS, BIND_MARKERS.
//! - `children`: the statements of an inline BATCH, each classified; the batch's needs are
//!   their union.
//! - `unparsed`: for [`Kind::Unparsed`], a reason a person can read. The policy denies it.
//! - `rejection` ([`Rejection`]): for [`Kind::Unparsed`], how Cassandra answers the text:
//!   `Syntax` (SyntaxException; [`Statement::syntax_error`] gives the reason, worded and
//!   positioned as Cassandra's parser does: `line 1:0 no viable alternative at input
//!   'SELEKT'`, `line 1:9 mismatched input 'FORM' expecting FROM`, with ANTLR's numbering:
//!   lines from 1, columns from 0), `Invalid` (InvalidRequest, e.g. no keyspace;
//!   [`Statement::invalid_request`]), or `Unsupported` (beyond what the classifier decides:
//!   an empty batch, the limits below).
//!
//! [`Statement::into_owned`] detaches a statement from its text (for caches).
//! [`Resource::covers`] / [`Resource::parent`] give Cassandra's nesting (a grant on a parent
//! covers its children), [`Resource::applicable_permissions`] what `GRANT ALL` means there;
//! `Display` of [`Need`], [`Resource`] and [`Permission`] uses Cassandra's wording
//! (`MODIFY <table demo.users>`), for denial messages like Cassandra's
//! `User alice has no MODIFY permission on <table demo.users> or any of its parents`.
//! An empty `BEGIN BATCH APPLY BATCH` is unparsed (it would need nothing).
//!
//! Names borrow from the text (and from the current keyspace) when they are already in their
//! resolved form; only folding `Mixed_Case` names, unescaping `""`/`''`, and function
//! signatures allocate. The `needs` vector is the one allocation of a typical statement.
//!
//! # Permission mapping (Cassandra 5.0)
//!
//! | statement | needs |
//! |---|---|
//! | SELECT | SELECT on the table; EXECUTE on each non-native function called |
//! | INSERT, UPDATE, DELETE | MODIFY on the table; also SELECT when conditional (IF ...); EXECUTE on functions |
//! | BATCH | the union of its children's needs |
//! | TRUNCATE | MODIFY on the table |
//! | CREATE KEYSPACE | CREATE on `<all keyspaces>` |
//! | ALTER / DROP KEYSPACE | ALTER / DROP on the keyspace |
//! | CREATE TABLE, TYPE | CREATE on the keyspace (CREATE TABLE ... LIKE: also SELECT on the source) |
//! | ALTER / DROP TABLE | ALTER / DROP on the table |
//! | ALTER / DROP TYPE | ALTER / DROP on the keyspace |
//! | CREATE INDEX | ALTER on the base table |
//! | DROP INDEX | ALTER on the keyspace (the index name does not give the table) |
//! | CREATE MATERIALIZED VIEW | ALTER on the base table |
//! | ALTER / DROP MATERIALIZED VIEW | ALTER on the keyspace (Cassandra: ALTER on the base table, which the view's name does not give) |
//! | CREATE [OR REPLACE] FUNCTION | CREATE on `<all functions in ks>`; OR REPLACE also ALTER on the function |
//! | CREATE AGGREGATE | as FUNCTION, plus EXECUTE on its SFUNC (stype, args) and FINALFUNC (stype) |
//! | DROP FUNCTION / AGGREGATE | DROP on the function (all overloads when no types are given) |
//! | CREATE / DROP TRIGGER | ALTER on the table, flag SUPERUSER_ONLY (Cassandra: superusers only) |
//! | CREATE ROLE / USER | CREATE on `<all roles>` (flag SUPERUSER_ONLY with SUPERUSER = true) |
//! | ALTER / DROP ROLE / USER | ALTER / DROP on the role |
//! | GRANT / REVOKE permissions | AUTHORIZE on the resource, then each permission granted on it (ALL: every applicable one); an inapplicable permission is unparsed, as Cassandra rejects it |
//! | GRANT / REVOKE role | AUTHORIZE on the granted role |
//! | LIST ROLES / USERS / SUPERUSERS | DESCRIBE on `<all roles>` (`role` is the OF role: Cassandra also lets a role list the roles of itself and of its roles, which the policy decides) |
//! | LIST PERMISSIONS | DESCRIBE on `<role r>` for `OF r`, on `<all roles>` without: Cassandra asks no permission (`CassandraAuthorizer.list`: a superuser, or `r` is the caller or one of its roles), and the policy decides it by that rule |
//! | ADD / DROP IDENTITY | CREATE / DROP on `<all roles>` |
//! | USE, DESCRIBE | DESCRIBE on the data or function resource shown (see below) |
//!
//! Cassandra lets any role `USE` a keyspace and run every server-side `DESCRIBE`; the proxy
//! authorizes them too, so they need DESCRIBE, a proxy extension, on what they reveal:
//! `<keyspace ks>` for USE and DESCRIBE KEYSPACE, `<table ks.t>` for DESCRIBE TABLE / VIEW,
//! `<keyspace ks>` for DESCRIBE INDEX / TYPE, `<function ks.f>` for DESCRIBE FUNCTION /
//! AGGREGATE, `<all keyspaces>` for DESCRIBE (FULL) SCHEMA / CLUSTER / KEYSPACES, the current
//! keyspace (or all) for DESCRIBE TABLES / TYPES / FUNCTIONS / AGGREGATES. A plain
//! `DESCRIBE x` needs it on `<keyspace x>` and on `<table current.x>`. A policy may treat any
//! grant on a data resource as including DESCRIBE of it.
//!
//! Function calls: an unqualified name that is one of Cassandra's native functions
//! (`now`, `token`, `count`, `writetime`, `intasblob`, `mask_inner`, ... see `functions.rs`)
//! or one qualified with `system.` needs nothing; any other call needs EXECUTE on
//! `<function ks.f>` (signature unknown at a call site, so `args` is `None`).
//!
//! # Dynamic data masking (Cassandra 5.0)
//!
//! Which columns are masked is schema the classifier does not know, so SELECT never asks
//! UNMASK or SELECT_MASKED itself. A policy that knows masked columns can use the WHERE flag
//! (the statement restricts columns: SELECT_MASKED) and the table. GRANT/REVOKE UNMASK and
//! SELECT_MASKED are classified like any permission; `MASKED WITH` / `DROP MASKED` in CREATE
//! or ALTER TABLE set the MASKING flag; the `mask_*` functions are native.
//!
//! # Lexing
//!
//! As Cassandra's `Lexer.g`: see [`lexer`]. Notably `--` and `//` comments end at `\n` or
//! `\r` and one without that line end (running to the end of the text) is a syntax error,
//! as is an unclosed `/*`; `/* */` comments may sit between the parts of `ks.table`,
//! unquoted names fold to lower case, reserved keywords (the CQL reference's list) are never
//! names unless quoted, and two statements in one text are a syntax error, as in Cassandra.
//! Syntax errors never show a string literal's text (it may be a password).
//!
//! # Robustness
//!
//! Never panics, allocates in proportion to the text, runs in time linear in the text
//! (a few tokens of lookahead), and bounds bracket and type nesting by
//! [`parser::MAX_NESTING`] without recursion on brackets. A statement calling more than
//! [`parser::MAX_CALLS`] distinct functions, or a batch needing more than
//! [`parser::MAX_BATCH_NEEDS`] distinct permissions, is unparsed, which keeps the
//! de-duplication of needs linear; large batches de-duplicate through a hash set.
//!
//! # Limits of a classifier that does not know the schema
//!
//! - A call site does not give a function's signature: EXECUTE needs name
//!   `<function ks.f>` for all overloads. A name missing from the native list is treated as
//!   a user function (fail closed).
//! - SELECT on a materialized view asks SELECT on the view (Cassandra asks it on the base
//!   table); ALTER/DROP MATERIALIZED VIEW and DROP INDEX are decided on the keyspace.
//! - CREATE OR REPLACE FUNCTION/AGGREGATE asks both CREATE and ALTER (Cassandra asks one,
//!   depending on whether the function exists).
//! - Masked columns are unknown (see above).
//! - Some texts Cassandra rejects as syntax errors are still classified (expressions are
//!   scanned, not fully parsed); Cassandra then rejects them itself, so nothing runs that
//!   the classification did not cover.

#[macro_use]
mod names;

pub mod functions;
pub mod lexer;
pub mod parser;
pub mod permission;
pub mod resource;
pub mod statement;

pub use permission::{Permission, PermissionSet};
pub use resource::Resource;
pub use statement::{Category, Flags, Kind, Need, Operation, Rejection, Statement};

/// Classifies one statement's text. `current_keyspace` is the connection's keyspace (from
/// the last RESULT Set_keyspace, or the v5 per-request keyspace), used for unqualified names.
///
/// Never panics; unrecognised or invalid text gives [`Kind::Unparsed`] with a reason and
/// the [`Rejection`] Cassandra would answer it with ([`Statement::syntax_error`]).
pub fn classify<'a>(text: &'a str, current_keyspace: Option<&'a str>) -> Statement<'a> {
    let mut p = parser::Parser::new(text, current_keyspace);
    match p.statement().and_then(|st| p.expect_end().map(|()| st)) {
        Ok(st) => st,
        Err(fail) => Statement::unparsed(fail.rejection, fail.reason(text)),
    }
}

#[cfg(test)]
mod tests;
