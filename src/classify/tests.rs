//! Unit tests: one or more per statement kind, plus the lexing rules that matter.

use super::*;

fn needs(text: &str, ks: Option<&str>) -> Vec<String> {
    let st = classify(text, ks);
    assert!(
        !st.is_unparsed(),
        "{text:?} did not classify: {:?}",
        st.unparsed
    );
    st.needs.iter().map(|n| n.to_string()).collect()
}

fn kind(text: &str, ks: Option<&str>) -> Kind {
    classify(text, ks).kind
}

fn reason(text: &str, ks: Option<&str>) -> String {
    let st = classify(text, ks);
    assert_eq!(st.kind, Kind::Unparsed, "{text:?} should not classify");
    assert!(st.needs.is_empty());
    st.unparsed.unwrap()
}

const DEMO: Option<&str> = Some("demo");

#[test]
fn select() {
    let st = classify("SELECT * FROM demo.users WHERE id = ?", None);
    assert_eq!(st.kind, Kind::Select);
    assert_eq!(st.operation, Operation::Select);
    assert_eq!(st.category, Category::Query);
    assert_eq!(st.keyspace.as_deref(), Some("demo"));
    assert_eq!(st.table.as_deref(), Some("users"));
    assert!(st.flags.contains(Flags::WHERE | Flags::BIND_MARKERS));
    assert_eq!(
        needs("select a from users", DEMO),
        ["SELECT <table demo.users>"]
    );
    let st = classify("SELECT JSON DISTINCT k FROM t ALLOW FILTERING", DEMO);
    assert!(st
        .flags
        .contains(Flags::JSON | Flags::DISTINCT | Flags::ALLOW_FILTERING));
    let st = classify("SELECT json, distinct FROM t", DEMO);
    assert!(!st.flags.contains(Flags::JSON) && !st.flags.contains(Flags::DISTINCT));
    assert_eq!(
        needs(
            "SELECT count(*), now(), token(k), f(a), ks2.g(b) FROM t",
            DEMO
        ),
        [
            "SELECT <table demo.t>",
            "EXECUTE <function demo.f>",
            "EXECUTE <function ks2.g>"
        ]
    );
    assert_eq!(
        needs(
            "SELECT system.now(), a.b FROM t WHERE k = intAsBlob(1)",
            DEMO
        ),
        ["SELECT <table demo.t>"]
    );
    assert!(reason("SELECT FROM t", DEMO).contains("selection"));
    assert!(reason("SELECT * FROM t", None).contains("No keyspace has been specified"));
}

#[test]
fn insert_update_delete() {
    let st = classify("INSERT INTO t (a, b) VALUES (1, 'x') USING TTL 10", DEMO);
    assert_eq!(st.kind, Kind::Insert);
    assert_eq!(st.operation.as_str(), "UPDATE");
    assert_eq!(st.category, Category::Dml);
    assert!(st.flags.contains(Flags::USING_TTL));
    assert_eq!(
        needs("INSERT INTO t (a) VALUES (1) IF NOT EXISTS", DEMO),
        ["MODIFY <table demo.t>", "SELECT <table demo.t>"]
    );
    let st = classify("INSERT INTO t JSON '{\"a\": 1}' DEFAULT UNSET", DEMO);
    assert!(st.flags.contains(Flags::JSON));
    assert_eq!(kind("UPDATE t SET a = 1 WHERE k = 1", DEMO), Kind::Update);
    let st = classify(
        "UPDATE t USING TIMESTAMP 5 SET a = f(1) WHERE k = 1 IF a = 2",
        DEMO,
    );
    assert!(st
        .flags
        .contains(Flags::USING_TIMESTAMP | Flags::CONDITIONAL));
    assert_eq!(
        st.needs.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        [
            "MODIFY <table demo.t>",
            "SELECT <table demo.t>",
            "EXECUTE <function demo.f>"
        ]
    );
    let st = classify(
        "DELETE a, m['k'] FROM ks.t USING TIMESTAMP 1 WHERE k = 1 IF EXISTS",
        None,
    );
    assert_eq!(st.kind, Kind::Delete);
    assert_eq!(st.operation, Operation::Delete);
    assert!(st
        .flags
        .contains(Flags::CONDITIONAL | Flags::USING_TIMESTAMP));
    assert!(reason("DELETE FROM t USING TTL 1 WHERE k = 1", DEMO).contains("TIMESTAMP"));
    assert!(reason("UPDATE t SET a = 1", DEMO).contains("WHERE"));
}

#[test]
fn batch() {
    let text = "BEGIN UNLOGGED BATCH USING TIMESTAMP 1 \
                INSERT INTO a (k) VALUES (1); UPDATE ks.b SET v = 1 WHERE k = 1 \
                DELETE FROM a WHERE k = 2 IF EXISTS; APPLY BATCH;";
    let st = classify(text, DEMO);
    assert_eq!(st.kind, Kind::Batch);
    assert_eq!(st.operation, Operation::Batch);
    assert_eq!(st.children.len(), 3);
    assert_eq!(st.children[1].kind, Kind::Update);
    assert!(st
        .flags
        .contains(Flags::UNLOGGED_BATCH | Flags::CONDITIONAL | Flags::USING_TIMESTAMP));
    assert_eq!(
        st.needs.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        [
            "MODIFY <table demo.a>",
            "MODIFY <table ks.b>",
            "SELECT <table demo.a>"
        ]
    );
    assert_eq!(st.keyspace, None);
    let st = classify(
        "BEGIN COUNTER BATCH UPDATE c SET n = n + 1 WHERE k = 1 APPLY BATCH",
        DEMO,
    );
    assert!(st.flags.contains(Flags::COUNTER_BATCH));
    assert_eq!(st.table.as_deref(), Some("c"));
    assert!(reason("BEGIN BATCH SELECT * FROM t APPLY BATCH", DEMO).contains("INSERT, UPDATE"));
    assert!(reason("BEGIN BATCH APPLY BATCH", DEMO).contains("empty batch"));
    assert!(reason("BEGIN BATCH INSERT INTO t (k) VALUES (1)", DEMO).contains("APPLY"));
}

#[test]
fn truncate_and_use() {
    assert_eq!(
        needs("TRUNCATE shop", Some("shop")),
        ["MODIFY <table shop.shop>"]
    );
    assert_eq!(needs("TRUNCATE TABLE ks.t", None), ["MODIFY <table ks.t>"]);
    let st = classify("TRUNCATE t", DEMO);
    assert_eq!(st.operation, Operation::Truncate);
    assert_eq!(st.category, Category::Ddl);
    let st = classify("USE \"MyKs\"", None);
    assert_eq!(st.kind, Kind::Use);
    assert_eq!(st.operation.as_str(), "USE_KEYSPACE");
    assert_eq!(st.keyspace.as_deref(), Some("MyKs"));
    assert_eq!(needs("use Shop;", None), ["DESCRIBE <keyspace shop>"]);
}

#[test]
fn keyspace_ddl() {
    assert_eq!(
        needs("CREATE KEYSPACE IF NOT EXISTS k WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}", None),
        ["CREATE <all keyspaces>"]
    );
    assert_eq!(
        kind("CREATE KEYSPACE k WITH durable_writes = true", None),
        Kind::CreateKeyspace
    );
    assert_eq!(
        needs("ALTER KEYSPACE k WITH durable_writes = false", None),
        ["ALTER <keyspace k>"]
    );
    assert_eq!(
        needs("DROP KEYSPACE IF EXISTS k", None),
        ["DROP <keyspace k>"]
    );
    let st = classify("DROP KEYSPACE k", None);
    assert_eq!(st.operation, Operation::DropKeyspace);
    assert_eq!(st.category, Category::Ddl);
}

#[test]
fn table_ddl() {
    let st = classify(
        "CREATE TABLE IF NOT EXISTS t (k int PRIMARY KEY, v text MASKED WITH mask_default()) WITH comment = 'x'",
        DEMO,
    );
    assert_eq!(st.kind, Kind::CreateTable);
    assert!(st.flags.contains(Flags::MASKING | Flags::IF_EXISTS));
    assert_eq!(st.needs[0].to_string(), "CREATE <keyspace demo>");
    assert_eq!(
        kind("CREATE COLUMNFAMILY t (k int PRIMARY KEY)", DEMO),
        Kind::CreateTable
    );
    assert_eq!(
        needs("ALTER TABLE t ADD v int", DEMO),
        ["ALTER <table demo.t>"]
    );
    let st = classify("ALTER TABLE t ALTER v DROP MASKED", DEMO);
    assert!(st.flags.contains(Flags::MASKING));
    assert_eq!(needs("DROP TABLE ks.t", None), ["DROP <table ks.t>"]);
}

#[test]
fn index_type_view_trigger() {
    assert_eq!(
        needs("CREATE INDEX ON t (v)", DEMO),
        ["ALTER <table demo.t>"]
    );
    assert_eq!(
        needs(
            "CREATE CUSTOM INDEX IF NOT EXISTS i ON ks.t (v) USING 'sai'",
            None
        ),
        ["ALTER <table ks.t>"]
    );
    assert_eq!(needs("DROP INDEX ks.i", None), ["ALTER <keyspace ks>"]);
    assert_eq!(kind("DROP INDEX i", DEMO), Kind::DropIndex);
    assert_eq!(
        needs("CREATE TYPE addr (street text)", DEMO),
        ["CREATE <keyspace demo>"]
    );
    assert_eq!(
        needs("ALTER TYPE ks.addr ADD zip int", None),
        ["ALTER <keyspace ks>"]
    );
    assert_eq!(
        needs("DROP TYPE IF EXISTS addr", DEMO),
        ["DROP <keyspace demo>"]
    );
    let st = classify(
        "CREATE MATERIALIZED VIEW v AS SELECT * FROM t WHERE a IS NOT NULL AND k IS NOT NULL PRIMARY KEY (a, k)",
        DEMO,
    );
    assert_eq!(st.kind, Kind::CreateMaterializedView);
    assert_eq!(st.operation.as_str(), "CREATE_VIEW");
    assert_eq!(st.table.as_deref(), Some("v"));
    assert_eq!(st.needs[0].to_string(), "ALTER <table demo.t>");
    assert!(reason(
        "CREATE MATERIALIZED VIEW a.v AS SELECT * FROM b.t PRIMARY KEY (k)",
        None
    )
    .contains("keyspace of its base table"));
    assert_eq!(
        needs("ALTER MATERIALIZED VIEW v WITH comment = ''", DEMO),
        ["ALTER <keyspace demo>"]
    );
    assert_eq!(
        needs("DROP MATERIALIZED VIEW ks.v", None),
        ["ALTER <keyspace ks>"]
    );
    let st = classify("CREATE TRIGGER tr ON t USING 'org.Example'", DEMO);
    assert_eq!(st.kind, Kind::CreateTrigger);
    assert!(st.flags.contains(Flags::SUPERUSER_ONLY));
    assert_eq!(kind("DROP TRIGGER tr ON ks.t", None), Kind::DropTrigger);
}

#[test]
fn functions_and_aggregates() {
    assert_eq!(
        needs("CREATE FUNCTION f(a int) RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java AS 'return a;'", DEMO),
        ["CREATE <all functions in demo>"]
    );
    assert_eq!(
        needs("CREATE OR REPLACE FUNCTION ks.f(a int, b frozen<list<text>>) CALLED ON NULL INPUT RETURNS int LANGUAGE java AS $$ return 1; $$", None),
        [
            "CREATE <all functions in ks>",
            "ALTER <function ks.f(int, frozen<list<text>>)>"
        ]
    );
    assert_eq!(
        needs("DROP FUNCTION ks.f(int)", None),
        ["DROP <function ks.f(int)>"]
    );
    assert_eq!(
        needs("DROP FUNCTION IF EXISTS f", DEMO),
        ["DROP <function demo.f>"]
    );
    assert_eq!(
        needs("CREATE AGGREGATE ks.avg2(int) SFUNC st STYPE tuple<int, bigint> FINALFUNC fin INITCOND (0, 0)", None),
        [
            "CREATE <all functions in ks>",
            "EXECUTE <function ks.st(tuple<int, bigint>, int)>",
            "EXECUTE <function ks.fin(tuple<int, bigint>)>"
        ]
    );
    assert_eq!(kind("DROP AGGREGATE ks.a(int)", None), Kind::DropAggregate);
}

#[test]
fn roles_and_users() {
    let st = classify(
        "CREATE ROLE alice WITH PASSWORD = 'x' AND LOGIN = true",
        None,
    );
    assert_eq!(st.kind, Kind::CreateRole);
    assert_eq!(st.category, Category::Dcl);
    assert_eq!(st.role.as_deref(), Some("alice"));
    assert_eq!(st.needs[0].to_string(), "CREATE <all roles>");
    assert!(!st.flags.contains(Flags::SUPERUSER_ONLY));
    let st = classify(
        "CREATE ROLE 'Bob' WITH SUPERUSER = true AND OPTIONS = {'a': 1}",
        None,
    );
    assert!(st.flags.contains(Flags::SUPERUSER_ONLY));
    assert_eq!(st.role.as_deref(), Some("Bob"));
    assert_eq!(
        needs("ALTER ROLE bob WITH LOGIN = false", None),
        ["ALTER <role bob>"]
    );
    assert_eq!(needs("DROP ROLE IF EXISTS bob", None), ["DROP <role bob>"]);
    let st = classify("CREATE USER carol WITH PASSWORD 'p' SUPERUSER", None);
    assert_eq!(st.kind, Kind::CreateUser);
    assert_eq!(st.operation, Operation::CreateRole);
    assert!(st.flags.contains(Flags::SUPERUSER_ONLY));
    assert_eq!(
        kind("ALTER USER carol WITH PASSWORD 'q'", None),
        Kind::AlterUser
    );
    assert_eq!(kind("DROP USER IF EXISTS carol", None), Kind::DropUser);
}

#[test]
fn grant_and_revoke() {
    assert_eq!(
        needs("GRANT SELECT ON demo.users TO reader", None),
        ["AUTHORIZE <table demo.users>", "SELECT <table demo.users>"]
    );
    let st = classify("GRANT ALL PERMISSIONS ON TABLE users TO admin", DEMO);
    assert_eq!(st.kind, Kind::GrantPermission);
    assert_eq!(st.operation, Operation::Grant);
    assert_eq!(st.role.as_deref(), Some("admin"));
    let perms: Vec<_> = st.needs.iter().map(|n| n.permission.as_str()).collect();
    assert_eq!(
        perms,
        [
            "AUTHORIZE",
            "ALTER",
            "DROP",
            "SELECT",
            "MODIFY",
            "UNMASK",
            "SELECT_MASKED"
        ]
    );
    assert_eq!(
        needs("REVOKE EXECUTE ON FUNCTION ks.f(int) FROM bob", None),
        [
            "AUTHORIZE <function ks.f(int)>",
            "EXECUTE <function ks.f(int)>"
        ]
    );
    assert_eq!(
        needs("GRANT CREATE ON ALL FUNCTIONS IN KEYSPACE ks TO bob", None),
        [
            "AUTHORIZE <all functions in ks>",
            "CREATE <all functions in ks>"
        ]
    );
    assert_eq!(
        needs("GRANT DESCRIBE ON ALL ROLES TO bob", None),
        ["AUTHORIZE <all roles>", "DESCRIBE <all roles>"]
    );
    assert!(reason("GRANT DESCRIBE ON KEYSPACE ks TO bob", None).contains("does not support"));
    let st = classify("GRANT reader TO alice", None);
    assert_eq!(st.kind, Kind::GrantRole);
    assert_eq!(st.needs[0].to_string(), "AUTHORIZE <role reader>");
    assert_eq!(st.role.as_deref(), Some("alice"));
    assert_eq!(kind("REVOKE reader FROM alice", None), Kind::RevokeRole);
    assert_eq!(
        needs("GRANT UNMASK, SELECT_MASKED ON KEYSPACE ks TO bob", None),
        [
            "AUTHORIZE <keyspace ks>",
            "UNMASK <keyspace ks>",
            "SELECT_MASKED <keyspace ks>"
        ]
    );
}

#[test]
fn lists_and_identities() {
    let st = classify("LIST ROLES OF alice NORECURSIVE", None);
    assert_eq!(st.kind, Kind::ListRoles);
    assert_eq!(st.role.as_deref(), Some("alice"));
    assert_eq!(st.needs[0].to_string(), "DESCRIBE <all roles>");
    assert_eq!(kind("LIST USERS", None), Kind::ListUsers);
    assert_eq!(kind("LIST SUPERUSERS", None), Kind::ListSuperusers);
    assert_eq!(needs("LIST USERS", None), ["DESCRIBE <all roles>"]);
    assert_eq!(needs("LIST SUPERUSERS", None), ["DESCRIBE <all roles>"]);
    let st = classify("LIST ALL PERMISSIONS ON ks.t OF bob", None);
    assert_eq!(st.kind, Kind::ListPermissions);
    assert_eq!(st.operation.as_str(), "LIST_PERMISSIONS");
    assert_eq!(st.table.as_deref(), Some("t"));
    assert_eq!(st.role.as_deref(), Some("bob"));
    assert_eq!(
        kind("LIST SELECT ON KEYSPACE ks", None),
        Kind::ListPermissions
    );
    // LIST PERMISSIONS names whose permissions it shows, not DESCRIBE on all roles: the
    // policy decides it as Cassandra's authorizer does (superuser, or the caller's own).
    for (text, need) in [
        ("LIST ALL PERMISSIONS OF bob", "DESCRIBE <role bob>"),
        ("LIST ALL OF 'Bob' NORECURSIVE", "DESCRIBE <role Bob>"),
        ("LIST SELECT ON ks.t OF \"Bob\"", "DESCRIBE <role Bob>"),
        ("LIST MODIFY, SELECT ON KEYSPACE ks", "DESCRIBE <all roles>"),
        ("LIST ALL PERMISSIONS", "DESCRIBE <all roles>"),
        ("LIST ALL", "DESCRIBE <all roles>"),
    ] {
        assert_eq!(needs(text, None), [need], "{text}");
    }
    let st = classify("ADD IDENTITY 'spiffe://x/y' TO ROLE alice", None);
    assert_eq!(st.kind, Kind::AddIdentity);
    assert_eq!(st.operation.as_str(), "CREATE_IDENTITY");
    assert_eq!(
        needs("DROP IDENTITY IF EXISTS 'spiffe://x/y'", None),
        ["DROP <all roles>"]
    );
}

#[test]
fn describe() {
    for (text, need) in [
        ("DESCRIBE KEYSPACES", "DESCRIBE <all keyspaces>"),
        ("DESC FULL SCHEMA", "DESCRIBE <all keyspaces>"),
        ("DESCRIBE CLUSTER", "DESCRIBE <all keyspaces>"),
        ("DESCRIBE KEYSPACE", "DESCRIBE <keyspace demo>"),
        (
            "DESCRIBE ONLY KEYSPACE ks WITH INTERNALS",
            "DESCRIBE <keyspace ks>",
        ),
        ("DESCRIBE TABLES", "DESCRIBE <keyspace demo>"),
        ("DESCRIBE TABLE t", "DESCRIBE <table demo.t>"),
        ("DESCRIBE MATERIALIZED VIEW ks.v", "DESCRIBE <table ks.v>"),
        ("DESCRIBE INDEX ks.i", "DESCRIBE <keyspace ks>"),
        ("DESCRIBE TYPE ks.addr", "DESCRIBE <keyspace ks>"),
        ("DESCRIBE FUNCTIONS", "DESCRIBE <all functions in demo>"),
        ("DESCRIBE AGGREGATE ks.a", "DESCRIBE <function ks.a>"),
        ("DESC ks.t", "DESCRIBE <table ks.t>"),
    ] {
        assert_eq!(
            needs(text, DEMO).first().map(String::as_str),
            Some(need),
            "{text}"
        );
        assert_eq!(kind(text, DEMO), Kind::Describe);
    }
    assert_eq!(
        needs("DESCRIBE x", DEMO),
        ["DESCRIBE <keyspace x>", "DESCRIBE <table demo.x>"]
    );
    assert_eq!(needs("DESCRIBE TYPES", None), ["DESCRIBE <all keyspaces>"]);
    let st = classify("DESCRIBE KEYSPACE ks WITH INTERNALS", None);
    assert!(st.flags.contains(Flags::INTERNALS));
    assert_eq!(st.operation, Operation::Describe);
    assert_eq!(st.category, Category::Other);
    assert!(reason("DESCRIBE KEYSPACE", None).contains("No keyspace"));
}

#[test]
fn lexing_rules() {
    let st = classify("SELECT * FROM ks.t -- ; DROP TABLE x\n", None);
    assert_eq!(st.kind, Kind::Select);
    assert_eq!(
        classify("-- x\rDELETE FROM ks.t WHERE k = 1", None).kind,
        Kind::Delete
    );
    for text in [
        "SELECT * FROM shop . users",
        "SELECT * FROM shop/**/./**/users",
    ] {
        assert_eq!(needs(text, None), ["SELECT <table shop.users>"]);
    }
    let st = classify("SELECT * FROM Quoted_KS.Orders", None);
    assert_eq!(st.keyspace.as_deref(), Some("quoted_ks"));
    assert_eq!(st.table.as_deref(), Some("orders"));
    let st = classify(r#"SELECT * FROM "My.Ks"."a""b""#, None);
    assert_eq!(st.keyspace.as_deref(), Some("My.Ks"));
    assert_eq!(st.table.as_deref(), Some("a\"b"));
    assert_eq!(
        classify("INSERT INTO t (a) VALUES ('x; DROP TABLE t; --')", DEMO).kind,
        Kind::Insert
    );
    assert!(reason("SELECT * FROM t; DROP TABLE t", DEMO).contains("more than one statement"));
    assert!(reason("SELECT * FROM t;;", DEMO).contains("more than one statement"));
    assert!(reason("SELECT * FROM t /* open", DEMO).contains("comment"));
    assert!(reason("SELECT * FROM t -- open", DEMO).contains("comment"));
    assert!(reason("", None).contains("empty"));
    assert!(reason("  -- nothing\n", None).contains("empty"));
    assert!(reason("SELECT * FROM select", DEMO).contains("a name"));
    assert_eq!(
        needs("SELECT key, type, ttl, writetime, count FROM key", DEMO),
        ["SELECT <table demo.key>"]
    );
}

#[test]
fn line_comments_need_a_line_end() {
    // Cassandra's Lexer.g: COMMENT: ('--' | '//') .* ('\n'|'\r').
    for text in [
        "SELECT * FROM ks.t -- x\n",
        "SELECT * FROM ks.t // x\r",
        "SELECT * FROM ks.t --\r\n",
        "SELECT * FROM ks.t -- x\nWHERE k = 1 -- y\n",
    ] {
        assert!(!classify(text, None).is_unparsed(), "{text:?}");
    }
    for (text, at) in [
        ("SELECT * FROM ks.t -- ; DROP TABLE x", "line 1:19 "),
        ("SELECT * FROM ks.t // x", "line 1:19 "),
        ("SELECT * FROM ks.t --", "line 1:19 "),
        ("SELECT * FROM ks.t;--", "line 1:19 "),
        ("-- only a comment", "line 1:0 "),
        ("SELECT *\nFROM ks.t -- x", "line 2:10 "),
        (
            "UPDATE ks.t SET v = 1 WHERE k = 1 -- IF EXISTS",
            "line 1:34 ",
        ),
    ] {
        let st = classify(text, None);
        let want = format!("{at}{}", lexer::COMMENT_WITHOUT_LINE_END);
        assert_eq!(st.syntax_error(), Some(want.as_str()), "{text:?}");
        assert!(st.needs.is_empty());
    }
    // A /* comment must be closed too.
    assert_eq!(
        classify("SELECT * FROM ks.t /* x", None).syntax_error(),
        Some("line 1:19 unterminated /* comment")
    );
    assert!(!classify("SELECT * FROM ks.t /* x */", None).is_unparsed());
}

#[test]
fn rejections_say_how_cassandra_answers() {
    // Syntax errors: Cassandra's SyntaxException, with ANTLR's `line L:C` (column from 0).
    for (text, ks, reason) in [
        ("SELEKT * FROM t", DEMO, "line 1:0 no viable alternative at input 'SELEKT'"),
        ("  select * FORM t", DEMO, "line 1:17 mismatched input '<EOF>' expecting FROM"),
        (
            "SELECT *\n  FROM",
            DEMO,
            "line 2:6 mismatched input '<EOF>' expecting a name",
        ),
        (
            "SELECT * FROM 'users'",
            DEMO,
            "line 1:14 mismatched input '<string literal>' expecting a name",
        ),
        (
            "SELECT * FROM t; DROP TABLE t",
            DEMO,
            "line 1:17 mismatched input 'DROP' expecting <EOF> (more than one statement in one text)",
        ),
        ("", None, "line 1:0 empty statement"),
        ("SELECT * FROM t WHERE a = #", DEMO, "line 1:26 no viable alternative at character '#'"),
        ("SELECT 'é' FROM t WHERE a = #", DEMO, "line 1:28 no viable alternative at character '#'"),
        ("SELECT * FROM t WHERE a = 'open", DEMO, "line 1:26 unterminated string literal"),
        (
            "GRANT EXECUTE ON KEYSPACE ks TO bob",
            None,
            "Resource type DataResource does not support the requested permissions: EXECUTE",
        ),
        (
            "ADD IDENTITY spiffe TO ROLE r",
            None,
            "line 1:13 mismatched input 'spiffe' expecting the identity as a string",
        ),
    ] {
        let st = classify(text, ks);
        assert_eq!(st.rejection, Some(Rejection::Syntax), "{text:?}");
        assert_eq!(st.syntax_error(), Some(reason), "{text:?}");
        assert_eq!(st.unparsed.as_deref(), Some(reason));
        assert_eq!(st.invalid_request(), None);
    }
    // Invalid requests: Cassandra's InvalidRequest, its sentence, no position.
    for (text, reason) in [
        ("SELECT * FROM t", parser::NO_KEYSPACE),
        (
            "SELECT f(a) FROM ks.t",
            "function f is not a native function, and no keyspace has been specified",
        ),
    ] {
        let st = classify(text, None);
        assert_eq!(st.rejection, Some(Rejection::Invalid), "{text:?}");
        assert_eq!(st.invalid_request(), Some(reason));
        assert_eq!(st.syntax_error(), None);
    }
    // What the classifier does not decide: neither (the policy denies it).
    let st = classify("BEGIN BATCH APPLY BATCH", DEMO);
    assert_eq!(st.rejection, Some(Rejection::Unsupported));
    assert_eq!((st.syntax_error(), st.invalid_request()), (None, None));
    assert!(st.unparsed.unwrap().contains("empty batch"));
    // A classified statement has no rejection.
    let st = classify("SELECT * FROM t", DEMO);
    assert_eq!((st.rejection, st.syntax_error()), (None, None));
    // Owned copies keep it.
    let st = classify("SELEKT", None).into_owned();
    assert_eq!(
        st.syntax_error(),
        Some("line 1:0 no viable alternative at input 'SELEKT'")
    );
}

#[test]
fn into_owned_outlives_the_text() {
    let owned = {
        let text = String::from("BEGIN BATCH UPDATE t SET v = 1 WHERE k = 1 APPLY BATCH");
        classify(&text, Some("demo")).into_owned()
    };
    assert_eq!(owned.needs[0].to_string(), "MODIFY <table demo.t>");
    assert_eq!(owned.children[0].table.as_deref(), Some("t"));
}

#[test]
fn borrows_when_it_can() {
    use std::borrow::Cow;
    let st = classify("SELECT * FROM users WHERE k = 1", Some("demo"));
    assert!(matches!(st.keyspace, Some(Cow::Borrowed(_))));
    assert!(matches!(st.table, Some(Cow::Borrowed(_))));
    let st = classify("SELECT * FROM Users", Some("demo"));
    assert!(matches!(st.table, Some(Cow::Owned(_))));
}

#[test]
fn never_panics_on_odd_input() {
    let deep = "(".repeat(10_000);
    let texts = [
        "SELECT",
        "SELECT * FROM",
        "SELECT * FROM ks.",
        "SELECT ((((",
        ")))",
        "INSERT INTO t (",
        "UPDATE t SET a = [1, {2: (3",
        "GRANT",
        "GRANT ALL ON",
        "LIST",
        "DESCRIBE",
        "BEGIN BATCH",
        "CREATE AGGREGATE a(",
        "CREATE FUNCTION f(a frozen<",
        "\"",
        "'",
        "$$",
        "/*",
        "\u{0}",
        "SELECT \u{1F600} FROM t",
        deep.as_str(),
    ];
    for t in texts {
        assert!(classify(t, DEMO).is_unparsed(), "{t:?}");
    }
    let deep_type = format!(
        "DROP FUNCTION f({}int{})",
        "list<".repeat(500),
        ">".repeat(500)
    );
    assert!(classify(&deep_type, DEMO).is_unparsed());
}

#[test]
fn every_kind_has_an_audit_name() {
    for k in Kind::ALL {
        assert!(!k.operation().as_str().is_empty());
        assert!(!k.name().is_empty());
    }
}

#[test]
fn large_inputs_stay_linear() {
    use std::time::Instant;
    let mut text = String::from("BEGIN UNLOGGED BATCH ");
    for i in 0..20_000 {
        text.push_str(&format!("INSERT INTO ks.t{i} (k) VALUES ({i}); "));
    }
    text.push_str("APPLY BATCH");
    let start = Instant::now();
    let st = classify(&text, None);
    assert_eq!(
        st.kind,
        Kind::Unparsed,
        "more than MAX_BATCH_NEEDS distinct tables"
    );
    let mut text = String::from("BEGIN BATCH ");
    for i in 0..20_000 {
        text.push_str(&format!(
            "UPDATE ks.t SET v = ks.f{}(1) WHERE k = {i}; ",
            i % 50
        ));
    }
    text.push_str("APPLY BATCH");
    let st = classify(&text, None);
    assert_eq!(st.kind, Kind::Batch);
    assert_eq!(st.children.len(), 20_000);
    assert_eq!(st.needs.len(), 51);
    let calls: Vec<String> = (0..100).map(|i| format!("ks.f{i}(a)")).collect();
    let text = format!("SELECT {} FROM ks.t", calls.join(", "));
    assert!(classify(&text, None)
        .unparsed
        .unwrap()
        .contains("distinct functions"));
    let text = format!("SELECT {}a FROM ks.t", "a + ".repeat(50_000));
    assert_eq!(classify(&text, None).kind, Kind::Select);
    assert!(start.elapsed().as_secs() < 5, "took {:?}", start.elapsed());
}
