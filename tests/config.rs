//! `nginx -t` accepts the example configuration and rejects mistakes the NGINX way:
//! a clear message naming the file and line.

mod harness;

use std::io::Write;
use std::time::Duration;

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
        .replace("\nhttp {\n", &format!("\nhttp {{\n{HTTP_TEMP_PATHS}\n"))
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
    let (off, on) = (free_port(), free_port());
    // One server says `cql off` (what it inherits is then not its business), the other
    // inherits `cql on` and sets a directive of its own.
    let body = format!(
        "cql on;\ncql_max_frame_size 1m;\n\
         server {{\nlisten 127.0.0.1:{off};\nproxy_pass 127.0.0.1:1;\ncql off;\n}}\n\
         server {{\nlisten 127.0.0.1:{on};\nproxy_pass 127.0.0.1:1;\ncql_max_frame_size 256m;\n}}"
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
    let (said, conf) = refused(
        "policy-without-auth",
        &server_with(&format!("cql on;\ncql_policy {};", policy.display())),
    );
    assert!(
        said.contains(&format!(
            "\"cql_policy\" needs \"cql_auth\": a policy decides for authenticated identities in {conf}:{}",
            stream_body_line(5)
        )),
        "{said}"
    );
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

/// A readable JWT secret and a policy in a fresh folder: what a gated server needs.
struct Files {
    secret: String,
    policy: String,
}

fn files(name: &str) -> Files {
    let dir = harness::scratch_dir(name);
    std::fs::write(
        dir.join("secret"),
        "a secret of at least thirty-two bytes\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        "[roles.reader]\ngrant = [ { permissions = [\"SELECT\"], on = \"KEYSPACE shop\" } ]\n\n\
         [[bind]]\nrole = \"reader\"\ngroups = [\"analysts\"]\n",
    )
    .unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    Files {
        secret: path("secret"),
        policy: path("policy.toml"),
    }
}

/// Asserts that NGINX said `reason` about line `line` of the stream body.
fn said_at(said: &str, conf: &str, line: usize, reason: &str) {
    assert!(
        said.contains(&format!("{reason} in {conf}:{}", stream_body_line(line))),
        "expected \"{reason}\" at stream body line {line}:\n{said}"
    );
}

#[test]
fn the_login_and_queue_limits_are_bounded() {
    let attempts = "\"cql_max_auth_attempts\" must be between 1 and 100";
    let timeout = "\"cql_auth_timeout\" must be between 100ms and 10m";
    let queued = "\"cql_max_queued_size\" must be between 16k and 64m";
    for (i, (directive, reason)) in [
        ("cql_max_auth_attempts 0;", attempts),
        ("cql_max_auth_attempts 101;", attempts),
        (
            "cql_max_auth_attempts many;",
            "\"cql_max_auth_attempts\" directive invalid number",
        ),
        ("cql_auth_timeout 0;", timeout),
        ("cql_auth_timeout 50ms;", timeout),
        ("cql_auth_timeout 11m;", timeout),
        (
            "cql_auth_timeout soon;",
            "\"cql_auth_timeout\" directive invalid value",
        ),
        ("cql_max_queued_size 8k;", queued),
        ("cql_max_queued_size 65m;", queued),
        (
            "cql_stream_reuse later;",
            "\"cql_stream_reuse\" invalid value \"later\": expected refuse or wait",
        ),
        (
            "cql_prepared_cache 10000 32m;",
            "\"cql_prepared_cache\" invalid parameter \"32m\"",
        ),
        (
            "cql_prepared_cache 10000 size=512k;",
            "\"cql_prepared_cache\" invalid size \"512k\": expected 1m to 1024m",
        ),
        (
            "cql_prepared_cache 10000 size=lots;",
            "\"cql_prepared_cache\" invalid size \"lots\": expected 1m to 1024m",
        ),
        (
            "cql_allow_unbound_identities yes;",
            "\"cql_allow_unbound_identities\" takes on or off",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (said, conf) = refused(&format!("limit-{i}"), &format!("cql on;\n{directive}"));
        said_at(&said, &conf, 2, reason);
    }
}

#[test]
fn the_new_directives_are_accepted_in_stream_and_server_blocks() {
    let f = files("new-directives");
    let body = format!(
        "cql_max_auth_attempts 5;\ncql_auth_timeout 500ms;\ncql_max_queued_size 1m;\n\
         cql_prepared_cache 5000 size=64m;\n\
         server {{\nlisten 127.0.0.1:{port};\nproxy_pass 127.0.0.1:1;\ncql on;\n\
         cql_auth jwt;\ncql_jwt_secret {secret};\ncql_policy {policy};\n\
         cql_allow_unbound_identities on;\ncql_max_auth_attempts 1;\ncql_auth_timeout 1m;\n\
         cql_max_queued_size 16k;\ncql_prepared_cache 100;\ncql_stream_reuse wait;\n}}\n\
         server {{\nlisten 127.0.0.1:{other};\nproxy_pass 127.0.0.1:1;\ncql on;\n\
         cql_auth jwt;\ncql_jwt_secret {secret};\ncql_policy off;\n\
         cql_allow_unbound_identities off;\ncql_stream_reuse refuse;\n}}",
        port = free_port(),
        other = free_port(),
        secret = f.secret,
        policy = f.policy,
    );
    let (ok, said, _) = test_config("new-directives", &config_with_stream(&body));
    assert!(ok, "{said}");
}

#[test]
fn a_cql_directive_without_cql_on_is_refused() {
    let unchecked = "needs \"cql on\"; without it this server passes CQL through unchecked";
    // Its own directive, without `cql`, or with `cql off`.
    let (said, conf) = refused("no-cql-on", &server_with("cql_auth jwt;"));
    said_at(&said, &conf, 4, &format!("\"cql_auth\" {unchecked}"));
    let (said, conf) = refused(
        "cql-off-own",
        &server_with("cql off;\ncql_audit_log logs/audit.log;"),
    );
    said_at(&said, &conf, 5, &format!("\"cql_audit_log\" {unchecked}"));
    let (said, conf) = refused("size-no-cql-on", &server_with("cql_max_queued_size 1m;"));
    said_at(
        &said,
        &conf,
        4,
        &format!("\"cql_max_queued_size\" {unchecked}"),
    );

    // Inherited from the stream block by a server that does not say `cql`: refused at the
    // server, naming the directive and its line; also when the stream block says `cql off`.
    for (i, stream) in ["cql_auth mtls;", "cql off;\ncql_auth mtls;"]
        .into_iter()
        .enumerate()
    {
        let lines = stream.lines().count();
        let (said, conf) = refused(
            &format!("inherited-no-cql-on-{i}"),
            &format!("{stream}\nserver {{\nlisten 127.0.0.1:1;\nproxy_pass 127.0.0.1:2;\n}}"),
        );
        said_at(
            &said,
            &conf,
            lines + 1,
            &format!(
                "\"cql_auth\" {unchecked} (\"cql_auth\" is inherited from {conf}:{}; \
                 say \"cql off\" in the server if that is meant)",
                stream_body_line(lines)
            ),
        );
    }

    // A server that says `cql off` means it; one that inherits `cql on` is checked.
    let f = files("inherited-cql-off");
    let body = format!(
        "cql_auth jwt;\ncql_jwt_secret {};\ncql_policy {};\n\
         server {{\nlisten 127.0.0.1:{};\nproxy_pass 127.0.0.1:1;\ncql off;\n}}\n\
         server {{\nlisten 127.0.0.1:{};\nproxy_pass 127.0.0.1:1;\ncql on;\n}}",
        f.secret,
        f.policy,
        free_port(),
        free_port()
    );
    let (ok, said, _) = test_config("inherited-cql-off", &config_with_stream(&body));
    assert!(ok, "{said}");
}

#[test]
fn authentication_without_a_policy_is_refused_unless_said() {
    let f = files("auth-without-policy");
    let reason = "\"cql_auth\" needs \"cql_policy\": without a policy every authenticated \
                  identity may run any statement; say \"cql_policy off\" to authenticate only";
    let secret = format!("cql_jwt_secret {};", f.secret);
    let (said, conf) = refused(
        "jwt-without-policy",
        &server_with(&format!("cql on;\ncql_auth jwt;\n{secret}")),
    );
    said_at(&said, &conf, 5, reason);
    let (said, conf) = refused(
        "mtls-without-policy",
        &server_with("cql on;\ncql_auth mtls;"),
    );
    said_at(&said, &conf, 5, reason);
    // Inherited: at the stream block's cql_auth.
    let (said, conf) = refused(
        "inherited-without-policy",
        &format!("cql_auth any;\n{secret}\n{}", server_with("cql on;")),
    );
    said_at(&said, &conf, 1, reason);

    // Authentication only, said so: accepted; unbound identities then mean nothing.
    let only = format!("cql on;\ncql_auth jwt;\n{secret}\ncql_policy off;");
    let (ok, said, _) = test_config(
        "authentication-only",
        &config_with_stream(&server_with(&only)),
    );
    assert!(ok, "{said}");
    let (said, conf) = refused(
        "unbound-without-policy",
        &server_with(&format!("{only}\ncql_allow_unbound_identities on;")),
    );
    said_at(
        &said,
        &conf,
        8,
        "\"cql_allow_unbound_identities on\" needs a \"cql_policy\" file: without one no \
         login is refused for want of a role",
    );
}

// ------------------------------------------------------------------------------------------
// The audit log's file is its own
// ------------------------------------------------------------------------------------------

/// What NGINX says when `path` is written by the audit log and another log.
fn shared(path: &str) -> String {
    format!(
        "\"cql_audit_log\" \"{path}\" is also written by another log; give the audit log a \
         file of its own"
    )
}

/// A stream body with a `basic` log format (line 1) and a server (from line 2) whose
/// directives start at line 5.
fn logging_server(directives: &str) -> String {
    format!(
        "log_format basic '$remote_addr $status';\n\
         server {{\nlisten 127.0.0.1:{};\nproxy_pass 127.0.0.1:1;\n{directives}\n}}",
        free_port()
    )
}

/// The line of `conf` that holds `needle` (from 1).
fn line_of(conf: &str, needle: &str) -> usize {
    conf.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle} not in:\n{conf}"))
}

#[test]
fn an_audit_file_another_log_opened_first_is_refused_at_the_directive() {
    for (i, (directives, audit_line)) in [
        // The brief's crash: another module's buffer on the audit log's file.
        (
            "cql on;\naccess_log logs/x.log basic buffer=8k flush=1s;\ncql_audit_log logs/x.log;",
            7,
        ),
        (
            "cql on;\naccess_log logs/x.log basic;\ncql_audit_log logs/x.log buffer=8k flush=1s;",
            7,
        ),
        (
            "cql on;\nerror_log logs/x.log;\ncql_audit_log logs/x.log;",
            7,
        ),
        // NGINX's own error log (the main error_log of the test configuration).
        ("cql on;\ncql_audit_log logs/error.log;", 6),
    ]
    .into_iter()
    .enumerate()
    {
        let (said, conf) = refused(&format!("shared-before-{i}"), &logging_server(directives));
        let path = if directives.contains("error.log") {
            "logs/error.log"
        } else {
            "logs/x.log"
        };
        said_at(&said, &conf, audit_line, &shared(path));
    }
    // An http block's access_log before the stream block.
    let config = config_with_stream(&logging_server("cql on;\ncql_audit_log logs/x.log;"))
        .replace("stream {", "http {\naccess_log logs/x.log;\n}\nstream {");
    let (ok, said, conf) = test_config("shared-before-http", &config);
    assert!(!ok, "nginx -t accepted:\n{config}");
    let line = line_of(&config, "cql_audit_log");
    assert!(
        said.contains(&format!(
            "{} in {}:{line}",
            shared("logs/x.log"),
            conf.display()
        )),
        "{said}"
    );
}

#[test]
fn an_audit_file_another_log_opens_later_is_refused_naming_the_audit_log() {
    // Within the stream block: refused when the block ends.
    for (i, directives) in [
        "cql on;\ncql_audit_log logs/x.log;\naccess_log logs/x.log basic buffer=8k flush=1s;",
        "cql on;\ncql_audit_log logs/x.log buffer=8k;\naccess_log logs/x.log basic buffer=4k;",
        "cql on;\ncql_audit_log logs/x.log;\nerror_log logs/x.log;",
    ]
    .into_iter()
    .enumerate()
    {
        let (said, conf) = refused(&format!("shared-after-{i}"), &logging_server(directives));
        said_at(&said, &conf, 6, &shared("logs/x.log"));
    }
    // Another server of the block.
    let body = format!(
        "{}\nserver {{\nlisten 127.0.0.1:{};\nproxy_pass 127.0.0.1:1;\n\
         access_log logs/x.log basic buffer=8k;\n}}",
        logging_server("cql on;\ncql_audit_log logs/x.log;"),
        free_port()
    );
    let (said, conf) = refused("shared-after-server", &body);
    said_at(&said, &conf, 6, &shared("logs/x.log"));

    // After the stream block: an http block's buffered access_log, a main error_log.
    for (i, after) in [
        "http {\naccess_log logs/x.log combined buffer=8k;\n}\n",
        "error_log logs/x.log;\n",
    ]
    .into_iter()
    .enumerate()
    {
        let config =
            config_with_stream(&logging_server("cql on;\ncql_audit_log logs/x.log;")) + after;
        let (ok, said, conf) = test_config(&format!("shared-after-stream-{i}"), &config);
        assert!(!ok, "nginx -t accepted:\n{config}");
        let line = line_of(&config, "cql_audit_log");
        assert!(
            said.contains(&format!(
                "{} in {}:{line}",
                shared("logs/x.log"),
                conf.display()
            )),
            "{said}"
        );
    }
}

#[test]
fn servers_may_share_an_audit_file() {
    let body = format!(
        "{}\nserver {{\nlisten 127.0.0.1:{};\nproxy_pass 127.0.0.1:1;\ncql on;\n\
         cql_audit_log logs/audit.log buffer=8k flush=1s;\n\
         access_log logs/access.log basic buffer=8k;\n}}",
        logging_server("cql on;\ncql_audit_log logs/audit.log buffer=8k flush=1s;"),
        free_port()
    );
    let (ok, said, _) = test_config("shared-audit-file", &config_with_stream(&body));
    assert!(ok, "{said}");
    // ... with the same buffer.
    let body = format!(
        "{}\nserver {{\nlisten 127.0.0.1:{};\nproxy_pass 127.0.0.1:1;\ncql on;\n\
         cql_audit_log logs/audit.log buffer=4k;\n}}",
        logging_server("cql on;\ncql_audit_log logs/audit.log buffer=8k flush=1s;"),
        free_port()
    );
    let (said, conf) = refused("shared-audit-other-buffer", &body);
    said_at(
        &said,
        &conf,
        12,
        "\"cql_audit_log\" \"logs/audit.log\" is already an audit log with other buffer= or flush=",
    );
}

/// A CQL v4 OPTIONS on stream 0, and the SUPPORTED that answers it.
fn options_round_trip(port: u16) {
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    client
        .write_all(&[0x04, 0, 0, 0, 0x05, 0, 0, 0, 0])
        .expect("send OPTIONS");
    let header = harness::read_exact_within(&mut client, 9, Duration::from_secs(5));
    assert_eq!(header[4], 0x06, "SUPPORTED answers OPTIONS: {header:?}");
    let length = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) as usize;
    harness::read_exact_within(&mut client, length, Duration::from_secs(5));
}

/// `nginx -t` cannot see an unbuffered log that opens the audit log's file after it (it
/// leaves no mark on NGINX's open file): the worker must not crash, and every line of the
/// file is whole, an audit line or an access line.
#[test]
fn an_unbuffered_log_opened_later_on_the_audit_file_does_not_crash_the_worker() {
    let upstream = harness::DevServer::start(&[]);
    for (i, directives) in [
        "cql on;\ncql_audit_log logs/x.log buffer=8k flush=1s;\naccess_log logs/x.log basic;",
        "cql on;\ncql_audit_log logs/x.log;\naccess_log logs/x.log basic;",
    ]
    .into_iter()
    .enumerate()
    {
        let port = free_port();
        let body = format!(
            "log_format basic '$remote_addr $status';\n\
             server {{\nlisten 127.0.0.1:{port};\nproxy_pass 127.0.0.1:{};\n{directives}\n}}",
            upstream.port
        );
        let nginx = harness::Nginx::start(&format!("shared-unbuffered-{i}"), &body);
        let connections = 20;
        for _ in 0..connections {
            options_round_trip(port);
        }
        let lines = |log: &str| -> (usize, usize) {
            let (mut audit, mut access) = (0, 0);
            for line in log.lines() {
                if line == "127.0.0.1 200" {
                    access += 1;
                } else {
                    let record: serde_json::Value = serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("a garbled line ({e}): {line:?}"));
                    audit += usize::from(record["event"] == "session");
                }
            }
            (audit, access)
        };
        let log = harness::wait_for(Duration::from_secs(10), || {
            let log = nginx.read_log("x.log");
            (lines(&log) == (connections, connections)).then_some(log)
        });
        let error_log = nginx.stop();
        let log = log.unwrap_or_else(|| {
            panic!("{directives}: expected {connections} session and access lines; error log:\n{error_log}")
        });
        assert_eq!(lines(&log), (connections, connections), "{log}");
    }
}

/// `init_module` failing ends NGINX's master process, so on a reload a log after the
/// `stream` block that writes the audit file too is only warned about: the master lives on
/// and the new worker serves with the audit log's own buffer.
#[test]
fn a_reload_that_shares_the_audit_file_after_the_stream_block_keeps_the_master() {
    let upstream = harness::DevServer::start(&[]);
    let port = free_port();
    let body = format!(
        "server {{\nlisten 127.0.0.1:{port};\nproxy_pass 127.0.0.1:{};\ncql on;\n\
         cql_audit_log logs/x.log buffer=8k flush=1s;\n}}",
        upstream.port
    );
    let nginx = harness::Nginx::start("shared-on-reload", &body);
    options_round_trip(port);
    let config =
        config_with_stream(&body) + "http {\naccess_log logs/x.log combined buffer=8k;\n}\n";
    std::fs::write(nginx.prefix.join("conf/nginx.conf"), &config).unwrap();
    harness::reload(&nginx.prefix, nginx.pid());
    options_round_trip(port);
    let warned = format!(
        "{} in {}:{}",
        shared("logs/x.log"),
        nginx.prefix.join("conf/nginx.conf").display(),
        line_of(&config, "cql_audit_log")
    );
    let error_log = nginx.error_log();
    assert!(
        error_log
            .lines()
            .any(|l| l.contains("[warn]") && l.contains(&warned)),
        "{error_log}"
    );
    assert!(std::path::Path::new(&format!("/proc/{}", nginx.pid())).exists());
    nginx.stop();
}

#[test]
fn topology_layouts_are_accepted_and_their_mistakes_refused() {
    let f = files("topology");
    let gate = format!(
        "cql on;\ncql_auth jwt;\ncql_jwt_secret {};\ncql_policy {};",
        f.secret, f.policy
    );
    let body = format!(
        "cql_topology_node 10.0.1.1:9042 127.0.0.1:{a};\n\
         cql_topology_node [2001:db8::2]:9042 127.0.0.2:{a};\n\
         server {{\nlisten 127.0.0.1:{a};\nproxy_pass 10.0.1.1:9042;\n{gate}\ncql_topology nodes;\n}}\n\
         server {{\nlisten 127.0.0.1:{b};\nproxy_pass 10.0.1.1:9042;\n{gate}\n\
         cql_topology proxy 127.0.0.1:{b} 127.0.0.3:{b};\n}}\n\
         server {{\nlisten 127.0.0.1:{c};\nproxy_pass 10.0.1.1:9042;\n{gate}\ncql_topology off;\n}}",
        a = free_port(),
        b = free_port(),
        c = free_port(),
    );
    let (ok, said, _) = test_config("topology-accepted", &config_with_stream(&body));
    assert!(ok, "{said}");

    // The server's line 8: the directive after the gate's four lines.
    for (i, (directives, line, reason)) in [
        (
            "cql_topology nodes;".to_string(),
            8,
            "\"cql_topology nodes\" needs \"cql_topology_node\": without a map every peer would \
             be left out",
        ),
        (
            "cql_topology_node 10.0.1.1:9042 10.0.0.1:9042;".to_string(),
            8,
            "\"cql_topology_node\" needs \"cql_topology nodes\"",
        ),
        (
            "cql_topology_node 10.0.1.1:9042 10.0.0.1:9042;\ncql_topology_node 10.0.1.1:9042 10.0.0.2:9042;".to_string(),
            9,
            "\"cql_topology_node\" maps node 10.0.1.1:9042 twice",
        ),
        (
            "cql_topology_node 10.0.1.1:9042 10.0.0.1:9042;\ncql_topology_node 10.0.1.2:9042 10.0.0.1:9042;".to_string(),
            9,
            "\"cql_topology_node\" maps 10.0.0.1:9042 to node 10.0.1.2:9042, but it fronts node 10.0.1.1:9042 already",
        ),
        (
            "cql_topology_node cassandra-1:9042 10.0.0.1:9042;".to_string(),
            8,
            "\"cql_topology_node\" invalid address \"cassandra-1:9042\": expected IP:PORT, e.g. 10.0.0.1:9042 or [2001:db8::1]:9042",
        ),
        (
            "cql_topology proxy 10.0.0.1;".to_string(),
            8,
            "\"cql_topology\" invalid address \"10.0.0.1\": expected IP:PORT, e.g. 10.0.0.1:9042 or [2001:db8::1]:9042",
        ),
        (
            "cql_topology nodes 10.0.0.1:9042;".to_string(),
            8,
            "\"cql_topology\" \"nodes\" takes no addresses",
        ),
        (
            "cql_topology peers;".to_string(),
            8,
            "\"cql_topology\" invalid value \"peers\": expected off, proxy or nodes",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (said, conf) = refused(
            &format!("topology-{i}"),
            &server_with(&format!("{gate}\n{directives}")),
        );
        said_at(&said, &conf, line, reason);
    }

    // Without the gate nothing would be rewritten: refused where it says so.
    let (said, conf) = refused(
        "topology-without-auth",
        &server_with("cql on;\ncql_topology proxy;"),
    );
    said_at(
        &said,
        &conf,
        5,
        "\"cql_topology\" needs \"cql_auth\": without it the proxy only watches and rewrites no answer",
    );
}

/// The `http` block's temporary folders in the test's prefix: a packaged NGINX has them
/// compiled in under /var/lib/nginx, which a package unpacked for the tests lacks.
const HTTP_TEMP_PATHS: &str = "client_body_temp_path logs/client_body; \
     proxy_temp_path logs/proxy; fastcgi_temp_path logs/fastcgi; \
     uwsgi_temp_path logs/uwsgi; scgi_temp_path logs/scgi;";

/// A configuration with a `stream` body and, after it, an `http` block with a `/metrics`
/// location whose handler directive is `handler`.
fn with_metrics_handler(stream_body: &str, handler: &str) -> String {
    format!(
        "{}http {{\n{HTTP_TEMP_PATHS}\naccess_log off;\nserver {{\nlisten 127.0.0.1:{};\nlocation = /metrics {{\n{handler}\n}}\n}}\n}}\n",
        config_with_stream(stream_body),
        free_port()
    )
}

#[test]
fn metrics_zone_and_handler_mistakes_name_the_file_line_and_reason() {
    let server = "server {\nlisten 127.0.0.1:1;\nproxy_pass 127.0.0.1:2;\ncql on;\n}";
    for (name, zone, reason) in [
        (
            "metrics-no-size",
            "cql_metrics_zone cql;",
            "invalid zone \"cql\" of \"cql_metrics_zone\": expected name:size, e.g. cql:1m",
        ),
        (
            "metrics-small",
            "cql_metrics_zone cql:1k;",
            "zone \"cql\" of \"cql_metrics_zone\" has an invalid size \"1k\": at least 32k",
        ),
        (
            "metrics-option",
            "cql_metrics_zone cql:1m roles=0;",
            "invalid parameter \"roles=0\" of \"cql_metrics_zone\": expected roles=N or \
             keyspaces=N, N from 1 to 1024",
        ),
    ] {
        let (said, conf) = refused(name, &format!("{zone}\n{server}"));
        said_at(&said, &conf, 1, reason);
    }
    let (said, conf) = refused(
        "metrics-duplicate",
        &format!("cql_metrics_zone a:1m;\ncql_metrics_zone b:1m;\n{server}"),
    );
    said_at(&said, &conf, 2, "\"cql_metrics_zone\" is duplicate");
    let (said, conf) = refused(
        "metrics-in-server",
        "server {\nlisten 127.0.0.1:1;\nproxy_pass 127.0.0.1:2;\ncql_metrics_zone cql:1m;\n}",
    );
    said_at(
        &said,
        &conf,
        4,
        "\"cql_metrics_zone\" directive is not allowed here",
    );

    // The handler names a zone the stream block does not declare, or there is none at all.
    for (name, stream_body, handler, reason) in [
        (
            "metrics-unknown-zone",
            format!("cql_metrics_zone cql:1m;\n{server}"),
            "cql_metrics other;",
            "\"cql_metrics\" names the zone \"other\", which no \"cql_metrics_zone\" of the \
             stream block declares",
        ),
        (
            "metrics-no-zone",
            server.to_string(),
            "cql_metrics;",
            "\"cql_metrics\" needs a \"cql_metrics_zone\" in the stream block",
        ),
    ] {
        let config = with_metrics_handler(&stream_body, handler);
        let (ok, said, conf) = test_config(name, &config);
        assert!(!ok, "nginx -t accepted:\n{config}");
        let line = config
            .lines()
            .position(|l| l == handler)
            .expect("the handler's line")
            + 1;
        assert!(
            said.contains(&format!("{reason} in {}:{line}", conf.display())),
            "expected \"{reason}\" at line {line}:\n{said}"
        );
    }

    // Named or not, a handler of a declared zone is accepted.
    for handler in ["cql_metrics;", "cql_metrics cql;"] {
        let config = with_metrics_handler(&format!("cql_metrics_zone cql:1m;\n{server}"), handler);
        let (ok, said, _) = test_config("metrics-ok", &config);
        assert!(ok, "nginx -t refused {handler}:\n{said}");
    }
}

#[test]
fn limit_directives_are_accepted_and_their_mistakes_refused() {
    let f = files("limits");
    let dir = harness::scratch_dir("limits-logins");
    let logins = dir.join("logins");
    std::fs::write(&logins, "# Cassandra logins\nsvc_reader:reader-password\n").unwrap();
    let role_policy = dir.join("policy.toml");
    std::fs::write(
        &role_policy,
        "[roles.reader]\ngrant = [ { permissions = [\"SELECT\"], on = \"KEYSPACE shop\" } ]\n\
         upstream_login = \"svc_reader\"\n\n[[bind]]\nrole = \"reader\"\ngroups = [\"analysts\"]\n",
    )
    .unwrap();
    let gate = format!(
        "cql on;\ncql_auth jwt;\ncql_jwt_secret {};\ncql_policy {};",
        f.secret, f.policy
    );
    let zones = "cql_limit_req_zone $cql_principal zone=per_user:1m rate=10r/s;\n\
                 cql_limit_conn_zone $cql_roles:$remote_addr zone=conns:1m;";
    let body = format!(
        "{zones}\nserver {{\nlisten 127.0.0.1:{};\nproxy_pass 127.0.0.1:1;\n{gate}\n\
         cql_limit_req zone=per_user burst=20;\ncql_limit_conn conns 10;\n\
         cql_limit_in_flight conns 32;\ncql_dry_run on;\n\
         cql_upstream_credentials {};\n}}",
        free_port(),
        logins.display()
    );
    let (ok, said, _) = test_config("limits-accepted", &config_with_stream(&body));
    assert!(ok, "{said}");

    // Zone declarations: the mistake on line 1 of the stream body.
    for (i, (zone, reason)) in [
        (
            "cql_limit_req_zone $cql_principal zone=z:1m;",
            "\"cql_limit_req_zone\": no rate=Nr/s or rate=Nr/m is given",
        ),
        (
            "cql_limit_req_zone $cql_principal zone=z:1m rate=fast;",
            "\"cql_limit_req_zone\": invalid rate \"fast\"",
        ),
        (
            "cql_limit_req_zone everyone zone=z:1m rate=1r/s;",
            "\"cql_limit_req_zone\": ",
        ),
        (
            "cql_limit_conn_zone $cql_principal zone=z;",
            "\"cql_limit_conn_zone\": invalid zone \"z\": expected zone=name:size",
        ),
        (
            "cql_limit_conn_zone $cql_principal zone=z:1k;",
            "\"cql_limit_conn_zone\": zone \"z\" has an invalid size \"1k\": at least 32k",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let server = format!("server {{\nlisten 127.0.0.1:1;\nproxy_pass 127.0.0.1:2;\n{gate}\n}}");
        let (said, conf) = refused(&format!("limits-zone-{i}"), &format!("{zone}\n{server}"));
        let at = format!(" in {conf}:{}", stream_body_line(1));
        assert!(
            said.contains(reason) && said.contains(&at),
            "expected \"{reason}\"{at}:\n{said}"
        );
    }

    // Server directives: the mistake on the server's line 8 (stream body line 10).
    for (i, (directives, reason)) in [
        (
            "cql_limit_req zone=nowhere;",
            "\"cql_limit_req\": unknown zone \"nowhere\": declare it with cql_limit_req_zone in \
             the stream block",
        ),
        (
            "cql_limit_in_flight per_user 5;",
            "\"cql_limit_in_flight\": unknown zone \"per_user\": declare it with \
             cql_limit_conn_zone in the stream block",
        ),
        (
            "cql_limit_conn conns 0;",
            "\"cql_limit_conn\" invalid number \"0\": expected 1 to 65535",
        ),
        (
            "cql_limit_req zone=per_user burst=-1;",
            "\"cql_limit_req\" invalid burst \"-1\": expected 0 to 1000000",
        ),
        ("cql_dry_run maybe;", "\"cql_dry_run\" takes on or off"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(
            "{zones}\nserver {{\nlisten 127.0.0.1:1;\nproxy_pass 127.0.0.1:2;\n{gate}\n{directives}\n}}"
        );
        let (said, conf) = refused(&format!("limits-server-{i}"), &body);
        said_at(&said, &conf, 10, reason);
    }

    // Limits are per identity: a server that authenticates nobody cannot have them.
    let body = format!(
        "{zones}\nserver {{\nlisten 127.0.0.1:1;\nproxy_pass 127.0.0.1:2;\ncql on;\n\
         cql_limit_req zone=per_user;\n}}"
    );
    let (said, conf) = refused("limits-no-auth", &body);
    said_at(
        &said,
        &conf,
        7,
        "the cql_limit_* directives need \"cql_auth\": the limits are per identity",
    );

    // A role's Cassandra login needs its password: without the file, or with a file that
    // lacks it, the server is refused, not left to log in as the service.
    let gate_with_logins = format!(
        "cql on;\ncql_auth jwt;\ncql_jwt_secret {};\ncql_policy {};",
        f.secret,
        role_policy.display()
    );
    let body =
        format!("server {{\nlisten 127.0.0.1:1;\nproxy_pass 127.0.0.1:2;\n{gate_with_logins}\n}}");
    let (said, conf) = refused("limits-no-credentials", &body);
    said_at(
        &said,
        &conf,
        7,
        "role reader of the policy logs in to Cassandra as \"svc_reader\": its password needs \
         \"cql_upstream_credentials\"",
    );
    let other = dir.join("other-logins");
    std::fs::write(&other, "svc_writer:writer-password\n").unwrap();
    let body = format!(
        "server {{\nlisten 127.0.0.1:1;\nproxy_pass 127.0.0.1:2;\n{gate_with_logins}\n\
         cql_upstream_credentials {};\n}}",
        other.display()
    );
    let (said, conf) = refused("limits-missing-login", &body);
    said_at(
        &said,
        &conf,
        8,
        &format!(
            "\"{}\" has no login \"svc_reader\", which role reader of the policy logs in to \
             Cassandra as",
            other.display()
        ),
    );
}
