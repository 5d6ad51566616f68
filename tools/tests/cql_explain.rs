//! `cql-explain` as operators run it, on the example policy `nginx-conf/policy.toml`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn example_policy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../nginx-conf/policy.toml")
}

fn explain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cql-explain"))
        .args(args)
        .output()
        .expect("cql-explain runs")
}

fn with_policy(args: &[&str]) -> Output {
    let policy = example_policy();
    let mut all = vec!["--policy", policy.to_str().unwrap()];
    all.extend_from_slice(args);
    explain(&all)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn allowed_statement_exits_0_with_roles_and_rule() {
    let o = with_policy(&[
        "--principal",
        "bob",
        "--group",
        "analysts",
        "--keyspace",
        "shop",
        "SELECT * FROM orders WHERE id = 1",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("roles:      shop_reader\n"), "{out}");
    assert!(out.contains("ALLOW  SELECT <table shop.orders>"), "{out}");
    assert!(
        out.contains("by role shop_reader: grant SELECT on KEYSPACE shop (line "),
        "{out}"
    );
    assert!(out.contains("decision:   ALLOW\n"), "{out}");
}

#[test]
fn denied_statement_exits_1_with_cassandra_reason() {
    let o = with_policy(&[
        "--principal",
        "bob",
        "--group",
        "analysts",
        "DELETE FROM shop.orders WHERE id = 1",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(out.contains("DENY   MODIFY <table shop.orders>"), "{out}");
    assert!(
        out.contains(
            "reason:     User bob has no MODIFY permission on <table shop.orders> or any of its parents"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "rule:       default deny: no grant of MODIFY on <table shop.orders> or its parents"
        ),
        "{out}"
    );
}

#[test]
fn deny_rules_and_guardrails_are_named() {
    let o = with_policy(&[
        "--principal",
        "svc-shop",
        "--group",
        "shop-app",
        "INSERT INTO shop.audit_log (id) VALUES (1)",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("rule:       role shop_writer: deny MODIFY on TABLE shop.audit_* (line "),
        "{out}"
    );
    let o = with_policy(&[
        "--principal",
        "bob",
        "--group",
        "analysts",
        "SELECT * FROM shop.orders WHERE total > 10 ALLOW FILTERING",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("flags ALLOW_FILTERING"), "{out}");
    assert!(
        out.contains(
            "reason:     User bob may not use ALLOW FILTERING (guardrail of role shop_reader)"
        ),
        "{out}"
    );
}

#[test]
fn claims_and_attributes_bind_roles() {
    let o = with_policy(&[
        "--claims",
        r#"{"sub":"alice","groups":["dba"],"email":"alice@example.com","iss":"https://idp.example.com/"}"#,
        "DROP KEYSPACE shop",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("principal:  alice (token)"), "{out}");
    assert!(out.contains("attribute:  email=alice@example.com"), "{out}");
    assert!(out.contains("roles:      dba\n"), "{out}");
    assert!(out.contains("by role dba: superuser (line "), "{out}");

    let o = with_policy(&[
        "--principal",
        "loader",
        "--source",
        "certificate",
        "--attr",
        "uri=spiffe://example.org/ns/etl/sa/loader",
        "SELECT * FROM tenant_acme.events",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(
        out.contains("roles:      shop_reader, shop_writer, tenant_reader\n"),
        "{out}"
    );
}

#[test]
fn batches_show_every_child() {
    let o = with_policy(&[
        "--principal",
        "svc-shop",
        "--group",
        "shop-app",
        "BEGIN BATCH INSERT INTO shop.orders (id) VALUES (1); \
         INSERT INTO shop.audit_log (id) VALUES (1); APPLY BATCH",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("child 1:\n"), "{out}");
    assert!(out.contains("child 2:\n"), "{out}");
    let child1 = &out[out.find("child 1:").unwrap()..out.find("child 2:").unwrap()];
    assert!(child1.contains("decision:   ALLOW"), "{child1}");
    let child2 = &out[out.find("child 2:").unwrap()..];
    assert!(child2.contains("decision:   DENY"), "{child2}");
}

#[test]
fn nobody_still_reads_system_tables() {
    let o = with_policy(&["--principal", "mallory", "SELECT * FROM system.local"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("roles:      (none)"), "{out}");
    assert!(
        out.contains("by system table readable by every identity"),
        "{out}"
    );
    let o = with_policy(&["--principal", "mallory", "SELEC * FROM t"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("reason:     statement could not be parsed: "),
        "{out}"
    );
    assert!(
        out.contains("unparsed:   line 1:0 no viable alternative at input 'SELEC'\n"),
        "{out}"
    );
    assert!(
        out.contains("rejection:  syntax (Cassandra answers SyntaxException)\n"),
        "{out}"
    );
}

#[test]
fn line_comments_need_their_line_end() {
    // The statement is taken as given: the newline ends the comment.
    let o = with_policy(&[
        "--principal",
        "mallory",
        "SELECT * FROM system.local -- x\n",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = with_policy(&["--principal", "mallory", "SELECT * FROM system.local -- x"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "unparsed:   line 1:27 comment runs to the end of the statement without a line end"
        ),
        "{out}"
    );
}

#[test]
fn list_permissions_of_oneself_is_allowed() {
    let o = with_policy(&["--principal", "mallory", "LIST ALL PERMISSIONS OF mallory"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("ALLOW  DESCRIBE <role mallory>"), "{out}");
    assert!(
        out.contains("by own permissions: mallory is the identity's principal"),
        "{out}"
    );
    let o = with_policy(&["--principal", "mallory", "LIST ALL PERMISSIONS OF bob"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("reason:     You are not authorized to view bob's permissions"),
        "{out}"
    );
}

#[test]
fn usage_and_policy_errors_exit_2() {
    let o = explain(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("usage: cql-explain --policy FILE"));

    let o = explain(&["SELECT 1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--policy FILE is required"),
        "{}",
        stderr(&o)
    );

    let o = with_policy(&["--principal", "a"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no statement given"));

    let o = with_policy(&["--bogus", "x", "SELECT * FROM t"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown option --bogus"));

    let o = with_policy(&["--claims", "{", "SELECT * FROM t"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--claims is not JSON"));

    let o = with_policy(&["SELECT * FROM t"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no principal"));

    let o = explain(&[
        "--policy",
        "/nonexistent/policy.toml",
        "--principal",
        "a",
        "SELECT 1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o)
            .contains("cannot read policy \"/nonexistent/policy.toml\": No such file or directory"),
        "{}",
        stderr(&o)
    );

    let dir = std::env::temp_dir().join(format!("cql-explain-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[roles.r]\n\ngrant = [ { permissions = [\"SELEC\"], on = \"KEYSPACE demo\" } ]\n",
    )
    .unwrap();
    let o = explain(&[
        "--policy",
        bad.to_str().unwrap(),
        "--principal",
        "a",
        "SELECT 1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!(
            "\"{}\", line 3: unknown permission \"SELEC\"",
            bad.display()
        )),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
