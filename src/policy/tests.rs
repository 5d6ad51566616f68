//! Decisions end to end: policy text, identity, classified statement.

use super::*;
use crate::classify::classify;
use crate::identity::Source;

fn identity(principal: &str, groups: &[&str], attributes: &[(&str, &str)]) -> Identity {
    Identity {
        principal: principal.to_string(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        attributes: attributes
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        expires_at: None,
        source: Source::Token,
    }
}

fn policy(text: &str) -> Policy {
    Policy::parse(text).unwrap_or_else(|e| panic!("policy: {e}"))
}

/// Decides `cql` for `principal` holding `roles` (by name), without a cache.
fn decide(p: &Policy, roles: &RoleSet, cql: &str, ks: Option<&str>) -> Decision {
    let st = classify(cql, ks);
    p.authorize("alice", roles, &st, &mut DecisionCache::new(0))
}

fn roles_of(p: &Policy, groups: &[&str]) -> RoleSet {
    p.roles_for(&identity("alice", groups, &[]))
}

/// A policy where group `g` holds role `r` defined by `body`.
fn one_role(body: &str) -> (Policy, RoleSet) {
    let p = policy(&format!(
        "[roles.r]\n{body}\n[[bind]]\nrole = \"r\"\ngroup = \"g\"\n"
    ));
    let roles = roles_of(&p, &["g"]);
    assert_eq!(roles.to_string(), "r");
    (p, roles)
}

fn allowed(p: &Policy, roles: &RoleSet, cql: &str) -> bool {
    decide(p, roles, cql, Some("demo")).allowed
}

#[test]
fn grant_on_keyspace_covers_its_tables() {
    let (p, r) = one_role(r#"grant = [ { permissions = ["SELECT"], on = "KEYSPACE demo" } ]"#);
    let d = decide(&p, &r, "SELECT * FROM users", Some("demo"));
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.reason, "");
    assert_eq!(d.rule, "role r: grant SELECT on KEYSPACE demo (line 2)");
    assert!(!allowed(&p, &r, "SELECT * FROM other.users"));
    assert!(!allowed(&p, &r, "INSERT INTO users (id) VALUES (1)"));
}

#[test]
fn default_deny_is_worded_like_cassandra() {
    let (p, r) = one_role(r#"grant = [ { permissions = ["SELECT"], on = "KEYSPACE demo" } ]"#);
    let d = decide(&p, &r, "UPDATE users SET a = 1 WHERE id = 2", Some("demo"));
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        "User alice has no MODIFY permission on <table demo.users> or any of its parents"
    );
    assert_eq!(
        d.rule,
        "default deny: no grant of MODIFY on <table demo.users> or its parents"
    );
}

#[test]
fn no_roles_is_still_a_cassandra_denial() {
    let p = policy("");
    let none = p.roles_for(&identity("bob", &[], &[]));
    assert!(none.is_empty());
    assert_eq!(none.to_string(), "");
    let st = classify("SELECT * FROM demo.users", None);
    let d = p.authorize("bob", &none, &st, &mut DecisionCache::new(16));
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        "User bob has no SELECT permission on <table demo.users> or any of its parents"
    );
    let d = p.authorize("bob", &RoleSet::empty(), &st, &mut DecisionCache::new(16));
    assert!(!d.allowed);
}

#[test]
fn hierarchy_all_keyspaces_keyspace_table() {
    let (p, r) = one_role(r#"grant = [ { permissions = ["SELECT"], on = "ALL KEYSPACES" } ]"#);
    assert!(allowed(&p, &r, "SELECT * FROM any.thing"));
    let (p, r) = one_role(r#"grant = [ { permissions = ["SELECT"], on = "TABLE demo.users" } ]"#);
    assert!(allowed(&p, &r, "SELECT * FROM demo.users"));
    assert!(!allowed(&p, &r, "SELECT * FROM demo.orders"));
    // CREATE TABLE needs CREATE on the keyspace: a table grant is below it.
    let (p, r) = one_role(r#"grant = [ { permissions = ["ALL"], on = "TABLE demo.users" } ]"#);
    assert!(allowed(&p, &r, "DROP TABLE demo.users"));
    assert!(allowed(&p, &r, "ALTER TABLE demo.users ADD x int"));
    assert!(!allowed(&p, &r, "CREATE TABLE demo.t (k int PRIMARY KEY)"));
    let (p, r) = one_role(r#"grant = [ { permissions = ["CREATE"], on = "KEYSPACE demo" } ]"#);
    assert!(allowed(&p, &r, "CREATE TABLE demo.t (k int PRIMARY KEY)"));
    assert!(!allowed(
        &p,
        &r,
        "CREATE KEYSPACE x WITH replication = {'class': 'SimpleStrategy'}"
    ));
}

#[test]
fn permission_lists_and_all() {
    let (p, r) = one_role(
        r#"grant = [ { permissions = ["select", "Modify"], on = ["TABLE demo.a", "TABLE demo.b"] } ]"#,
    );
    for cql in ["SELECT * FROM a", "DELETE FROM b WHERE k = 1", "TRUNCATE a"] {
        assert!(allowed(&p, &r, cql), "{cql}");
    }
    assert!(!allowed(&p, &r, "SELECT * FROM c"));
    let d = decide(&p, &r, "SELECT * FROM b", Some("demo"));
    assert_eq!(
        d.rule,
        "role r: grant SELECT, MODIFY on TABLE demo.b (line 2)"
    );
    let (p, r) = one_role(r#"grant = [ { permissions = "ALL", on = "KEYSPACE demo" } ]"#);
    for cql in [
        "SELECT * FROM a",
        "INSERT INTO a (k) VALUES (1) IF NOT EXISTS",
        "CREATE TABLE t (k int PRIMARY KEY)",
        "ALTER TABLE t ADD v int",
        "DROP KEYSPACE demo",
        "CREATE INDEX ON t (v)",
    ] {
        assert!(allowed(&p, &r, cql), "{cql}");
    }
    assert_eq!(
        decide(&p, &r, "SELECT * FROM a", Some("demo")).rule,
        "role r: grant ALL on KEYSPACE demo (line 2)"
    );
}

#[test]
fn deny_overrides_allow() {
    let (p, r) = one_role(
        r#"grant = [ { permissions = ["SELECT", "MODIFY"], on = "KEYSPACE demo" } ]
deny = [ { permissions = ["MODIFY"], on = "TABLE demo.audit" } ]"#,
    );
    assert!(allowed(&p, &r, "INSERT INTO users (id) VALUES (1)"));
    assert!(allowed(&p, &r, "SELECT * FROM audit"));
    let d = decide(&p, &r, "INSERT INTO audit (id) VALUES (1)", Some("demo"));
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        "User alice has no MODIFY permission on <table demo.audit> or any of its parents"
    );
    assert_eq!(d.rule, "role r: deny MODIFY on TABLE demo.audit (line 3)");

    // A deny on a parent beats a grant on the child, and one role's deny beats another's
    // grant.
    let p = policy(
        r#"
[roles.a]
grant = [ { permissions = ["SELECT"], on = "TABLE secret.t" } ]
[roles.b]
deny = [ { permissions = ["SELECT"], on = "KEYSPACE secret" } ]
[[bind]]
roles = ["a", "b"]
principal = "alice"
"#,
    );
    let r = p.roles_for(&identity("alice", &[], &[]));
    assert_eq!(r.to_string(), "a,b");
    let d = decide(&p, &r, "SELECT * FROM secret.t", None);
    assert!(!d.allowed);
    assert_eq!(d.rule, "role b: deny SELECT on KEYSPACE secret (line 5)");
}

#[test]
fn patterns_in_names() {
    let (p, r) = one_role(
        r#"grant = [
    { permissions = ["MODIFY"], on = "TABLE demo.audit_*" },
    { permissions = ["SELECT"], on = "KEYSPACE tenant_*" },
    { permissions = ["SELECT"], on = "TABLE *.events" },
]"#,
    );
    assert!(allowed(&p, &r, "INSERT INTO audit_2024 (k) VALUES (1)"));
    assert!(!allowed(&p, &r, "INSERT INTO audit (k) VALUES (1)"));
    assert!(allowed(&p, &r, "SELECT * FROM tenant_a.x"));
    assert!(allowed(&p, &r, "SELECT * FROM tenant_.x"));
    assert!(!allowed(&p, &r, "SELECT * FROM tenant.x"));
    assert!(allowed(&p, &r, "SELECT * FROM anything.events"));
    assert!(!allowed(&p, &r, "SELECT * FROM anything.event"));
    // Names fold as CQL folds them: the statement's Audit_X is audit_x.
    assert!(allowed(&p, &r, "INSERT INTO Demo.Audit_X (k) VALUES (1)"));
    assert!(!allowed(
        &p,
        &r,
        "INSERT INTO demo.\"Audit_X\" (k) VALUES (1)"
    ));
}

#[test]
fn quoted_names_keep_their_case() {
    let (p, r) =
        one_role(r#"grant = [ { permissions = ["SELECT"], on = 'TABLE "Shop"."Orders"' } ]"#);
    assert!(allowed(&p, &r, "SELECT * FROM \"Shop\".\"Orders\""));
    assert!(!allowed(&p, &r, "SELECT * FROM Shop.Orders"));
}

#[test]
fn inheritance_is_transitive() {
    let p = policy(
        r#"
[roles.reader]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE demo" } ]
[roles.writer]
inherit = ["reader"]
grant = [ { permissions = ["MODIFY"], on = "TABLE demo.*" } ]
[roles.lead]
inherit = "writer"
grant = [ { permissions = ["DROP"], on = "TABLE demo.*" } ]
[roles.unused]
[[bind]]
role = "lead"
group = "leads"
[[bind]]
role = "reader"
group = "leads"
"#,
    );
    let r = roles_of(&p, &["leads"]);
    assert_eq!(r.to_string(), "lead,reader,writer");
    assert_eq!(r.len(), 3);
    assert!(r.contains("writer") && !r.contains("unused"));
    assert!(allowed(&p, &r, "SELECT * FROM t"));
    assert!(allowed(&p, &r, "DELETE FROM t WHERE k = 1"));
    assert!(allowed(&p, &r, "DROP TABLE t"));
    let writer_only = policy(
        r#"
[roles.reader]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE demo" } ]
[roles.writer]
inherit = ["reader"]
[[bind]]
role = "writer"
principal = "alice"
"#,
    );
    let r = writer_only.roles_for(&identity("alice", &[], &[]));
    assert_eq!(r.to_string(), "reader,writer");
    assert_eq!(
        writer_only.role_names().collect::<Vec<_>>(),
        ["reader", "writer"]
    );
}

#[test]
fn bindings_by_principal_group_attribute_and_source() {
    let p = policy(
        r#"
[roles.a]
[roles.b]
[roles.c]
[roles.d]
[roles.e]
[roles.f]
[[bind]]
role = "a"
principals = ["alice", "svc-*"]
[[bind]]
role = "b"
groups = ["etl", "ops-*"]
[[bind]]
role = "c"
attributes = { uri = "spiffe://example.org/ns/etl/*" }
[[bind]]
role = "d"
attributes = { iss = "https://idp.example.com/", EMAIL = ["*@example.com"] }
[[bind]]
role = "e"
source = "certificate"
[[bind]]
role = "f"
principal = "carol"
group = "admins"
"#,
    );
    let roles = |id: &Identity| p.roles_for(id).to_string();
    assert_eq!(roles(&identity("alice", &[], &[])), "a");
    assert_eq!(roles(&identity("svc-batch", &[], &[])), "a");
    assert_eq!(roles(&identity("Alice", &[], &[])), "");
    assert_eq!(roles(&identity("bob", &["x", "etl"], &[])), "b");
    assert_eq!(roles(&identity("bob", &["ops-eu"], &[])), "b");
    assert_eq!(roles(&identity("bob", &["etl2"], &[])), "");
    assert_eq!(
        roles(&identity(
            "w",
            &[],
            &[("uri", "spiffe://example.org/ns/etl/sa/loader")]
        )),
        "c"
    );
    assert_eq!(
        roles(&identity(
            "w",
            &[],
            &[("uri", "spiffe://example.org/ns/web/sa")]
        )),
        ""
    );
    // Every attribute of a binding must match.
    let both = [
        ("iss", "https://idp.example.com/"),
        ("email", "x@example.com"),
    ];
    assert_eq!(roles(&identity("x", &[], &both)), "d");
    assert_eq!(
        roles(&identity("x", &[], &[("iss", "https://idp.example.com/")])),
        ""
    );
    let mut cert = identity("x", &[], &[]);
    cert.source = Source::Certificate;
    assert_eq!(roles(&cert), "e");
    // Principal and group together: both must match.
    assert_eq!(roles(&identity("carol", &["admins"], &[])), "f");
    assert_eq!(roles(&identity("carol", &[], &[])), "");
    assert_eq!(roles(&identity("dave", &["admins"], &[])), "");
    // Several bindings add up.
    assert_eq!(roles(&identity("alice", &["etl"], &both)), "a,b,d");
}

#[test]
fn guardrails_refuse_features() {
    let p = policy(
        r#"
[roles.open]
grant = [ { permissions = ["ALL"], on = "KEYSPACE demo" } ]
[roles.strict]
inherit = ["open"]
guardrails = { allow_filtering = false, unlogged_batch = false, truncate = false, lwt = false }
[roles.relaxed]
inherit = ["open"]
guardrails = { allow_filtering = true, unlogged_batch = true, truncate = true, lwt = true }
[[bind]]
role = "strict"
group = "s"
[[bind]]
role = "relaxed"
group = "r"
"#,
    );
    let strict = roles_of(&p, &["s"]);
    let relaxed = roles_of(&p, &["r"]);
    let both = roles_of(&p, &["s", "r"]);
    let cases = [
        (
            "SELECT * FROM t WHERE v = 1 ALLOW FILTERING",
            "ALLOW FILTERING",
            "allow_filtering",
            6,
        ),
        (
            "BEGIN UNLOGGED BATCH INSERT INTO t (k) VALUES (1); APPLY BATCH",
            "UNLOGGED BATCH",
            "unlogged_batch",
            6,
        ),
        ("TRUNCATE t", "TRUNCATE", "truncate", 6),
        (
            "INSERT INTO t (k) VALUES (1) IF NOT EXISTS",
            "lightweight transactions (IF ...)",
            "lwt",
            6,
        ),
        (
            "UPDATE t SET v = 1 WHERE k = 1 IF v = 0",
            "lightweight transactions (IF ...)",
            "lwt",
            6,
        ),
        (
            "BEGIN BATCH UPDATE t SET v = 1 WHERE k = 1 IF EXISTS; APPLY BATCH",
            "lightweight transactions (IF ...)",
            "lwt",
            6,
        ),
    ];
    for (cql, feature, key, line) in cases {
        let d = decide(&p, &strict, cql, Some("demo"));
        assert!(!d.allowed, "{cql}");
        assert_eq!(
            d.reason,
            format!("User alice may not use {feature} (guardrail of role strict)")
        );
        assert_eq!(
            d.rule,
            format!("role strict: guardrail {key} = false (line {line})")
        );
        assert!(decide(&p, &relaxed, cql, Some("demo")).allowed, "{cql}");
        // Guardrails only restrict: another role's `true` does not lift them.
        assert!(!decide(&p, &both, cql, Some("demo")).allowed, "{cql}");
    }
    for cql in [
        "SELECT * FROM t WHERE k = 1",
        "BEGIN BATCH INSERT INTO t (k) VALUES (1); APPLY BATCH",
        "UPDATE t SET v = 1 WHERE k = 1",
    ] {
        assert!(decide(&p, &strict, cql, Some("demo")).allowed, "{cql}");
    }
}

#[test]
fn a_missing_permission_is_reported_before_a_guardrail() {
    let (p, r) = one_role(
        r#"grant = [ { permissions = ["SELECT"], on = "KEYSPACE demo" } ]
guardrails = { lwt = false }"#,
    );
    let d = decide(
        &p,
        &r,
        "INSERT INTO t (k) VALUES (1) IF NOT EXISTS",
        Some("demo"),
    );
    assert!(d.reason.contains("has no MODIFY permission"), "{d:?}");
}

#[test]
fn system_tables_are_readable_by_everyone() {
    let p = policy(
        r#"
[roles.nothing]
deny = [ { permissions = ["ALL"], on = "ALL KEYSPACES" } ]
[[bind]]
role = "nothing"
principal = "*"
"#,
    );
    for roles in [RoleSet::empty(), p.roles_for(&identity("x", &[], &[]))] {
        for cql in [
            "SELECT * FROM system.local WHERE key = 'local'",
            "SELECT peer, rpc_address FROM system.peers",
            "SELECT * FROM system.peers_v2",
            "SELECT * FROM system_schema.keyspaces",
            "SELECT * FROM system_schema.tables WHERE keyspace_name = 'demo'",
            "SELECT * FROM system_virtual_schema.tables",
            "USE system",
            "USE system_schema",
            "USE system_virtual_schema",
            "DESCRIBE TABLE system.local",
        ] {
            let d = decide(&p, &roles, cql, None);
            assert!(d.allowed, "{cql}: {d:?}");
        }
        let d = decide(&p, &roles, "SELECT * FROM system.local", None);
        assert_eq!(d.rule, "system table readable by every identity");
        let d = decide(&p, &roles, "USE system", None);
        assert_eq!(d.rule, "system keyspace visible to every identity");
        for cql in [
            "SELECT * FROM system.size_estimates",
            "SELECT * FROM system_auth.roles",
            "SELECT * FROM system_traces.sessions",
            "INSERT INTO system.local (key) VALUES ('x')",
            "DROP TABLE system_schema.tables",
            "USE system_auth",
        ] {
            assert!(!decide(&p, &roles, cql, None).allowed, "{cql}");
        }
    }
}

#[test]
fn use_and_describe_are_met_by_grants() {
    let (p, r) = one_role(r#"grant = [ { permissions = ["SELECT"], on = "TABLE demo.users" } ]"#);
    // USE: any grant inside the keyspace.
    let d = decide(&p, &r, "USE demo", None);
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.rule, "role r: grant SELECT on TABLE demo.users (line 2)");
    let d = decide(&p, &r, "USE other", None);
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        "User alice has no DESCRIBE permission on <keyspace other> or any of its parents"
    );
    assert_eq!(
        d.rule,
        "default deny: no grant on <keyspace other>, its parents or anything in it"
    );
    // DESCRIBE: a grant on the resource or a parent.
    assert!(allowed(&p, &r, "DESCRIBE TABLE demo.users"));
    assert!(!allowed(&p, &r, "DESCRIBE TABLE demo.orders"));
    assert!(!allowed(&p, &r, "DESCRIBE KEYSPACE demo"));
    assert!(!allowed(&p, &r, "DESCRIBE KEYSPACES"));

    let (p, r) = one_role(r#"grant = [ { permissions = ["MODIFY"], on = "KEYSPACE demo" } ]"#);
    assert!(allowed(&p, &r, "USE demo"));
    assert!(allowed(&p, &r, "DESCRIBE KEYSPACE demo"));
    assert!(allowed(&p, &r, "DESCRIBE TABLE demo.anything"));
    assert!(allowed(&p, &r, "DESCRIBE TABLES"));

    let (p, r) = one_role(r#"grant = [ { permissions = ["EXECUTE"], on = "FUNCTION demo.f" } ]"#);
    assert!(allowed(&p, &r, "USE demo"));
    assert!(allowed(&p, &r, "DESCRIBE FUNCTION demo.f"));

    let (p, r) = one_role(
        r#"grant = [ { permissions = ["SELECT"], on = "ALL KEYSPACES" } ]
deny = [ { permissions = ["DESCRIBE"], on = "KEYSPACE hidden" },
         { permissions = ["SELECT"], on = "KEYSPACE private" } ]"#,
    );
    assert!(allowed(&p, &r, "DESCRIBE KEYSPACES"));
    assert!(allowed(&p, &r, "USE demo"));
    assert!(!allowed(&p, &r, "USE hidden"));
    assert!(!allowed(&p, &r, "DESCRIBE TABLE hidden.t"));
    // A deny of another permission does not hide the keyspace.
    assert!(allowed(&p, &r, "USE private"));
    assert!(!allowed(&p, &r, "SELECT * FROM private.t"));
}

#[test]
fn functions_and_roles_resources() {
    let (p, r) = one_role(
        r#"grant = [
    { permissions = ["SELECT"], on = "KEYSPACE demo" },
    { permissions = ["EXECUTE"], on = "FUNCTION demo.fmt" },
    { permissions = ["DROP"], on = "FUNCTION demo.g(int)" },
    { permissions = ["CREATE"], on = "ALL FUNCTIONS IN KEYSPACE demo" },
]"#,
    );
    assert!(allowed(&p, &r, "SELECT fmt(name) FROM users"));
    let d = decide(&p, &r, "SELECT other(name) FROM users", Some("demo"));
    assert_eq!(
        d.reason,
        "User alice has no EXECUTE permission on <function demo.other> or any of its parents"
    );
    assert!(allowed(&p, &r, "DROP FUNCTION g(int)"));
    assert!(!allowed(&p, &r, "DROP FUNCTION g(text)"));
    // Without types: every overload, which a one-overload grant does not cover.
    assert!(!allowed(&p, &r, "DROP FUNCTION g"));
    assert!(allowed(
        &p,
        &r,
        "CREATE FUNCTION h(a int) RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java AS 'return a;'"
    ));

    let (p, r) = one_role(
        r#"grant = [ { permissions = ["DESCRIBE"], on = "ALL ROLES" },
         { permissions = ["AUTHORIZE"], on = "ROLE app_*" },
         { permissions = ["AUTHORIZE", "SELECT"], on = "KEYSPACE demo" } ]"#,
    );
    assert!(allowed(&p, &r, "LIST ROLES"));
    assert!(allowed(&p, &r, "GRANT app_reader TO bob"));
    assert!(!allowed(&p, &r, "GRANT admin TO bob"));
    assert!(allowed(&p, &r, "GRANT SELECT ON KEYSPACE demo TO bob"));
    assert!(!allowed(&p, &r, "GRANT MODIFY ON KEYSPACE demo TO bob"));
    assert!(!allowed(&p, &r, "CREATE ROLE carol"));
}

/// Roles for the LIST tests: `reader` (bound to group `g`) inherits `base` and may DESCRIBE
/// all roles; `plain` (group `p`) holds no grant on roles; `root` (group `dba`) is a superuser.
const LIST_POLICY: &str = r#"
[roles.base]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE demo" } ]
[roles.reader]
inherit = ["base"]
grant = [ { permissions = ["DESCRIBE"], on = "ALL ROLES" } ]
[roles.plain]
deny = [ { permissions = ["ALL"], on = "ALL ROLES" } ]
[roles.root]
superuser = true
[[bind]]
role = "reader"
group = "g"
[[bind]]
role = "plain"
group = "p"
[[bind]]
role = "root"
group = "dba"
"#;

/// Decides `cql` for `principal` holding the roles bound to `groups`, through `cache`.
fn decide_as(
    p: &Policy,
    principal: &str,
    groups: &[&str],
    cql: &str,
    cache: &mut DecisionCache,
) -> Decision {
    let roles = p.roles_for(&identity(principal, groups, &[]));
    p.authorize(principal, &roles, &classify(cql, None), cache)
}

#[test]
fn list_permissions_is_decided_as_cassandras_authorizer_does() {
    let p = policy(LIST_POLICY);
    let mut cache = DecisionCache::new(64);
    // Its own permissions, and those of every role it holds (inherited ones included).
    for (cql, rule) in [
        (
            "LIST ALL PERMISSIONS OF alice",
            "own permissions: alice is the identity's principal",
        ),
        (
            "LIST SELECT ON KEYSPACE demo OF reader NORECURSIVE",
            "own permissions: reader is a role of the identity",
        ),
        (
            "LIST ALL OF base",
            "own permissions: base is a role of the identity",
        ),
    ] {
        let d = decide_as(&p, "alice", &["g"], cql, &mut cache);
        assert!(d.allowed, "{cql}: {d:?}");
        assert_eq!(d.rule, rule);
    }
    // Another role's, or everyone's: not even DESCRIBE on all roles lets it.
    let d = decide_as(
        &p,
        "alice",
        &["g"],
        "LIST ALL PERMISSIONS OF bob",
        &mut cache,
    );
    assert!(!d.allowed);
    assert_eq!(d.reason, "You are not authorized to view bob's permissions");
    assert!(
        d.rule
            .starts_with("permissions of another role: bob is neither"),
        "{}",
        d.rule
    );
    let d = decide_as(&p, "alice", &["g"], "LIST ALL PERMISSIONS", &mut cache);
    assert_eq!(
        (d.allowed, d.reason.as_str()),
        (
            false,
            "You are not authorized to view everyone's permissions"
        )
    );
    assert_eq!(
        d.rule,
        "everyone's permissions: no role of the identity is a superuser"
    );
    // Role names compare exactly, as Cassandra's role names.
    let d = decide_as(&p, "alice", &["g"], "LIST ALL OF 'Alice'", &mut cache);
    assert_eq!(
        d.reason,
        "You are not authorized to view Alice's permissions"
    );
    // The decision depends on the principal: the cache must not carry it over to another
    // principal with the same roles.
    let d = decide_as(
        &p,
        "bob",
        &["g"],
        "LIST ALL PERMISSIONS OF alice",
        &mut cache,
    );
    assert_eq!(
        d.reason,
        "You are not authorized to view alice's permissions"
    );
    assert!(decide_as(&p, "bob", &["g"], "LIST ALL OF bob", &mut cache).allowed);
    // Deny rules on roles do not hide a role's own permissions (Cassandra has no such check).
    assert!(decide_as(&p, "carol", &["p"], "LIST ALL OF carol", &mut cache).allowed);
    assert!(decide_as(&p, "carol", &["p"], "LIST ALL OF plain", &mut cache).allowed);
    // No roles at all: still its own.
    assert!(decide_as(&p, "mallory", &[], "LIST ALL OF mallory", &mut cache).allowed);
    assert!(!decide_as(&p, "mallory", &[], "LIST ALL", &mut cache).allowed);
    // A superuser lists anyone's, and everyone's.
    for cql in [
        "LIST ALL PERMISSIONS",
        "LIST ALL OF bob",
        "LIST MODIFY ON demo.t",
    ] {
        let d = decide_as(&p, "root", &["dba"], cql, &mut cache);
        assert!(d.allowed, "{cql}: {d:?}");
        assert_eq!(d.rule, "role root: superuser (line 10)");
    }
}

#[test]
fn list_roles_of_itself_needs_no_grant() {
    let p = policy(LIST_POLICY);
    let mut cache = DecisionCache::new(64);
    // Cassandra lets any role list the roles granted to itself or to a role it holds.
    for (who, groups) in [("carol", &["p"][..]), ("mallory", &[][..])] {
        let d = decide_as(&p, who, groups, &format!("LIST ROLES OF {who}"), &mut cache);
        assert!(d.allowed, "{who}: {d:?}");
        assert_eq!(
            d.rule,
            format!("own roles: {who} is the identity's principal")
        );
    }
    let d = decide_as(
        &p,
        "carol",
        &["p"],
        "LIST ROLES OF plain NORECURSIVE",
        &mut cache,
    );
    assert_eq!(d.rule, "own roles: plain is a role of the identity");
    // Another role's, or all roles (which the proxy cannot narrow to the caller's own, as
    // Cassandra does): DESCRIBE on all roles, worded as Cassandra words each.
    let d = decide_as(&p, "carol", &["p"], "LIST ROLES OF bob", &mut cache);
    assert_eq!(
        (d.allowed, d.reason.as_str()),
        (false, "You are not authorized to view roles granted to bob")
    );
    assert_eq!(d.rule, "role plain: deny ALL on ALL ROLES (line 8)");
    let d = decide_as(&p, "mallory", &[], "LIST ROLES", &mut cache);
    assert_eq!(
        d.reason,
        "User mallory has no DESCRIBE permission on <all roles> or any of its parents"
    );
    let d = decide_as(&p, "mallory", &[], "LIST USERS", &mut cache);
    assert!(d
        .reason
        .contains("has no DESCRIBE permission on <all roles>"));
    let d = decide_as(&p, "mallory", &[], "LIST SUPERUSERS", &mut cache);
    assert_eq!(d.reason, "You are not authorized to view superuser details");
    for cql in [
        "LIST ROLES OF bob",
        "LIST ROLES",
        "LIST USERS",
        "LIST SUPERUSERS",
    ] {
        assert!(
            decide_as(&p, "alice", &["g"], cql, &mut cache).allowed,
            "{cql}"
        );
        assert!(
            decide_as(&p, "root", &["dba"], cql, &mut cache).allowed,
            "{cql}"
        );
    }
}

#[test]
fn explain_shows_who_decided_a_list() {
    let p = policy(LIST_POLICY);
    let roles = p.roles_for(&identity("alice", &["g"], &[]));
    let e = p.explain("alice", &roles, &classify("LIST ALL OF alice", None));
    assert!(e.decision.allowed);
    assert_eq!(
        e.needs,
        [NeedExplanation {
            need: "DESCRIBE <role alice>".into(),
            allowed: true,
            rule: "own permissions: alice is the identity's principal".into(),
        }]
    );
    let e = p.explain("alice", &roles, &classify("LIST ALL", None));
    assert!(!e.decision.allowed && !e.needs[0].allowed);
}

#[test]
fn superusers() {
    let p = policy(
        r#"
[roles.root]
superuser = true
deny = [ { permissions = ["SELECT"], on = "TABLE shop.payments" } ]
[roles.tables]
grant = [ { permissions = ["ALTER"], on = "KEYSPACE demo" } ]
[[bind]]
role = "root"
group = "dba"
[[bind]]
role = "tables"
group = "dev"
"#,
    );
    let root = roles_of(&p, &["dba"]);
    for cql in [
        "SELECT * FROM any.thing",
        "DROP KEYSPACE demo",
        "CREATE ROLE x WITH SUPERUSER = true AND LOGIN = true",
        "CREATE TRIGGER t ON demo.users USING 'x'",
        "LIST ROLES",
    ] {
        let d = decide(&p, &root, cql, None);
        assert!(d.allowed, "{cql}: {d:?}");
    }
    assert_eq!(
        decide(&p, &root, "DROP KEYSPACE demo", None).rule,
        "role root: superuser (line 3)"
    );
    assert!(!decide(&p, &root, "SELECT * FROM shop.payments", None).allowed);
    // Triggers are for superusers only, whatever the grants.
    let dev = roles_of(&p, &["dev"]);
    assert!(decide(&p, &dev, "ALTER TABLE demo.users ADD x int", None).allowed);
    let d = decide(&p, &dev, "CREATE TRIGGER t ON demo.users USING 'x'", None);
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        "Only superusers are allowed to perform CREATE TRIGGER queries"
    );
}

#[test]
fn unparsed_statements_are_denied() {
    let (p, r) = one_role(r#"grant = [ { permissions = ["ALL"], on = "ALL KEYSPACES" } ]"#);
    let d = decide(&p, &r, "SELECT * FROM t; DROP TABLE t", Some("demo"));
    assert!(!d.allowed);
    assert!(
        d.reason.starts_with("statement could not be parsed: ")
            && d.reason.contains("more than one statement"),
        "{}",
        d.reason
    );
    assert_eq!(d.rule, "unparsed statements are denied");
    assert!(!decide(&p, &r, "", None).allowed);
    assert!(!decide(&p, &r, "SELEC * FROM t", Some("demo")).allowed);
}

#[test]
fn batches_need_every_child() {
    let (p, r) = one_role(
        r#"grant = [ { permissions = ["MODIFY"], on = ["TABLE demo.a", "TABLE demo.b"] } ]"#,
    );
    let ok =
        "BEGIN BATCH INSERT INTO a (k) VALUES (1); UPDATE b SET v = 1 WHERE k = 1; APPLY BATCH";
    assert!(allowed(&p, &r, ok));
    let bad = "BEGIN BATCH INSERT INTO a (k) VALUES (1); DELETE FROM c WHERE k = 1; APPLY BATCH";
    let st = classify(bad, Some("demo"));
    let mut cache = DecisionCache::new(16);
    let d = p.authorize("alice", &r, &st, &mut cache);
    assert!(!d.allowed);
    assert!(d.reason.contains("<table demo.c>"));
    let per_child: Vec<bool> = st
        .children
        .iter()
        .map(|c| p.authorize("alice", &r, c, &mut cache).allowed)
        .collect();
    assert_eq!(per_child, [true, false]);
}

#[test]
fn an_allowance_cites_each_rule_once() {
    let (p, r) = one_role(
        r#"grant = [ { permissions = ["MODIFY"], on = "TABLE demo.*" },
         { permissions = ["SELECT"], on = "KEYSPACE demo" } ]"#,
    );
    let d = decide(
        &p,
        &r,
        "UPDATE t SET v = 1 WHERE k = 1 IF v = 0",
        Some("demo"),
    );
    assert!(d.allowed);
    assert_eq!(
        d.rule,
        "role r: grant MODIFY on TABLE demo.* (line 2); role r: grant SELECT on KEYSPACE demo (line 3)"
    );
    let d = decide(
        &p,
        &r,
        "BEGIN BATCH INSERT INTO a (k) VALUES (1); INSERT INTO b (k) VALUES (1); APPLY BATCH",
        Some("demo"),
    );
    assert_eq!(d.rule, "role r: grant MODIFY on TABLE demo.* (line 2)");
}

#[test]
fn explain_decides_every_need() {
    let (p, r) = one_role(r#"grant = [ { permissions = ["MODIFY"], on = "TABLE demo.*" } ]"#);
    let st = classify("UPDATE t SET v = 1 WHERE k = 1 IF v = 0", Some("demo"));
    let e = p.explain("alice", &r, &st);
    assert_eq!(e.needs.len(), 2);
    assert_eq!(e.needs[0].need, "MODIFY <table demo.t>");
    assert!(e.needs[0].allowed);
    assert_eq!(e.needs[1].need, "SELECT <table demo.t>");
    assert!(!e.needs[1].allowed);
    assert_eq!(
        e.needs[1].rule,
        "default deny: no grant of SELECT on <table demo.t> or its parents"
    );
    assert!(!e.decision.allowed);
}

// ---------------------------------------------------------------------------------------
// Parse errors

fn parse_error(text: &str) -> PolicyError {
    match Policy::parse(text) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e,
    }
}

#[test]
fn errors_name_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "[roles.r]\ngrant = [ { permissions = [\"SELEC\"], on = \"KEYSPACE demo\" } ]\n",
            2,
            "unknown permission \"SELEC\"",
        ),
        (
            "[roles.r]\ngrant = [\n  { permissions = [\"SELECT\"], on = \"KEYSPACE demo\" },\n  { permissions = [\"SELECT\"], on = \"TABLEX demo.t\" },\n]\n",
            4,
            "unknown resource \"TABLEX demo.t\"",
        ),
        (
            "[roles.r]\n\n[[bind]]\nrole = \"w\"\ngroup = \"g\"\n",
            4,
            "unknown role \"w\" in bind",
        ),
        (
            "[roles.r]\ninherit = [\"nobody\"]\n",
            2,
            "unknown role \"nobody\" in inherit",
        ),
        (
            "[roles.a]\ninherit = [\"b\"]\n[roles.b]\ninherit = [\"c\"]\n[roles.c]\ninherit = [\"a\"]\n",
            2,
            "inheritance cycle: a -> b -> c -> a",
        ),
        ("[roles.a]\ninherit = \"a\"\n", 2, "inheritance cycle: a -> a"),
        (
            "[roles.r]\ngrants = []\n",
            2,
            "unknown field `grants`",
        ),
        (
            "[roles.r]\ngrant = [ { permissions = [\"SELECT\"], on = \"KEYSPACE demo\", extra = 1 } ]\n",
            2,
            "unknown field `extra`",
        ),
        ("[roles.r]\nguardrails = { lwt = \"no\" }\n", 2, "invalid type"),
        ("[roles.r]\nguardrails = { joins = false }\n", 2, "unknown field `joins`"),
        ("[bind]\nrole = \"r\"\n", 1, "invalid type"),
        ("[roles.r\n", 1, ""),
        ("x = 1\n", 1, "unknown field `x`"),
        (
            "[roles.r]\ngrant = [ { permissions = [\"CREATE\"], on = \"TABLE demo.t\" } ]\n",
            2,
            "permission CREATE does not apply to TABLE demo.t",
        ),
        (
            "[roles.r]\ngrant = [ { permissions = [], on = \"TABLE demo.t\" } ]\n",
            2,
            "no permissions",
        ),
        (
            "[roles.r]\ngrant = [ { permissions = [\"SELECT\"] } ]\n",
            2,
            "missing field `on`",
        ),
        (
            "[roles.r]\n[[bind]]\nrole = \"r\"\n",
            2,
            "bind matches nobody",
        ),
        (
            "[roles.r]\n[[bind]]\nrole = \"r\"\nsource = \"kerberos\"\n",
            4,
            "unknown source \"kerberos\"",
        ),
        ("[roles.\"a b\"]\n", 1, "role name \"a b\""),
        (
            "[roles.r]\ngrant = [ { permissions = [\"SELECT\"], on = \"TABLE users\" } ]\n",
            2,
            "TABLE needs a keyspace",
        ),
        ("[roles.r]\nsuperuser = 1\n", 2, "invalid type"),
    ];
    for (text, line, want) in cases {
        let e = parse_error(text);
        assert_eq!(e.line, *line, "{text}: {e}");
        assert!(e.message.contains(want), "{text}: {e}");
        assert!(e.column >= 1);
    }
    let e = parse_error(
        "[roles.r]\ngrant = [ { permissions = [\"SELEC\"], on = \"KEYSPACE demo\" } ]\n",
    );
    assert_eq!(
        e.to_string(),
        "line 2, column 28: unknown permission \"SELEC\""
    );
}

#[test]
fn load_names_the_file() {
    let dir = std::env::temp_dir().join(format!("cql-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.toml");
    std::fs::write(
        &path,
        "# comment\n[roles.r]\ngrant = [ { permissions = [\"SELEC\"], on = \"KEYSPACE demo\" } ]\n",
    )
    .unwrap();
    let err = Policy::load(&path).unwrap_err();
    assert_eq!(
        err,
        format!(
            "\"{}\", line 3: unknown permission \"SELEC\"",
            path.display()
        )
    );
    std::fs::write(&path, "[roles.r]\n").unwrap();
    assert!(Policy::load(&path).is_ok());
    let missing = dir.join("missing.toml");
    assert_eq!(
        Policy::load(&missing).unwrap_err(),
        format!(
            "cannot read policy \"{}\": No such file or directory",
            missing.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn odd_input_never_panics() {
    for text in [
        "",
        "\u{0}",
        "[roles]",
        "roles = 1",
        "bind = {}",
        "[roles.r]\ngrant = \"x\"",
        "[roles.r]\ngrant = [ { permissions = \"ALL\", on = \"\" } ]",
        "[roles.r]\ngrant = [ { permissions = \"ALL\", on = [] } ]",
        "[roles.r]\ngrant = [ { permissions = \"ALL\", on = \"FUNCTION a.b(map<int>>)\" } ]",
        "[roles.r]\ngrant = [ { permissions = \"ALL\", on = \"KEYSPACE \\\"\" } ]",
        "[roles.r]\ninherit = []\n[[bind]]\nrole = []\ngroup = \"g\"",
        "[roles.r]\n[[bind]]\nrole = \"r\"\ngroup = []",
        "[roles.r]\n[[bind]]\nrole = \"r\"\nattributes = { \"\" = \"x\" }",
        "[roles.r]\n[[bind]]\nrole = \"r\"\nprincipal = \"\"",
        "[roles.é]",
    ] {
        let _ = Policy::parse(text);
    }
    let many: String = (0..300)
        .map(|i| format!("[roles.r{i}]\ninherit = [\"r{}\"]\n", i + 1))
        .collect::<String>()
        + "[roles.r300]\n";
    let p = policy(&many);
    assert_eq!(p.role_names().count(), 301);
}

// ---------------------------------------------------------------------------------------
// Cache

const CACHE_POLICY: &str = r#"
[roles.reader]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE demo" } ]
[roles.writer]
inherit = ["reader"]
grant = [ { permissions = ["MODIFY"], on = "TABLE demo.*" } ]
deny = [ { permissions = ["MODIFY"], on = "TABLE demo.audit" } ]
guardrails = { allow_filtering = false }
[[bind]]
role = "writer"
group = "w"
[[bind]]
role = "reader"
group = "r"
"#;

const STATEMENTS: &[&str] = &[
    "SELECT * FROM users",
    "SELECT * FROM demo.users WHERE x = 1 ALLOW FILTERING",
    "INSERT INTO users (k) VALUES (1)",
    "INSERT INTO audit (k) VALUES (1)",
    "UPDATE users SET v = 1 WHERE k = 1 IF EXISTS",
    "DELETE FROM other.t WHERE k = 1",
    "USE demo",
    "DESCRIBE KEYSPACE demo",
    "SELECT * FROM system.local",
    "TRUNCATE users",
    "DROP TABLE users",
    "BEGIN BATCH INSERT INTO a (k) VALUES (1); DELETE FROM audit WHERE k = 1; APPLY BATCH",
];

#[test]
fn cached_decisions_equal_uncached_ones() {
    let p = policy(CACHE_POLICY);
    let mut cache = DecisionCache::new(64);
    for groups in [&["w"][..], &["r"], &[], &["w", "r"]] {
        let roles = roles_of(&p, groups);
        for _ in 0..3 {
            for cql in STATEMENTS {
                let st = classify(cql, Some("demo"));
                let cached = p.authorize("alice", &roles, &st, &mut cache);
                let fresh = p.authorize("alice", &roles, &st, &mut DecisionCache::new(0));
                assert_eq!(cached, fresh, "{cql} for {roles}");
            }
        }
    }
    assert!(cache.hits() > 0 && cache.misses() > 0);
    assert!(cache.len() <= 64 && !cache.is_empty());
    assert_eq!(cache.capacity(), 64);
    let before = cache.len();
    cache.clear();
    assert!(before > 0 && cache.is_empty());
}

#[test]
fn cache_is_bounded_and_zero_caches_nothing() {
    let p = policy(CACHE_POLICY);
    let roles = roles_of(&p, &["w"]);
    let mut small = DecisionCache::new(2);
    let mut none = DecisionCache::new(0);
    for i in 0..10 {
        let text = format!("SELECT * FROM demo.t{i}");
        let st = classify(&text, None);
        assert!(p.authorize("alice", &roles, &st, &mut small).allowed);
        assert!(p.authorize("alice", &roles, &st, &mut none).allowed);
    }
    assert_eq!(small.len(), 2);
    assert_eq!(none.len(), 0);
    assert_eq!(none.capacity(), 0);
}

#[test]
fn generations_keep_policies_apart() {
    // The same role names, opposite decisions: a reload must never see the old entries.
    let old = policy(CACHE_POLICY);
    let new =
        policy(&CACHE_POLICY.replace(r#"on = "KEYSPACE demo" }"#, r#"on = "KEYSPACE other" }"#));
    assert_ne!(old.generation(), new.generation());
    let again = policy(CACHE_POLICY);
    assert_ne!(old.generation(), again.generation());

    let mut cache = DecisionCache::new(64);
    let old_roles = roles_of(&old, &["r"]);
    let st = classify("SELECT * FROM demo.users", None);
    assert!(old.authorize("alice", &old_roles, &st, &mut cache).allowed);
    assert_eq!(cache.len(), 1);
    // A role set kept across the reload is resolved by name against the new policy.
    assert!(!new.authorize("alice", &old_roles, &st, &mut cache).allowed);
    let new_roles = roles_of(&new, &["r"]);
    assert_eq!(new_roles, old_roles);
    assert_eq!(new_roles.id(), old_roles.id());
    assert!(!new.authorize("alice", &new_roles, &st, &mut cache).allowed);
    assert!(old.authorize("alice", &old_roles, &st, &mut cache).allowed);
    assert_eq!(cache.len(), 2);
}

#[test]
fn role_sets() {
    let p = policy(CACHE_POLICY);
    let a = roles_of(&p, &["w"]);
    let b = roles_of(&p, &["w", "r"]);
    let c = roles_of(&p, &["r"]);
    assert_eq!(a, b);
    assert_eq!(a.id(), b.id());
    assert_ne!(a, c);
    assert_ne!(a.id(), c.id());
    assert_eq!(a.names().collect::<Vec<_>>(), ["reader", "writer"]);
    assert_eq!(format!("{a:?}"), "[\"reader\", \"writer\"]");
    let copy = a.clone();
    assert!(copy.same_roles(&a));
    assert_eq!(RoleSet::empty(), roles_of(&p, &[]));
}

// ---------------------------------------------------------------------------------------
// The example policy

#[test]
fn example_policy() {
    let p = policy(include_str!("../../nginx-conf/policy.toml"));
    let analyst = p.roles_for(&identity("alice", &["analysts"], &[]));
    assert_eq!(analyst.to_string(), "shop_reader");
    let d = decide(
        &p,
        &analyst,
        "SELECT * FROM orders WHERE id = 1",
        Some("shop"),
    );
    assert!(d.allowed, "{d:?}");
    let d = decide(
        &p,
        &analyst,
        "SELECT * FROM orders WHERE x = 1 ALLOW FILTERING",
        Some("shop"),
    );
    assert!(!d.allowed);

    let app = p.roles_for(&identity("svc-shop", &["shop-app"], &[]));
    assert_eq!(app.to_string(), "shop_reader,shop_writer");
    assert!(decide(&p, &app, "INSERT INTO shop.orders (id) VALUES (1)", None).allowed);
    let d = decide(&p, &app, "INSERT INTO shop.audit_log (id) VALUES (1)", None);
    assert!(!d.allowed);
    assert!(
        d.rule
            .starts_with("role shop_writer: deny MODIFY on TABLE shop.audit_*"),
        "{}",
        d.rule
    );
    assert!(!decide(&p, &app, "TRUNCATE shop.orders", None).allowed);

    let mut etl = identity(
        "loader",
        &[],
        &[("uri", "spiffe://example.org/ns/etl/sa/loader")],
    );
    etl.source = Source::Certificate;
    let etl = p.roles_for(&etl);
    assert_eq!(etl.to_string(), "shop_reader,shop_writer,tenant_reader");
    assert!(decide(&p, &etl, "SELECT * FROM tenant_acme.events", None).allowed);

    let dba = p.roles_for(&identity(
        "root",
        &["dba"],
        &[("email", "root@example.com")],
    ));
    assert!(decide(&p, &dba, "DROP KEYSPACE shop", None).allowed);
    assert!(!decide(&p, &dba, "SELECT * FROM shop.payments", None).allowed);

    let nobody = p.roles_for(&identity("mallory", &["guests"], &[]));
    assert!(nobody.is_empty());
    assert!(decide(&p, &nobody, "SELECT * FROM system.local", None).allowed);
    assert!(!decide(&p, &nobody, "SELECT * FROM shop.orders", None).allowed);
}

// ---------------------------------------------------------------------------------------
// Request bounds: consistency levels, page size, batch and statement sizes

/// Wire codes of the consistency levels the tests use.
const ANY: u16 = 0x0000;
const ONE: u16 = 0x0001;
const QUORUM: u16 = 0x0004;
const ALL: u16 = 0x0005;
const LOCAL_QUORUM: u16 = 0x0006;
const SERIAL: u16 = 0x0008;
const LOCAL_ONE: u16 = 0x000A;

fn refusal(r: Result<(), GuardRefusal>) -> GuardRefusal {
    match r {
        Ok(()) => panic!("allowed"),
        Err(e) => e,
    }
}

#[test]
fn consistency_levels_are_bounded_per_direction() {
    let (p, r) = one_role(
        r#"guardrails = { read_consistency = ["one", "LOCAL_QUORUM", "Local_One"], write_consistency = ["LOCAL_QUORUM"] }"#,
    );
    let g = p.guards(&r);
    assert!(!g.is_empty());
    for level in [ONE, LOCAL_QUORUM, LOCAL_ONE] {
        assert_eq!(g.check_consistency(false, level), Ok(()), "{level}");
    }
    assert_eq!(g.check_consistency(true, LOCAL_QUORUM), Ok(()));
    let e = refusal(g.check_consistency(true, ALL));
    assert_eq!(e.guardrail, "write_consistency");
    assert_eq!(
        e.reason,
        "Guardrail write_consistency violated: ALL is not allowed for writes of role r \
         (allowed: LOCAL_QUORUM)"
    );
    assert_eq!(
        e.rule,
        "role r: guardrail write_consistency = [LOCAL_QUORUM] (line 2)"
    );
    // ONE is allowed for reads, not for writes.
    assert!(g.check_consistency(true, ONE).is_err());
    let e = refusal(g.check_consistency(false, QUORUM));
    assert_eq!(
        e.reason,
        "Guardrail read_consistency violated: QUORUM is not allowed for reads of role r \
         (allowed: ONE, LOCAL_QUORUM, LOCAL_ONE)"
    );
    assert_eq!(e.guardrail, "read_consistency");
    // A code that names no level is refused, never taken for another.
    let e = refusal(g.check_consistency(false, 0x000B));
    assert!(
        e.reason
            .contains("consistency level 0x000B is not allowed for reads"),
        "{e:?}"
    );
    assert!(g.check_consistency(false, 0xFFFF).is_err());
    assert!(g.check_consistency(false, 33).is_err());
}

#[test]
fn consistency_lists_may_be_one_level_and_repeat() {
    let (p, r) = one_role(r#"guardrails = { write_consistency = "quorum" }"#);
    let g = p.guards(&r);
    assert_eq!(g.check_consistency(true, QUORUM), Ok(()));
    assert!(g.check_consistency(true, ANY).is_err());
    // Reads are not bounded by a write list.
    assert_eq!(g.check_consistency(false, ANY), Ok(()));
    let (p, r) = one_role(r#"guardrails = { read_consistency = ["ONE", "one", "SERIAL"] }"#);
    let g = p.guards(&r);
    assert_eq!(g.check_consistency(false, SERIAL), Ok(()));
    assert_eq!(
        g.describe(),
        ["role r: guardrail read_consistency = [ONE, SERIAL] (line 2)"]
    );
}

#[test]
fn page_size_is_bounded_and_unpaged_reads_refused() {
    let (p, r) = one_role("guardrails = { max_page_size = 5000 }");
    let g = p.guards(&r);
    assert_eq!(g.check_page_size(Some(5000)), Ok(()));
    assert_eq!(g.check_page_size(Some(1)), Ok(()));
    let e = refusal(g.check_page_size(Some(5001)));
    assert_eq!(e.guardrail, "max_page_size");
    assert_eq!(
        e.reason,
        "Guardrail max_page_size violated: page size 5001 is above the limit 5000 of role r"
    );
    assert_eq!(e.rule, "role r: guardrail max_page_size = 5000 (line 2)");
    for unpaged in [None, Some(0), Some(-1), Some(i32::MIN)] {
        let e = refusal(g.check_page_size(unpaged));
        assert_eq!(
            e.reason,
            "Guardrail max_page_size violated: unpaged reads are not allowed for role r \
             (page size limit 5000)",
            "{unpaged:?}"
        );
    }
    assert!(g.check_page_size(Some(i32::MAX)).is_err());
    // Consistency is not bounded by a page size limit.
    assert_eq!(g.check_consistency(false, ALL), Ok(()));
}

#[test]
fn batch_and_statement_sizes_are_bounded() {
    let (p, r) = one_role(
        "guardrails = { max_batch_statements = 10, max_batch_bytes = 65536, max_statement_bytes = 10000 }",
    );
    let g = p.guards(&r);
    assert_eq!(g.check_batch(10, 65536), Ok(()));
    assert_eq!(g.check_batch(0, 0), Ok(()));
    let e = refusal(g.check_batch(12, 100));
    assert_eq!(e.guardrail, "max_batch_statements");
    assert_eq!(
        e.reason,
        "Guardrail max_batch_statements violated: a batch of 12 statements is above the \
         limit 10 of role r"
    );
    assert_eq!(
        e.rule,
        "role r: guardrail max_batch_statements = 10 (line 2)"
    );
    let e = refusal(g.check_batch(2, 65537));
    assert_eq!(e.guardrail, "max_batch_bytes");
    assert_eq!(
        e.reason,
        "Guardrail max_batch_bytes violated: a batch of 65537 bytes is above the limit 65536 \
         of role r"
    );
    // Both over: the count is named.
    assert_eq!(
        refusal(g.check_batch(11, 70000)).guardrail,
        "max_batch_statements"
    );
    assert_eq!(g.check_statement_size(10000), Ok(()));
    let e = refusal(g.check_statement_size(10001));
    assert_eq!(e.guardrail, "max_statement_bytes");
    assert_eq!(
        e.reason,
        "Guardrail max_statement_bytes violated: a statement of 10001 bytes is above the \
         limit 10000 of role r"
    );
    assert!(g.check_statement_size(usize::MAX).is_err());
    // What the role does not bound passes.
    assert_eq!(g.check_page_size(None), Ok(()));
    assert_eq!(g.check_consistency(true, ANY), Ok(()));
}

#[test]
fn no_bound_means_empty_guards_that_pass_everything() {
    let (p, r) = one_role(
        r#"grant = [ { permissions = ["SELECT"], on = "KEYSPACE demo" } ]
guardrails = { allow_filtering = false }"#,
    );
    let g = p.guards(&r);
    assert!(g.is_empty());
    assert!(g.describe().is_empty());
    assert!(p.guards(&RoleSet::empty()).is_empty());
    assert!(Guards::default().is_empty());
    assert_eq!(g.check_consistency(true, ALL), Ok(()));
    assert_eq!(g.check_page_size(None), Ok(()));
    assert_eq!(g.check_batch(usize::MAX, usize::MAX), Ok(()));
    assert_eq!(g.check_statement_size(usize::MAX), Ok(()));
    // The feature guardrails are still the statement's decision.
    assert_eq!(
        p.guardrail_rules(&r),
        ["role r: guardrail allow_filtering = false (line 3)"]
    );
}

/// Roles defined out of alphabetical order: `zeta` comes first in the file.
const SEVERAL: &str = r#"
[roles.zeta]
guardrails = { max_page_size = 1000, write_consistency = ["QUORUM", "LOCAL_QUORUM"] }
[roles.alpha]
guardrails = { max_page_size = 200, max_batch_statements = 5, write_consistency = ["LOCAL_QUORUM", "ALL"] }
[roles.mid]
inherit = ["base"]
[roles.base]
guardrails = { max_statement_bytes = 100 }
[roles.loose]
grant = [ { permissions = ["SELECT"], on = "ALL KEYSPACES" } ]
[[bind]]
roles = ["zeta", "alpha"]
group = "both"
[[bind]]
role = "alpha"
group = "a"
[[bind]]
role = "mid"
group = "m"
[[bind]]
role = "loose"
group = "l"
"#;

#[test]
fn several_roles_all_apply_and_the_first_in_policy_order_is_named() {
    let p = policy(SEVERAL);
    let both = roles_of(&p, &["both"]);
    assert_eq!(both.to_string(), "alpha,zeta");
    assert_eq!(
        p.roles_in_policy_order(&both).collect::<Vec<_>>(),
        ["zeta", "alpha"]
    );
    let g = p.guards(&both);
    // The most restrictive limit applies: alpha's 200.
    assert_eq!(g.check_page_size(Some(200)), Ok(()));
    let e = refusal(g.check_page_size(Some(500)));
    assert!(
        e.reason.ends_with("above the limit 200 of role alpha"),
        "{e:?}"
    );
    assert_eq!(e.rule, "role alpha: guardrail max_page_size = 200 (line 5)");
    // Both refuse: zeta comes first in the file.
    let e = refusal(g.check_page_size(Some(5000)));
    assert!(
        e.reason.ends_with("above the limit 1000 of role zeta"),
        "{e:?}"
    );
    let e = refusal(g.check_page_size(None));
    assert!(e.reason.contains("for role zeta"), "{e:?}");
    // Levels: only what every role allows.
    assert_eq!(g.check_consistency(true, LOCAL_QUORUM), Ok(()));
    let e = refusal(g.check_consistency(true, QUORUM));
    assert_eq!(
        e.reason,
        "Guardrail write_consistency violated: QUORUM is not allowed for writes of role \
         alpha (allowed: LOCAL_QUORUM, ALL)"
    );
    let e = refusal(g.check_consistency(true, ALL));
    assert!(e.reason.contains("of role zeta"), "{e:?}");
    let e = refusal(g.check_consistency(true, ONE));
    assert!(e.reason.contains("of role zeta"), "{e:?}");
    // A bound only one role sets still applies with the other role held.
    assert!(g.check_batch(6, 0).is_err());
    assert_eq!(
        g.describe(),
        [
            "role zeta: guardrail write_consistency = [QUORUM, LOCAL_QUORUM] (line 3)",
            "role zeta: guardrail max_page_size = 1000 (line 3)",
            "role alpha: guardrail write_consistency = [LOCAL_QUORUM, ALL] (line 5)",
            "role alpha: guardrail max_page_size = 200 (line 5)",
            "role alpha: guardrail max_batch_statements = 5 (line 5)",
        ]
    );
    // Another role's silence lifts nothing: loose with alpha is alpha's bounds.
    let alpha = roles_of(&p, &["a", "l"]);
    assert_eq!(alpha.to_string(), "alpha,loose");
    assert!(p.guards(&alpha).check_page_size(Some(201)).is_err());
    assert!(p.guards(&roles_of(&p, &["l"])).is_empty());
}

#[test]
fn inherited_roles_bring_their_bounds() {
    let p = policy(SEVERAL);
    let mid = roles_of(&p, &["m"]);
    assert_eq!(mid.to_string(), "base,mid");
    let g = p.guards(&mid);
    assert_eq!(g.check_statement_size(100), Ok(()));
    let e = refusal(g.check_statement_size(101));
    assert_eq!(
        e.reason,
        "Guardrail max_statement_bytes violated: a statement of 101 bytes is above the limit \
         100 of role base"
    );
    assert_eq!(
        e.rule,
        "role base: guardrail max_statement_bytes = 100 (line 9)"
    );
}

#[test]
fn bounds_leave_authorization_unchanged() {
    let p = policy(
        r#"
[roles.r]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE demo" } ]
guardrails = { allow_filtering = false, max_page_size = 10, max_statement_bytes = 5, read_consistency = ["ONE"] }
upstream_login = "svc_reader"
[[bind]]
role = "r"
group = "g"
"#,
    );
    let r = roles_of(&p, &["g"]);
    let d = decide(&p, &r, "SELECT * FROM users WHERE id = 1", Some("demo"));
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.rule, "role r: grant SELECT on KEYSPACE demo (line 3)");
    let d = decide(
        &p,
        &r,
        "SELECT * FROM users WHERE v = 1 ALLOW FILTERING",
        Some("demo"),
    );
    assert_eq!(
        d.reason,
        "User alice may not use ALLOW FILTERING (guardrail of role r)"
    );
    assert_eq!(d.rule, "role r: guardrail allow_filtering = false (line 4)");
    assert_eq!(
        p.guardrail_rules(&r),
        [
            "role r: guardrail allow_filtering = false (line 4)",
            "role r: guardrail read_consistency = [ONE] (line 4)",
            "role r: guardrail max_page_size = 10 (line 4)",
            "role r: guardrail max_statement_bytes = 5 (line 4)",
        ]
    );
}

#[test]
fn guards_follow_role_names_across_a_reload() {
    let old = policy(SEVERAL);
    let kept = roles_of(&old, &["both"]);
    let new = policy(
        "[roles.alpha]\nguardrails = { max_page_size = 50 }\n[roles.zeta]\n[[bind]]\nrole = \"alpha\"\ngroup = \"x\"\n",
    );
    let g = new.guards(&kept);
    assert_eq!(g.check_page_size(Some(50)), Ok(()));
    let e = refusal(g.check_page_size(Some(51)));
    assert!(e.reason.ends_with("limit 50 of role alpha"), "{e:?}");
    assert_eq!(g.check_consistency(true, ONE), Ok(()));
    assert_eq!(
        new.roles_in_policy_order(&kept).collect::<Vec<_>>(),
        ["alpha", "zeta"]
    );
}

#[test]
fn bound_errors_name_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "[roles.r]\nguardrails = { read_consistency = [\"ONE\", \"QUORM\"] }\n",
            2,
            "unknown consistency level \"QUORM\" in read_consistency (levels: ANY, ONE, TWO, \
             THREE, QUORUM, ALL, LOCAL_QUORUM, EACH_QUORUM, SERIAL, LOCAL_SERIAL, LOCAL_ONE)",
        ),
        (
            "[roles.r]\n\n[roles.r.guardrails]\nwrite_consistency = [\n  \"ONE\",\n  \"UNKNOWN\",\n]\n",
            6,
            "unknown consistency level \"UNKNOWN\" in write_consistency",
        ),
        (
            "[roles.r]\nguardrails = { write_consistency = [] }\n",
            2,
            "write_consistency lists no level",
        ),
        (
            "[roles.r]\nguardrails = { read_consistency = 1 }\n",
            2,
            "a string or an array of strings",
        ),
        (
            "[roles.r]\nguardrails = { max_page_size = 0 }\n",
            2,
            "max_page_size must be a positive integer, not 0",
        ),
        (
            "[roles.r]\nguardrails = { max_batch_statements = -3 }\n",
            2,
            "max_batch_statements must be a positive integer, not -3",
        ),
        (
            "[roles.r]\nguardrails = { max_batch_bytes = 0 }\n",
            2,
            "max_batch_bytes must be a positive integer, not 0",
        ),
        (
            "[roles.r]\n# note\nguardrails = { max_statement_bytes = -1 }\n",
            3,
            "max_statement_bytes must be a positive integer, not -1",
        ),
        (
            "[roles.r]\nguardrails = { max_page_size = \"5000\" }\n",
            2,
            "invalid type",
        ),
        (
            "[roles.r]\nguardrails = { max_page_size = 1.5 }\n",
            2,
            "invalid type",
        ),
        (
            "[roles.r]\nguardrails = { max_rows = 10 }\n",
            2,
            "unknown field `max_rows`",
        ),
        (
            "[roles.r]\nupstream_login = \"\"\n",
            2,
            "upstream_login is empty",
        ),
        (
            "[roles.r]\nupstream_login = \"svc:x\"\n",
            2,
            "upstream_login \"svc:x\" may not hold ':' or control characters",
        ),
        (
            "[roles.r]\nupstream_login = \"svc\\nroot\"\n",
            2,
            "may not hold ':' or control characters",
        ),
        (
            "[roles.r]\nupstream_login = [\"a\"]\n",
            2,
            "invalid type",
        ),
    ];
    for (text, line, want) in cases {
        let e = parse_error(text);
        assert_eq!(e.line, *line, "{text}: {e}");
        assert!(e.message.contains(want), "{text}: {e}");
    }
}

#[test]
fn upstream_login_is_the_first_role_in_policy_order_that_names_one() {
    // A role that another of the identity's roles inherits gives way to it, wherever the
    // two stand in the file: a migrate role logs in as itself, not as the read role it
    // inherits.
    let tiers = policy(
        r#"
[roles.read]
upstream_login = "ci_read"
[roles.data]
inherit = ["read"]
upstream_login = "ci_data"
[roles.migrate]
inherit = ["data"]
upstream_login = "ci_migrate"
[[bind]]
role = "data"
group = "d"
[[bind]]
role = "migrate"
group = "m"
"#,
    );
    let tier = |groups: &[&str]| {
        tiers
            .upstream_login(&roles_of(&tiers, groups))
            .map(str::to_string)
    };
    assert_eq!(tier(&["d"]).as_deref(), Some("ci_data"));
    assert_eq!(tier(&["d", "m"]).as_deref(), Some("ci_migrate"));

    let p = policy(
        r#"
[roles.shop_writer]
inherit = ["shop_reader"]
upstream_login = "svc_shop_writer"
[roles.audit]
upstream_login = "svc_audit"
[roles.shop_reader]
upstream_login = "svc_shop_reader"
[roles.plain]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE demo" } ]
[roles.child]
inherit = ["audit"]
[[bind]]
role = "shop_writer"
group = "w"
[[bind]]
role = "shop_reader"
group = "r"
[[bind]]
role = "audit"
group = "a"
[[bind]]
role = "plain"
group = "p"
[[bind]]
role = "child"
group = "c"
"#,
    );
    let login = |groups: &[&str]| p.upstream_login(&roles_of(&p, groups)).map(str::to_string);
    assert_eq!(login(&["r"]).as_deref(), Some("svc_shop_reader"));
    // shop_writer (held, and inheriting shop_reader) comes first in the file.
    assert_eq!(login(&["w"]).as_deref(), Some("svc_shop_writer"));
    // audit comes before shop_reader in the file, though after it by name.
    assert_eq!(login(&["r", "a"]).as_deref(), Some("svc_audit"));
    assert_eq!(login(&["w", "a"]).as_deref(), Some("svc_shop_writer"));
    // A role naming no login takes the inherited role's.
    assert_eq!(login(&["c"]).as_deref(), Some("svc_audit"));
    assert_eq!(login(&["p", "r"]).as_deref(), Some("svc_shop_reader"));
    // None: the server's service login.
    assert_eq!(login(&["p"]), None);
    assert_eq!(p.upstream_login(&RoleSet::empty()), None);
    assert_eq!(
        p.upstream_logins().collect::<Vec<_>>(),
        [
            ("shop_writer", "svc_shop_writer"),
            ("audit", "svc_audit"),
            ("shop_reader", "svc_shop_reader"),
        ]
    );
    assert_eq!(policy("[roles.r]\n").upstream_logins().count(), 0);
}

#[test]
fn policy_order_is_the_file_order_of_role_tables() {
    // Inline tables, dotted keys and a role's sub-table defined after another role.
    let p = policy(
        r#"
roles.m = { upstream_login = "m" }
[roles.z]
upstream_login = "z"
[roles.b]
[roles.a]
upstream_login = "a"
[roles.b.guardrails]
max_page_size = 10
[[bind]]
roles = ["a", "b", "m", "z"]
principal = "*"
"#,
    );
    let all = p.roles_for(&identity("anyone", &[], &[]));
    assert_eq!(
        p.roles_in_policy_order(&all).collect::<Vec<_>>(),
        ["m", "z", "b", "a"]
    );
    assert_eq!(p.upstream_login(&all), Some("m"));
    assert_eq!(
        p.upstream_logins().map(|(r, _)| r).collect::<Vec<_>>(),
        ["m", "z", "a"]
    );
    assert_eq!(
        p.guards(&all).describe(),
        ["role b: guardrail max_page_size = 10 (line 9)"]
    );
}
