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

/// A fresh folder for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cql-explain-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Roles defined out of alphabetical order: `zeta` first in the file.
const BOUNDED_POLICY: &str = r#"
[roles.zeta]
grant = [ { permissions = ["SELECT", "MODIFY"], on = "KEYSPACE shop" } ]
guardrails = { write_consistency = ["LOCAL_QUORUM"], max_page_size = 5000, max_statement_bytes = 60 }
upstream_login = "svc_zeta"

[roles.alpha]
guardrails = { max_batch_statements = 2, lwt = false }
upstream_login = "svc_alpha"

[[bind]]
roles = ["zeta", "alpha"]
group = "both"

[[bind]]
role = "zeta"
group = "z"
"#;

#[test]
fn guardrails_and_the_upstream_login_of_the_identity_are_shown() {
    let dir = scratch("bounds");
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, BOUNDED_POLICY).unwrap();
    let run = |group: &str, cql: &str| {
        explain(&[
            "--policy",
            policy.to_str().unwrap(),
            "--principal",
            "carol",
            "--group",
            group,
            cql,
        ])
    };
    let o = run("both", "SELECT * FROM shop.orders WHERE id = 1");
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("roles:      alpha, zeta\n"), "{out}");
    assert!(
        out.contains(
            "guardrails: role zeta: guardrail write_consistency = [LOCAL_QUORUM] (line 4)\n\
             \x20           role zeta: guardrail max_page_size = 5000 (line 4)\n\
             \x20           role zeta: guardrail max_statement_bytes = 60 (line 4)\n\
             \x20           role alpha: guardrail lwt = false (line 8)\n\
             \x20           role alpha: guardrail max_batch_statements = 2 (line 8)\n"
        ),
        "{out}"
    );
    // zeta comes first in the file, though after alpha by name.
    assert!(
        out.contains("upstream:   svc_zeta (upstream_login of role zeta)\n"),
        "{out}"
    );

    // A text above a size bound is refused as the proxy refuses it.
    let o = run(
        "z",
        "SELECT * FROM shop.orders WHERE id = 1 AND customer = 'a long customer name'",
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "reason:     Guardrail max_statement_bytes violated: a statement of 76 bytes is \
             above the limit 60 of role zeta\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("rule:       role zeta: guardrail max_statement_bytes = 60 (line 4)\n"),
        "{out}"
    );
    // A batch of three children, for a holder of alpha's limit of two.
    let o = run(
        "both",
        "BEGIN BATCH INSERT INTO shop.o (k) VALUES (1); INSERT INTO shop.o (k) VALUES (2); APPLY BATCH",
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("max_statement_bytes violated"), "{out}");
    std::fs::write(
        &policy,
        BOUNDED_POLICY.replace("max_statement_bytes = 60", "max_statement_bytes = 1000"),
    )
    .unwrap();
    let o = run(
        "both",
        "BEGIN BATCH INSERT INTO shop.o (k) VALUES (1); INSERT INTO shop.o (k) VALUES (2); \
         INSERT INTO shop.o (k) VALUES (3); APPLY BATCH",
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "reason:     Guardrail max_batch_statements violated: a batch of 3 statements is \
             above the limit 2 of role alpha\n"
        ),
        "{out}"
    );
    // Without alpha, the same batch passes.
    let o = run(
        "z",
        "BEGIN BATCH INSERT INTO shop.o (k) VALUES (1); INSERT INTO shop.o (k) VALUES (2); \
         INSERT INTO shop.o (k) VALUES (3); APPLY BATCH",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_guardrail_and_no_login_say_so() {
    let o = with_policy(&["--principal", "mallory", "SELECT * FROM system.local"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("guardrails: (none)\n"), "{out}");
    assert!(
        out.contains("upstream:   the server's service login (cql_upstream_auth)\n"),
        "{out}"
    );
    let o = with_policy(&[
        "--principal",
        "bob",
        "--group",
        "analysts",
        "SELECT * FROM shop.orders",
    ]);
    let out = stdout(&o);
    assert!(
        out.contains("guardrails: role shop_reader: guardrail allow_filtering = false (line "),
        "{out}"
    );
}

const NGINX_CONF: &str = r#"
# limits per identity
load_module modules/ngx_stream_cql_module.so;
events { }
stream {
    cql_limit_req_zone $cql_principal zone=per_user:10m rate=100r/s;
    cql_limit_conn_zone "$cql_roles|${cql_auth_method}|$binary_remote_addr" zone=conns:1m;
    include limits.conf;
    include conf.d/*.conf;

    server {
        listen 9142 ssl;   # clients
        listen 9143;
        cql on;
        cql_limit_req zone=per_user burst=20;
        cql_limit_req zone=per_app;
        cql_limit_conn conns 10;
        cql_limit_in_flight conns 32;
        cql_dry_run on;
    }
    server {
        listen 9044;
        cql on;
        cql_limit_conn missing 5;
    }
    server {
        listen 9045;
        proxy_pass cassandra;
    }
}
"#;

#[test]
fn nginx_conf_limits_are_shown_with_their_keys_for_the_identity() {
    let dir = scratch("nginx");
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, BOUNDED_POLICY).unwrap();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, NGINX_CONF).unwrap();
    std::fs::write(
        dir.join("limits.conf"),
        "cql_limit_req_zone 'app:$cql_principal' zone=per_app:2m rate=5r/s;\n",
    )
    .unwrap();
    let o = explain(&[
        "--policy",
        policy.to_str().unwrap(),
        "--principal",
        "carol",
        "--group",
        "both",
        "--source",
        "certificate",
        "--nginx-conf",
        conf.to_str().unwrap(),
        "SELECT * FROM shop.orders WHERE id = 1",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    let conf_name = conf.display().to_string();
    assert!(out.contains(&format!("nginx conf: {conf_name}\n")), "{out}");
    assert!(
        out.contains(&format!(
            "  note: include conf.d/*.conf ({conf_name} line 9) not followed: a pattern\n"
        )),
        "{out}"
    );
    let want = format!(
        "  server listen 9142 ssl ({conf_name} line 11): dry run on\n\
         \x20   cql_limit_req per_user: rate 100r/s, burst 20, zone size 10m\n\
         \x20     key $cql_principal -> carol\n\
         \x20   cql_limit_req per_app: rate 5r/s, burst 0, zone size 2m\n\
         \x20     key app:$cql_principal -> app:carol\n\
         \x20   cql_limit_conn conns: 10 connections, zone size 1m\n\
         \x20     key $cql_roles|${{cql_auth_method}}|$binary_remote_addr -> \
         zeta,alpha|mtls|$binary_remote_addr (per connection)\n\
         \x20   cql_limit_in_flight conns: 32 requests in flight, zone size 1m\n\
         \x20     key $cql_roles|${{cql_auth_method}}|$binary_remote_addr -> \
         zeta,alpha|mtls|$binary_remote_addr (per connection)\n\
         \x20 server listen 9044 ({conf_name} line 21): dry run off\n\
         \x20   cql_limit_conn missing: no cql_limit_conn_zone of that name\n"
    );
    assert!(out.contains(&want), "{out}\nwanted:\n{want}");
    // A server without limits is not listed; the decision still follows.
    assert!(!out.contains("9045"), "{out}");
    assert!(out.contains("decision:   ALLOW\n"), "{out}");

    // A token identity: jwt.
    let o = explain(&[
        "--policy",
        policy.to_str().unwrap(),
        "--principal",
        "dave",
        "--group",
        "z",
        "--nginx-conf",
        conf.to_str().unwrap(),
        "SELECT * FROM shop.orders WHERE id = 1",
    ]);
    let out = stdout(&o);
    assert!(
        out.contains("-> zeta|jwt|$binary_remote_addr (per connection)\n"),
        "{out}"
    );
    assert!(out.contains("key $cql_principal -> dave\n"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nginx_conf_without_limits_and_broken_ones() {
    let dir = scratch("nginx-errors");
    let conf = dir.join("nginx.conf");
    let run = |text: &str| {
        std::fs::write(&conf, text).unwrap();
        with_policy(&[
            "--principal",
            "mallory",
            "--nginx-conf",
            conf.to_str().unwrap(),
            "SELECT * FROM system.local",
        ])
    };
    let o = run("stream { server { listen 9042; cql on; } }\n# cql_dry_run on;\n");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(
            "  no server sets cql_limit_req, cql_limit_conn, cql_limit_in_flight or cql_dry_run\n"
        ),
        "{}",
        stdout(&o)
    );
    // A dry run said for the whole stream block holds in the servers that limit.
    let o = run(
        "stream {\n cql_dry_run on;\n cql_limit_conn_zone $cql_principal zone=c:1m;\n server { cql_limit_conn c 1; }\n}\n",
    );
    assert!(
        stdout(&o).contains(&format!(
            "  server (no listen) ({} line 4): dry run on\n",
            conf.display()
        )),
        "{}",
        stdout(&o)
    );
    let o = run("stream {\n server {\n listen \"9042;\n }\n}\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!(
            "{} line 3: unterminated quoted string",
            conf.display()
        )),
        "{}",
        stderr(&o)
    );
    let o = run("stream {\n server { listen 9042; }\n}\n}\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("{} line 4: unexpected \"}}\"", conf.display())),
        "{}",
        stderr(&o)
    );
    let o = run("stream {\n server { listen 9042; }\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unexpected end of file"),
        "{}",
        stderr(&o)
    );
    let o = run("stream {\n server { cql_dry_run maybe; }\n}\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("line 2: cql_dry_run takes on or off"),
        "{}",
        stderr(&o)
    );
    let o = run("stream {\n include missing.conf;\n}\n");
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("include missing.conf ("),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("not followed: cannot read it: "),
        "{}",
        stdout(&o)
    );
    let o = with_policy(&[
        "--principal",
        "mallory",
        "--nginx-conf",
        "/nonexistent/nginx.conf",
        "SELECT * FROM system.local",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read \"/nonexistent/nginx.conf\""),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
