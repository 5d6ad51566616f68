//! `nginx -t` accepts the example configuration and rejects mistakes the NGINX way:
//! a clear message naming the file and line.

mod harness;

use harness::{
    config_with_stream, free_port, load_module_lines, repo_dir, stream_body_line, test_config,
};

#[test]
fn the_example_configuration_is_accepted() {
    let example = std::fs::read_to_string(repo_dir().join("nginx-conf/nginx.conf"))
        .expect("nginx-conf/nginx.conf");
    let config = example
        .replace(
            "load_module modules/ngx_stream_cql_module.so;\n",
            &load_module_lines(),
        )
        .replace("127.0.0.1:9042;", &format!("127.0.0.1:{};", free_port()))
        .replace("cql/jwks.json", &example_keys())
        .replace(
            "cql/policy.toml",
            &repo_dir()
                .join("nginx-conf/policy.toml")
                .display()
                .to_string(),
        );
    let (ok, said, _) = test_config("example", &config);
    assert!(ok, "nginx -t refused the example:\n{said}");
    assert!(said.contains("test is successful"), "{said}");
}

/// A JWKS made by `cql-token`, as `make run` makes one for the example.
fn example_keys() -> String {
    let dir = harness::scratch_dir("example-keys");
    let out = std::process::Command::new(harness::profile_dir().join("cql-token"))
        .args(["keygen", "--kid", "demo-1", "--out"])
        .arg(&dir)
        .output()
        .expect("run cql-token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("jwks.json").display().to_string()
}

/// Runs `nginx -t` on a stream body that must be refused, returning what NGINX said.
fn refused(name: &str, stream_body: &str) -> (String, String) {
    let (ok, said, conf) = test_config(name, &config_with_stream(stream_body));
    assert!(!ok, "nginx -t accepted:\n{stream_body}");
    (said, conf.display().to_string())
}

#[test]
fn a_wrong_value_names_the_directive_file_and_line() {
    let (said, conf) = refused(
        "bad-value",
        "server {\nlisten 127.0.0.1:1;\nproxy_pass 127.0.0.1:2;\ncql maybe;\n}",
    );
    assert!(
        said.contains(&format!(
            "invalid value \"maybe\" in \"cql\" directive, it must be \"on\" or \"off\" in {conf}:{}",
            stream_body_line(4)
        )),
        "{said}"
    );
}

#[test]
fn a_wrong_context_is_refused() {
    let (said, conf) = refused(
        "bad-context",
        "upstream u {\nserver 127.0.0.1:1;\ncql on;\n}",
    );
    assert!(
        said.contains(&format!(
            "\"cql\" directive is not allowed here in {conf}:{}",
            stream_body_line(3)
        )),
        "{said}"
    );
}

#[test]
fn a_frame_size_out_of_bounds_is_refused() {
    let (said, conf) = refused("bad-size", "cql_max_frame_size 1k;");
    assert!(
        said.contains(&format!(
            "\"cql_max_frame_size\" must be between 64k and 256m in {conf}:{}",
            stream_body_line(1)
        )),
        "{said}"
    );
    let (said, conf) = refused("bad-handshake-size", "cql_max_handshake_frame_size 2m;");
    assert!(
        said.contains(&format!(
            "\"cql_max_handshake_frame_size\" must be between 4k and 1m in {conf}:{}",
            stream_body_line(1)
        )),
        "{said}"
    );
    let (said, _) = refused("bad-size-syntax", "cql_max_frame_size lots;");
    assert!(
        said.contains("\"cql_max_frame_size\" directive invalid value"),
        "{said}"
    );
}

#[test]
fn cql_is_accepted_in_stream_and_server_blocks() {
    let port = free_port();
    let body = format!(
        "cql on;\ncql_max_frame_size 1m;\nserver {{\nlisten 127.0.0.1:{port};\nproxy_pass 127.0.0.1:1;\ncql off;\ncql_max_frame_size 256m;\n}}"
    );
    let (ok, said, _) = test_config("contexts", &config_with_stream(&body));
    assert!(ok, "{said}");
}

/// A server block with `directives` on its own lines from line 4 of the stream body.
fn server_with(directives: &str) -> String {
    format!("server {{\nlisten 127.0.0.1:1;\nproxy_pass 127.0.0.1:2;\n{directives}\n}}")
}

#[test]
fn identity_and_policy_mistakes_name_the_file_line_and_reason() {
    let dir = harness::scratch_dir("identity-mistakes");
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "this is not a key").unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[roles.reader]\ngrant = [ { permissions = [\"SELEC\"], on = \"KEYSPACE shop\" } ]\n",
    )
    .unwrap();
    let missing = dir.join("missing.json");
    let cases = [
        (
            "cql on;\ncql_auth password;",
            5,
            "\"cql_auth\" invalid value \"password\": expected off, jwt, mtls or any".to_string(),
        ),
        (
            &*format!("cql on;\ncql_jwt_keys {};", missing.display()),
            5,
            format!("\"{}\"", missing.display()),
        ),
        (
            &*format!("cql on;\ncql_jwt_keys {};", garbage.display()),
            5,
            format!("\"{}\"", garbage.display()),
        ),
        (
            &*format!("cql on;\ncql_auth jwt;\ncql_policy {};", policy.display()),
            6,
            format!("\"{}\", line 2", policy.display()),
        ),
        (
            "cql on;\ncql_jwt_algorithms RS256 none;",
            5,
            "the algorithm \"none\" is never allowed".to_string(),
        ),
        (
            "cql on;\ncql_jwt_leeway soon;",
            5,
            "invalid time \"soon\"".to_string(),
        ),
    ];
    for (i, (directives, line, reason)) in cases.iter().enumerate() {
        let (said, conf) = refused(&format!("identity-mistake-{i}"), &server_with(directives));
        assert!(said.contains(reason.as_str()), "{directives}: {said}");
        assert!(
            said.contains(&format!("in {conf}:{}", stream_body_line(*line))),
            "{directives}: {said}"
        );
    }
}

#[test]
fn combinations_that_cannot_work_are_refused() {
    for (directives, reason) in [
        (
            "cql on;\ncql_auth jwt;",
            "\"cql_auth jwt\" needs \"cql_jwt_keys\" or \"cql_jwt_secret\"",
        ),
        (
            "cql on;\ncql_auth any;",
            "\"cql_auth any\" needs \"cql_jwt_keys\" or \"cql_jwt_secret\"",
        ),
    ] {
        let (said, _) = refused("combination", &server_with(directives));
        assert!(said.contains(reason), "{directives}: {said}");
    }
    let dir = harness::scratch_dir("policy-without-auth");
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, "[roles.reader]\n").unwrap();
    let (said, _) = refused(
        "policy-without-auth",
        &server_with(&format!("cql on;\ncql_policy {};", policy.display())),
    );
    assert!(said.contains("\"cql_policy\" needs \"cql_auth\""), "{said}");
}

#[test]
fn audit_log_mistakes_name_the_file_line_and_reason() {
    let cases = [
        (
            "cql_audit_log logs/audit.log format=xml;",
            "\"cql_audit_log\" invalid format \"xml\": expected json or cassandra",
        ),
        (
            "cql_audit_log logs/audit.log flush=1s;",
            "\"cql_audit_log\" flush= needs buffer=",
        ),
        (
            "cql_audit_log logs/audit.log buffer=lots;",
            "\"cql_audit_log\" invalid buffer size \"lots\"",
        ),
        (
            "cql_audit_log syslog:server=127.0.0.1 buffer=4k;",
            "a syslog target takes no buffer= or flush=",
        ),
        ("cql_audit_log syslog:nowhere;", "syslog"),
        (
            "cql_audit_categories QUERY SELECTS;",
            "\"cql_audit_categories\" invalid category \"SELECTS\"",
        ),
        (
            "cql_audit_denied_only yes;",
            "\"cql_audit_denied_only\" takes on or off",
        ),
    ];
    for (i, (directive, reason)) in cases.iter().enumerate() {
        let (said, conf) = refused(
            &format!("audit-mistake-{i}"),
            &server_with(&format!("cql on;\n{directive}")),
        );
        assert!(said.contains(reason), "{directive}: {said}");
        assert!(
            said.contains(&format!("in {conf}:{}", stream_body_line(5))),
            "{directive}: {said}"
        );
    }
    let (ok, said, _) = harness::test_config(
        "audit-accepted",
        &harness::config_with_stream(&server_with(
            "cql on;\ncql_audit_log logs/audit.log format=cassandra buffer=64k flush=1s;\n\
             cql_audit_categories QUERY dml;\ncql_audit_exclude_keyspaces none;\n\
             cql_audit_redact_literals on;",
        )),
    );
    assert!(ok, "{said}");
}
