//! The recipes in `nginx-conf/recipes/`, played end to end: NGINX with each recipe's
//! directives (taken from its nginx.conf, file paths pointed at this test's keys) and its
//! policy.toml unchanged, in front of the development server, with tokens or certificates of
//! exactly the provider's shape, signed by keys the test makes. Each test shows what every
//! identity of the recipe may and may not do (the Python driver through `gate.py`, and
//! cqlsh for the people recipe), then the audit lines those statements wrote. A last test
//! runs `scripts/refresh-jwks` against a file URL with a stand-in `nginx`.

mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use harness::{
    cql_token, cqlsh, free_port, python, repo_dir, run_ok, scratch_dir, DevServer, Nginx,
};

fn recipe_file(recipe: &str, file: &str) -> PathBuf {
    repo_dir()
        .join("nginx-conf/recipes")
        .join(recipe)
        .join(file)
}

/// The recipe's `cql ...;`, `cql_*` and `ssl_verify_*` directives, as its nginx.conf writes
/// them, with the files pointed at this test's: keys, the recipe's own policy.toml, the
/// audit log.
/// The recipe's `cql_*` directives: those of the `stream` block (the limit zones), and
/// those of its server.
fn recipe_directives(recipe: &str, keys: Option<&Path>, audit: &Path) -> (String, String) {
    let conf = std::fs::read_to_string(recipe_file(recipe, "nginx.conf")).unwrap();
    let mut stream = String::new();
    let mut out = String::new();
    let (mut policy, mut audit_log) = (false, false);
    for line in conf.lines().map(str::trim) {
        let name = line.split_whitespace().next().unwrap_or("");
        if !(name == "cql" || name.starts_with("cql_") || name.starts_with("ssl_verify_")) {
            continue;
        }
        let directive = match name {
            "cql_jwt_keys" => format!(
                "cql_jwt_keys {};",
                keys.expect("a JWT recipe has keys").display()
            ),
            "cql_policy" => {
                policy = true;
                format!(
                    "cql_policy {};",
                    recipe_file(recipe, "policy.toml").display()
                )
            }
            "cql_audit_log" => {
                audit_log = true;
                format!("cql_audit_log {};", audit.display())
            }
            // The recipe's example logins, as shipped.
            "cql_upstream_credentials" => format!(
                "cql_upstream_credentials {};",
                recipe_file(recipe, "logins.example").display()
            ),
            _ => line.to_string(),
        };
        if name.ends_with("_zone") {
            stream.push_str(&directive);
            stream.push('\n');
            continue;
        }
        out.push_str(&directive);
        out.push('\n');
    }
    assert!(
        policy && audit_log,
        "{recipe}/nginx.conf names cql_policy and cql_audit_log"
    );
    (stream, out)
}

/// One recipe's run: a scratch folder, the development server with the recipe's schema,
/// NGINX with the recipe's directives.
struct Run {
    dir: PathBuf,
    server: DevServer,
    port: u16,
    nginx: Option<Nginx>,
}

impl Run {
    /// A scratch folder and the development server, its schema made directly (no proxy).
    fn new(recipe: &str, schema: &[&str]) -> Run {
        let dir = scratch_dir(&format!("recipe-{recipe}"));
        let server = DevServer::start(&[]);
        let statements = serde_json::to_string(schema).unwrap();
        run_ok(Command::new(python()).arg("-c").arg(format!(
            "import json\n\
             from cassandra.cluster import Cluster\n\
             s = Cluster(['127.0.0.1'], port={}).connect()\n\
             for q in json.loads({statements:?}):\n    s.execute(q)\n",
            server.port
        )));
        Run {
            dir,
            server,
            port: free_port(),
            nginx: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn audit_path(&self) -> PathBuf {
        self.path("audit.log")
    }

    /// A signing key (RS256, kid `kid`) in `keys/`, added to `keys/jwks.json`.
    fn keygen(&self, kid: &str) -> PathBuf {
        let keys = self.path("keys");
        cql_token(&[
            "keygen",
            "--kid",
            kid,
            "--alg",
            "RS256",
            "--out",
            keys.to_str().unwrap(),
        ]);
        keys.join(format!("{kid}.key"))
    }

    /// Starts NGINX: a plain listener with the recipe's directives (JWT recipes).
    fn start_jwt(&mut self, recipe: &str) {
        let (stream, directives) = recipe_directives(
            recipe,
            Some(&self.path("keys/jwks.json")),
            &self.audit_path(),
        );
        let body = format!(
            "{stream}server {{\n\
                 listen 127.0.0.1:{port};\n\
                 proxy_pass 127.0.0.1:{upstream};\n\
                 {directives}\
             }}",
            port = self.port,
            upstream = self.server.port,
        );
        self.nginx = Some(Nginx::start(&format!("recipe-{recipe}"), &body));
    }

    /// Starts NGINX: a TLS listener with this test's certificates and the recipe's
    /// directives (mTLS recipes).
    fn start_mtls(&mut self, recipe: &str, cert: &Path, key: &Path, ca: &Path) {
        let (stream, directives) = recipe_directives(recipe, None, &self.audit_path());
        let body = format!(
            "{stream}server {{\n\
                 listen 127.0.0.1:{port} ssl;\n\
                 ssl_certificate {cert};\n\
                 ssl_certificate_key {key};\n\
                 ssl_client_certificate {ca};\n\
                 proxy_pass 127.0.0.1:{upstream};\n\
                 {directives}\
             }}",
            port = self.port,
            cert = cert.display(),
            key = key.display(),
            ca = ca.display(),
            upstream = self.server.port,
        );
        self.nginx = Some(Nginx::start(&format!("recipe-{recipe}"), &body));
    }

    /// Runs `gate.py` with a plan; fails the test with its output on a mismatch.
    fn gate(&self, name: &str, args: &[&str], plan: Value) -> String {
        let plan_file = self.path(&format!("{name}.json"));
        std::fs::write(&plan_file, plan.to_string()).unwrap();
        let out = run_ok(
            Command::new(python())
                .arg(repo_dir().join("tests/clients/gate.py"))
                .args(["--port", &self.port.to_string()])
                .args(args)
                .arg(&plan_file),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (up to 5 s: a request's line is written when its response arrives) until the
    /// audit log has a line matching each of `wanted` (see [`matches`]); returns the log.
    /// No line may hold any of `secrets`.
    fn expect_audit(&self, wanted: &[Value], secrets: &[&str]) -> String {
        let path = self.audit_path();
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<Value> = text
                .lines()
                .map(|l| {
                    serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}"))
                })
                .collect();
            let missing: Vec<&Value> = wanted
                .iter()
                .filter(|w| !lines.iter().any(|l| matches(w, l)))
                .collect();
            if missing.is_empty() {
                for secret in secrets {
                    assert!(
                        !text.contains(secret),
                        "a token or secret reached the audit log:\n{text}"
                    );
                }
                return text;
            }
            if start.elapsed() > Duration::from_secs(5) {
                panic!(
                    "audit log {} lacks lines matching:\n{}\n--- it has:\n{text}",
                    path.display(),
                    missing
                        .iter()
                        .map(|m| m.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(mut self) {
        if let Some(nginx) = self.nginx.take() {
            nginx.stop();
        }
    }
}

/// Whether an audit line has `want`'s fields: objects by subset, arrays as sets holding
/// `want`'s elements, a string beginning with `~` as a substring, anything else equal.
fn matches(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|hv| matches(v, hv))),
        (Value::Array(w), Value::Array(h)) => {
            w.iter().all(|wv| h.iter().any(|hv| matches(wv, hv))) && (!w.is_empty() || h.is_empty())
        }
        (Value::String(w), Value::String(h)) if w.starts_with('~') => h.contains(&w[1..]),
        _ => want == have,
    }
}

#[test]
fn audit_lines_match_by_subset() {
    let line = json!({"event": "request", "roles": ["a", "b"], "reason": "User x has no MODIFY", "principal": null});
    assert!(matches(&json!({"event": "request"}), &line));
    assert!(matches(&json!({"roles": ["b"]}), &line));
    assert!(matches(
        &json!({"reason": "~no MODIFY", "principal": null}),
        &line
    ));
    assert!(!matches(&json!({"roles": []}), &line));
    assert!(!matches(&json!({"roles": ["c"]}), &line));
    assert!(!matches(&json!({"event": "login"}), &line));
    assert!(!matches(&json!({"outcome": "success"}), &line));
    assert!(!matches(&json!({"reason": "~no SELECT"}), &line));
}

/// A token of `claims` (JSON, with iss, aud, sub as the provider writes them) signed with
/// `key`; exp is an hour away unless `extra` says otherwise.
fn mint(key: &Path, claims: &Value, extra: &[&str]) -> String {
    let claims = claims.to_string();
    let mut args = vec![
        "mint",
        "--key",
        key.to_str().unwrap(),
        "--claim-json",
        &claims,
    ];
    args.extend_from_slice(extra);
    cql_token(&args)
}

const KEYSPACE: &str = "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}";

fn ok(cql: &str) -> Value {
    json!({"cql": cql, "expect": "ok"})
}

fn rows(cql: &str, n: usize) -> Value {
    json!({"cql": cql, "expect": "ok", "rows": n})
}

fn denied(cql: &str, message: &str) -> Value {
    json!({"cql": cql, "expect": "unauthorized", "message": message})
}

fn connect(token: &str) -> Value {
    json!({"connect": "ok", "token": token})
}

/// Why the login of an identity the policy binds to no role is refused.
fn no_role(principal: &str) -> String {
    format!("no role is bound to principal {principal}")
}

/// A login with `token`, refused: the policy binds its principal to no role.
fn refused_unbound(token: &str, principal: &str) -> Value {
    json!({"connect": "refused", "token": token, "reason": no_role(principal)})
}

/// The audit line of a login refused because the policy binds `principal` to no role.
fn unbound_login(principal: &str) -> Value {
    json!({"event": "login", "type": "LOGIN_ERROR", "principal": null, "decision": "deny",
           "reason": no_role(principal)})
}

/// The denial Cassandra words for a missing permission.
fn no_permission(principal: &str, permission: &str, resource: &str) -> String {
    format!("User {principal} has no {permission} permission on {resource} or any of its parents")
}

// ------------------------------------------------------------------------------------------
// CI pipelines
// ------------------------------------------------------------------------------------------

const BUILDKITE_ISSUER: &str = "https://agent.buildkite.com";
const BUILDKITE_AUDIENCE: &str = "cassandra.acme.example";

/// A Buildkite job token as `buildkite-agent oidc request-token --audience ...` returns it
/// (claims from Buildkite's `buildkite-agent oidc` reference).
fn buildkite_claims(org: &str, pipeline: &str, branch: &str, step: &str) -> Value {
    let commit = "9f3182061f1e2cca4702c368cbc039b7dc9d4485";
    json!({
        "iss": BUILDKITE_ISSUER,
        "sub": format!("organization:{org}:pipeline:{pipeline}:ref:refs/heads/{branch}:commit:{commit}:step:{step}"),
        "aud": BUILDKITE_AUDIENCE,
        "organization_slug": org,
        "pipeline_slug": pipeline,
        "build_number": 42,
        "build_branch": branch,
        "build_commit": commit,
        "step_key": step,
        "job_id": "0184990a-477b-4fa8-9968-496074483cee",
        "agent_id": "0184990a-4782-42b5-afc1-16715b10b8ff",
        "build_source": "webhook",
        "runner_environment": "self-hosted",
    })
}

#[test]
fn buildkite_pipelines_reach_their_own_keyspace() {
    let mut run = Run::new(
        "buildkite",
        &[
            &format!("CREATE KEYSPACE ci_shop {KEYSPACE}"),
            &format!("CREATE KEYSPACE ci_billing {KEYSPACE}"),
            "CREATE TABLE ci_shop.orders (id int PRIMARY KEY, item text)",
            "CREATE TABLE ci_billing.invoices (id int PRIMARY KEY, total int)",
        ],
    );
    let key = run.keygen("bk-2024-06");
    run.start_jwt("buildkite");

    let job = |org: &str, pipeline: &str, branch: &str, step: &str| {
        let claims = buildkite_claims(org, pipeline, branch, step);
        let sub = claims["sub"].as_str().unwrap().to_string();
        // Buildkite's tokens carry nbf; the default lifetime is 5 minutes.
        (mint(&key, &claims, &["--nbf-in", "0", "--ttl", "300"]), sub)
    };
    let (main, main_sub) = job("acme-inc", "shop", "main", "migrate");
    let (feature, feature_sub) = job("acme-inc", "shop", "feature/cart-v2", "test");
    let (pr, pr_sub) = job("acme-inc", "shop-pr", "feature/cart-v2", "contract-tests");
    let (fork, fork_sub) = job("acme-inc", "shop", "contributor:main", "test");
    let (billing, billing_sub) = job("acme-inc", "billing", "main", "migrate");
    let (other_org, other_org_sub) = job("evil-inc", "shop", "main", "migrate");
    let mut wrong_audience = buildkite_claims("acme-inc", "shop", "main", "migrate");
    wrong_audience["aud"] = json!("sts.amazonaws.com");
    let wrong_audience = mint(&key, &wrong_audience, &[]);

    run.gate(
        "buildkite",
        &[],
        json!([
            // main: migrates (CREATE, ALTER; the development server has no ALTER, so that
            // one is only shown to pass the proxy), reads and writes; never DROP, never
            // another pipeline's keyspace.
            connect(&main),
            ok("CREATE TABLE ci_shop.carts (id int PRIMARY KEY, items text)"),
            {"cql": "ALTER TABLE ci_shop.carts ADD note text", "expect": "reaches"},
            ok("INSERT INTO ci_shop.carts (id, items) VALUES (1, 'socks')"),
            rows("SELECT * FROM ci_shop.carts", 1),
            denied("DROP TABLE ci_shop.carts", &no_permission(&main_sub, "DROP", "<table ci_shop.carts>")),
            denied("SELECT * FROM ci_billing.invoices", &no_permission(&main_sub, "SELECT", "<table ci_billing.invoices>")),
            // Another branch: rows, no schema.
            connect(&feature),
            ok("INSERT INTO ci_shop.orders (id, item) VALUES (1, 'hat')"),
            rows("SELECT * FROM ci_shop.orders", 1),
            denied("CREATE TABLE ci_shop.wishlist (id int PRIMARY KEY)", &no_permission(&feature_sub, "CREATE", "<keyspace ci_shop>")),
            denied("ALTER TABLE ci_shop.orders ADD note text", &no_permission(&feature_sub, "ALTER", "<table ci_shop.orders>")),
            {"batch": (0..101).map(|i| format!("INSERT INTO ci_shop.orders (id, item) VALUES ({i}, 'x')")).collect::<Vec<_>>(),
             "expect": "invalid", "message": "Guardrail max_batch_statements violated: a batch of 101 statements"},
            // The pull-request pipeline: reads only.
            connect(&pr),
            rows("SELECT * FROM ci_shop.orders", 1),
            denied("INSERT INTO ci_shop.orders (id, item) VALUES (2, 'scarf')", &no_permission(&pr_sub, "MODIFY", "<table ci_shop.orders>")),
            // The guardrails every CI job holds: no ALL, pages of at most 5000 rows.
            {"cql": "SELECT * FROM ci_shop.orders", "consistency": "ALL", "expect": "invalid",
             "message": "Guardrail read_consistency violated"},
            {"cql": "SELECT * FROM ci_shop.orders", "fetch_size": 10000, "expect": "invalid",
             "message": "Guardrail max_page_size violated"},
            {"cql": "SELECT * FROM ci_shop.orders", "consistency": "LOCAL_QUORUM", "fetch_size": 5000,
             "expect": "ok", "rows": 1},
            // A fork's "main" in the shop pipeline: not main, and its deny rules beat the
            // pipeline's grants.
            connect(&fork),
            rows("SELECT * FROM ci_shop.orders", 1),
            denied("INSERT INTO ci_shop.orders (id, item) VALUES (3, 'gloves')", &no_permission(&fork_sub, "MODIFY", "<table ci_shop.orders>")),
            denied("CREATE TABLE ci_shop.pwned (id int PRIMARY KEY)", &no_permission(&fork_sub, "CREATE", "<keyspace ci_shop>")),
            // Another pipeline: its own keyspace only.
            connect(&billing),
            ok("CREATE TABLE ci_billing.refunds (id int PRIMARY KEY, total int)"),
            ok("INSERT INTO ci_billing.invoices (id, total) VALUES (1, 100)"),
            denied("SELECT * FROM ci_shop.orders", &no_permission(&billing_sub, "SELECT", "<table ci_shop.orders>")),
            // Another organization's job, same issuer: no role, so no login.
            refused_unbound(&other_org, &other_org_sub),
            // A token a job asked for another audience.
            {"connect": "refused", "token": wrong_audience, "reason": "token audience is not accepted"},
        ]),
    );

    run.expect_audit(
        &[
            json!({"event": "login", "type": "LOGIN_SUCCESS", "auth": "jwt", "principal": main_sub,
                   "roles": ["shop_data", "shop_migrate", "shop_read"]}),
            json!({"event": "request", "principal": main_sub, "category": "DDL", "type": "CREATE_TABLE",
                   "keyspace": "ci_shop", "table": "carts", "decision": "allow", "outcome": "success"}),
            json!({"event": "request", "principal": main_sub, "type": "ALTER_TABLE", "keyspace": "ci_shop",
                   "decision": "allow", "outcome": "error", "error_code": "0x2000"}),
            json!({"event": "request", "principal": main_sub, "type": "UPDATE", "keyspace": "ci_shop",
                   "table": "carts", "decision": "allow", "outcome": "success"}),
            json!({"event": "request", "principal": main_sub, "type": "DROP_TABLE", "decision": "deny",
                   "reason": no_permission(&main_sub, "DROP", "<table ci_shop.carts>")}),
            json!({"event": "request", "principal": main_sub, "type": "SELECT", "keyspace": "ci_billing",
                   "decision": "deny"}),
            json!({"event": "login", "principal": feature_sub, "roles": ["shop_data", "shop_read"]}),
            json!({"event": "request", "principal": feature_sub, "type": "CREATE_TABLE", "keyspace": "ci_shop",
                   "decision": "deny", "rule": "~default deny"}),
            json!({"event": "request", "principal": feature_sub, "type": "UPDATE", "table": "orders",
                   "decision": "allow", "outcome": "success"}),
            json!({"event": "login", "principal": pr_sub, "roles": ["shop_read"]}),
            json!({"event": "request", "principal": pr_sub, "type": "UPDATE", "decision": "deny"}),
            json!({"event": "request", "principal": pr_sub, "type": "SELECT", "decision": "deny",
                   "reason": "~Guardrail read_consistency violated: ALL is not allowed for reads of role ci_guardrails",
                   "rule": "~role ci_guardrails"}),
            json!({"event": "request", "principal": pr_sub, "type": "SELECT", "keyspace": "ci_shop",
                   "decision": "allow", "outcome": "success"}),
            json!({"event": "request", "principal": fork_sub, "type": "UPDATE", "decision": "deny",
                   "rule": "~role fork_read_only: deny"}),
            json!({"event": "request", "principal": billing_sub, "type": "CREATE_TABLE", "keyspace": "ci_billing",
                   "decision": "allow", "outcome": "success"}),
            unbound_login(&other_org_sub),
            json!({"event": "login", "type": "LOGIN_ERROR", "principal": null, "decision": "deny",
                   "reason": "token audience is not accepted"}),
        ],
        &[&main, &feature, &pr, &fork, &billing, &other_org, &wrong_audience],
    );
    run.stop();
}

const BITBUCKET_ISSUER: &str =
    "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc";
const BITBUCKET_AUDIENCE: &str =
    "ari:cloud:bitbucket::workspace/6c1f5a0e-2b7d-4e0a-9d39-0f6b8c2d1e47";
const BITBUCKET_SHOP: &str = "{5b0e3f7a-8c1d-4e2b-9a6f-1d2c3b4a5e6f}";
const BITBUCKET_BILLING: &str = "{a7d2c9e4-3f1b-4c8a-b5e6-9f0a1b2c3d4e}";
const BITBUCKET_SHOP_PULL_REQUESTS: &str = "{0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a}";

/// A Bitbucket Pipelines step token ($BITBUCKET_STEP_OIDC_TOKEN): sub is
/// `{REPOSITORY_UUID}[:{ENVIRONMENT_UUID}]:{STEP_UUID}`.
fn bitbucket_claims(
    repository: &str,
    branch: &str,
    environment: Option<&str>,
    step: &str,
) -> Value {
    let sub = match environment {
        Some(env) => format!("{repository}:{env}:{step}"),
        None => format!("{repository}:{step}"),
    };
    let mut claims = json!({
        "iss": BITBUCKET_ISSUER,
        "aud": BITBUCKET_AUDIENCE,
        "sub": sub,
        "accountUuid": "{9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b}",
        "workspaceUuid": "{6c1f5a0e-2b7d-4e0a-9d39-0f6b8c2d1e47}",
        "repositoryUuid": repository,
        "pipelineUuid": "{7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d}",
        "stepUuid": step,
        "branchName": branch,
    });
    if let Some(env) = environment {
        claims["deploymentEnvironmentUuid"] = json!(env);
    }
    claims
}

#[test]
fn bitbucket_pipelines_reach_their_own_keyspace() {
    let mut run = Run::new(
        "bitbucket-pipelines",
        &[
            &format!("CREATE KEYSPACE ci_shop {KEYSPACE}"),
            &format!("CREATE KEYSPACE ci_billing {KEYSPACE}"),
            "CREATE TABLE ci_shop.orders (id int PRIMARY KEY, item text)",
            "CREATE TABLE ci_billing.invoices (id int PRIMARY KEY, total int)",
        ],
    );
    let key = run.keygen("bitbucket-oidc-1");
    run.start_jwt("bitbucket-pipelines");
    let step = |repo: &str, branch: &str, env: Option<&str>, step: &str| {
        let claims = bitbucket_claims(repo, branch, env, step);
        (
            mint(&key, &claims, &[]),
            claims["sub"].as_str().unwrap().to_string(),
        )
    };
    let (main, main_sub) = step(
        BITBUCKET_SHOP,
        "main",
        None,
        "{11111111-1111-4111-8111-111111111111}",
    );
    let (feature, feature_sub) = step(
        BITBUCKET_SHOP,
        "feature/cart-v2",
        None,
        "{22222222-2222-4222-8222-222222222222}",
    );
    let (pr, pr_sub) = step(
        BITBUCKET_SHOP,
        "feature/cart-v2",
        Some(BITBUCKET_SHOP_PULL_REQUESTS),
        "{33333333-3333-4333-8333-333333333333}",
    );
    // A pull request whose source branch is main (main into a release branch).
    let (pr_main, pr_main_sub) = step(
        BITBUCKET_SHOP,
        "main",
        Some(BITBUCKET_SHOP_PULL_REQUESTS),
        "{44444444-4444-4444-8444-444444444444}",
    );
    let (billing, billing_sub) = step(
        BITBUCKET_BILLING,
        "main",
        None,
        "{55555555-5555-4555-8555-555555555555}",
    );
    let mut other_workspace = bitbucket_claims(
        BITBUCKET_SHOP,
        "main",
        None,
        "{66666666-6666-4666-8666-666666666666}",
    );
    other_workspace["iss"] =
        json!("https://api.bitbucket.org/2.0/workspaces/intruder/pipelines-config/identity/oidc");
    let other_workspace = mint(&key, &other_workspace, &[]);

    run.gate(
        "bitbucket",
        &[],
        json!([
            connect(&main),
            ok("CREATE TABLE ci_shop.carts (id int PRIMARY KEY, items text)"),
            {"cql": "ALTER TABLE ci_shop.carts ADD note text", "expect": "reaches"},
            ok("INSERT INTO ci_shop.carts (id, items) VALUES (1, 'socks')"),
            denied("DROP TABLE ci_shop.carts", &no_permission(&main_sub, "DROP", "<table ci_shop.carts>")),
            denied("INSERT INTO ci_billing.invoices (id, total) VALUES (9, 9)", &no_permission(&main_sub, "MODIFY", "<table ci_billing.invoices>")),
            connect(&feature),
            ok("INSERT INTO ci_shop.orders (id, item) VALUES (1, 'hat')"),
            rows("SELECT * FROM ci_shop.orders", 1),
            denied("CREATE TABLE ci_shop.wishlist (id int PRIMARY KEY)", &no_permission(&feature_sub, "CREATE", "<keyspace ci_shop>")),
            connect(&pr),
            rows("SELECT * FROM ci_shop.orders", 1),
            denied("UPDATE ci_shop.orders SET item = 'cap' WHERE id = 1", &no_permission(&pr_sub, "MODIFY", "<table ci_shop.orders>")),
            connect(&pr_main),
            denied("CREATE TABLE ci_shop.release (id int PRIMARY KEY)", &no_permission(&pr_main_sub, "CREATE", "<keyspace ci_shop>")),
            rows("SELECT * FROM ci_shop.orders", 1),
            connect(&billing),
            ok("INSERT INTO ci_billing.invoices (id, total) VALUES (1, 100)"),
            denied("SELECT * FROM ci_shop.orders", &no_permission(&billing_sub, "SELECT", "<table ci_shop.orders>")),
            {"connect": "refused", "token": other_workspace, "reason": "token issuer is not accepted"},
        ]),
    );

    run.expect_audit(
        &[
            json!({"event": "login", "type": "LOGIN_SUCCESS", "principal": main_sub,
                   "roles": ["shop_data", "shop_migrate", "shop_read"]}),
            json!({"event": "request", "principal": main_sub, "type": "CREATE_TABLE", "keyspace": "ci_shop",
                   "decision": "allow", "outcome": "success"}),
            json!({"event": "request", "principal": main_sub, "type": "UPDATE", "keyspace": "ci_billing",
                   "decision": "deny"}),
            json!({"event": "request", "principal": feature_sub, "type": "CREATE_TABLE", "decision": "deny"}),
            json!({"event": "login", "principal": pr_sub,
                   "roles": ["pull_request_read_only", "shop_data", "shop_read"]}),
            json!({"event": "request", "principal": pr_sub, "type": "UPDATE", "keyspace": "ci_shop",
                   "table": "orders", "decision": "deny", "rule": "~role pull_request_read_only: deny"}),
            json!({"event": "request", "principal": pr_main_sub, "type": "CREATE_TABLE", "decision": "deny",
                   "rule": "~role pull_request_read_only: deny"}),
            json!({"event": "request", "principal": billing_sub, "type": "UPDATE", "keyspace": "ci_billing",
                   "decision": "allow", "outcome": "success"}),
            json!({"event": "login", "type": "LOGIN_ERROR", "principal": null,
                   "reason": "token issuer is not accepted"}),
        ],
        &[&main, &feature, &pr, &pr_main, &billing, &other_workspace],
    );
    run.stop();
}

// ------------------------------------------------------------------------------------------
// Scheduler workers: Airflow with Keycloak service accounts
// ------------------------------------------------------------------------------------------

const KEYCLOAK_ISSUER: &str = "https://keycloak.acme.example/realms/data-platform";

/// A Keycloak access token of the client credentials grant: the client's service account
/// user, its realm roles, `azp` and `client_id` naming the client.
fn keycloak_service_account(client: &str, realm_roles: &[&str], audience: &[&str]) -> Value {
    let mut roles = vec![
        "default-roles-data-platform",
        "offline_access",
        "uma_authorization",
    ];
    roles.extend_from_slice(realm_roles);
    json!({
        "iss": KEYCLOAK_ISSUER,
        "aud": audience,
        "sub": "3b0f0c55-5a3e-4e0a-b5a2-6f1e2d3c4b5a",
        "typ": "Bearer",
        "azp": client,
        "acr": "1",
        "jti": "c1a2b3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        "realm_access": {"roles": roles},
        "resource_access": {"account": {"roles": ["manage-account", "view-profile"]}},
        "scope": "profile email",
        "email_verified": false,
        "clientHost": "10.1.2.3",
        "preferred_username": format!("service-account-{client}"),
        "clientAddress": "10.1.2.3",
        "client_id": client,
    })
}

#[test]
fn airflow_writer_and_reporting_dags_with_keycloak_service_accounts() {
    let mut run = Run::new(
        "airflow-keycloak",
        &[
            &format!("CREATE KEYSPACE orders {KEYSPACE}"),
            &format!("CREATE KEYSPACE customers {KEYSPACE}"),
            "CREATE TABLE orders.daily_totals (day text PRIMARY KEY, total int)",
            "CREATE TABLE customers.customers (id int PRIMARY KEY, name text)",
            "INSERT INTO customers.customers (id, name) VALUES (1, 'Ada')",
        ],
    );
    let key = run.keygen("kc-rs256-7Qm");
    // Keycloak's certs endpoint also serves the realm's encryption key (use "enc",
    // RSA-OAEP) next to its signing key: the module skips it.
    let jwks_path = run.path("keys/jwks.json");
    let mut jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(&jwks_path).unwrap()).unwrap();
    jwks["keys"][0]["use"] = json!("sig");
    let mut enc = jwks["keys"][0].clone();
    enc["kid"] = json!("kc-enc-Lr4");
    enc["alg"] = json!("RSA-OAEP");
    enc["use"] = json!("enc");
    jwks["keys"].as_array_mut().unwrap().push(enc);
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();
    run.start_jwt("airflow-keycloak");
    let audience = ["cassandra", "account"];
    let etl = mint(
        &key,
        &keycloak_service_account(
            "airflow-orders-etl",
            &["cassandra-orders-writer"],
            &audience,
        ),
        &["--ttl", "300"],
    );
    let reporting = mint(
        &key,
        &keycloak_service_account("airflow-reporting", &["cassandra-reporting"], &audience),
        &["--ttl", "300"],
    );
    // The writer realm role on a client that is not Airflow's.
    let grafana = mint(
        &key,
        &keycloak_service_account("grafana", &["cassandra-orders-writer"], &audience),
        &[],
    );
    // A client without the audience mapper: Keycloak's default audience only.
    let no_mapper = mint(
        &key,
        &keycloak_service_account(
            "airflow-orders-etl",
            &["cassandra-orders-writer"],
            &["account"],
        ),
        &[],
    );

    run.gate(
        "airflow",
        &[],
        json!([
            connect(&etl),
            ok("INSERT INTO orders.daily_totals (day, total) VALUES ('2024-05-01', 10)"),
            ok("UPDATE orders.daily_totals SET total = 12 WHERE day = '2024-05-01'"),
            rows("SELECT * FROM orders.daily_totals WHERE day = '2024-05-01'", 1),
            {"batch": ["INSERT INTO orders.daily_totals (day, total) VALUES ('2024-05-02', 3)"], "type": "unlogged",
             "expect": "unauthorized", "message": "User airflow-orders-etl may not use UNLOGGED BATCH (guardrail of role orders_writer)"},
            {"batch": ["INSERT INTO orders.daily_totals (day, total) VALUES ('2024-05-02', 3)"], "type": "logged", "expect": "ok"},
            denied("TRUNCATE orders.daily_totals", "User airflow-orders-etl may not use TRUNCATE (guardrail of role orders_writer)"),
            denied("INSERT INTO customers.customers (id, name) VALUES (2, 'Grace')", &no_permission("airflow-orders-etl", "MODIFY", "<table customers.customers>")),
            denied("CREATE TABLE orders.monthly_totals (month text PRIMARY KEY, total int)", &no_permission("airflow-orders-etl", "CREATE", "<keyspace orders>")),
            connect(&reporting),
            rows("SELECT * FROM orders.daily_totals", 2),
            rows("SELECT * FROM customers.customers WHERE id = 1", 1),
            denied("SELECT * FROM orders.daily_totals WHERE total > 5 ALLOW FILTERING", "User airflow-reporting may not use ALLOW FILTERING (guardrail of role reporting_reader)"),
            denied("UPDATE orders.daily_totals SET total = 0 WHERE day = '2024-05-01'", &no_permission("airflow-reporting", "MODIFY", "<table orders.daily_totals>")),
            refused_unbound(&grafana, "grafana"),
            {"connect": "refused", "token": no_mapper, "reason": "token audience is not accepted"},
        ]),
    );

    run.expect_audit(
        &[
            json!({"event": "login", "type": "LOGIN_SUCCESS", "auth": "jwt", "principal": "airflow-orders-etl",
                   "roles": ["orders_writer"]}),
            json!({"event": "request", "principal": "airflow-orders-etl", "type": "UPDATE",
                   "keyspace": "orders", "table": "daily_totals", "decision": "allow", "outcome": "success"}),
            json!({"event": "request", "principal": "airflow-orders-etl", "type": "BATCH", "decision": "deny"}),
            json!({"event": "request", "principal": "airflow-orders-etl", "type": "TRUNCATE", "decision": "deny",
                   "reason": "User airflow-orders-etl may not use TRUNCATE (guardrail of role orders_writer)"}),
            json!({"event": "request", "principal": "airflow-orders-etl", "type": "UPDATE", "keyspace": "customers",
                   "decision": "deny"}),
            json!({"event": "login", "principal": "airflow-reporting", "roles": ["reporting_reader"]}),
            json!({"event": "request", "principal": "airflow-reporting", "type": "SELECT", "keyspace": "customers",
                   "decision": "allow", "outcome": "success"}),
            json!({"event": "request", "principal": "airflow-reporting", "type": "UPDATE", "decision": "deny",
                   "reason": no_permission("airflow-reporting", "MODIFY", "<table orders.daily_totals>")}),
            unbound_login("grafana"),
            json!({"event": "login", "type": "LOGIN_ERROR", "principal": null,
                   "reason": "token audience is not accepted"}),
        ],
        &[&etl, &reporting, &grafana, &no_mapper],
    );
    run.stop();
}

// ------------------------------------------------------------------------------------------
// Event-driven workflows: AWS Step Functions and Lambda with Cognito groups
// ------------------------------------------------------------------------------------------

const COGNITO_ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Wf3Kp9XyZ";
const COGNITO_CLIENT: &str = "4l6q1c0bm2u3e9tq8d7vr5k0ho";

/// A Cognito user pool access token: no aud, the app client in client_id, token_use access.
fn cognito_access_token(username: &str, groups: &[&str], client: &str) -> Value {
    json!({
        "sub": "5e2f8d3c-9a1b-4c7d-8e6f-0a1b2c3d4e5f",
        "cognito:groups": groups,
        "iss": COGNITO_ISSUER,
        "client_id": client,
        "origin_jti": "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
        "event_id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "auth_time": 1_700_000_000u64,
        "jti": "f0e1d2c3-b4a5-4968-8776-655443322110",
        "username": username,
    })
}

#[test]
fn aws_workflows_by_cognito_groups() {
    let mut run = Run::new(
        "aws-cognito",
        &[
            &format!("CREATE KEYSPACE orders {KEYSPACE}"),
            "CREATE TABLE orders.orders (id int PRIMARY KEY, status text)",
            "CREATE TABLE orders.order_events (order_id int, seq int, event text, PRIMARY KEY (order_id, seq))",
        ],
    );
    let key = run.keygen("cognito-Zx81Qa");
    run.start_jwt("aws-cognito");
    let workflow = mint(
        &key,
        &cognito_access_token("process-order-sfn", &["order-workflow"], COGNITO_CLIENT),
        &[],
    );
    let fulfilment = mint(
        &key,
        &cognito_access_token(
            "fulfilment-events-lambda",
            &["fulfilment-events"],
            COGNITO_CLIENT,
        ),
        &[],
    );
    let invoices = mint(
        &key,
        &cognito_access_token(
            "invoice-renderer-lambda",
            &["invoice-renderer"],
            COGNITO_CLIENT,
        ),
        &[],
    );
    let other_client = mint(
        &key,
        &cognito_access_token(
            "process-order-sfn",
            &["order-workflow"],
            "7hq2mobile0app0client0x1y2z",
        ),
        &[],
    );
    // The same user's ID token: aud instead of client_id, token_use id.
    let id_token = mint(
        &key,
        &json!({
            "sub": "5e2f8d3c-9a1b-4c7d-8e6f-0a1b2c3d4e5f",
            "cognito:groups": ["order-workflow"],
            "iss": COGNITO_ISSUER,
            "cognito:username": "process-order-sfn",
            "aud": COGNITO_CLIENT,
            "token_use": "id",
            "auth_time": 1_700_000_000u64,
        }),
        &[],
    );

    let workflow_sub = "process-order-sfn";
    run.gate(
        "cognito",
        &[],
        json!([
            connect(&workflow),
            ok("INSERT INTO orders.orders (id, status) VALUES (1, 'placed')"),
            ok("UPDATE orders.orders SET status = 'paid' WHERE id = 1"),
            ok("INSERT INTO orders.order_events (order_id, seq, event) VALUES (1, 1, 'paid')"),
            rows("SELECT * FROM orders.orders WHERE id = 1", 1),
            denied("TRUNCATE orders.order_events", "User process-order-sfn may not use TRUNCATE (guardrail of role orders_workflow)"),
            denied("DROP TABLE orders.orders", &no_permission(workflow_sub, "DROP", "<table orders.orders>")),
            connect(&fulfilment),
            ok("INSERT INTO orders.order_events (order_id, seq, event) VALUES (1, 2, 'shipped')"),
            rows("SELECT * FROM orders.order_events WHERE order_id = 1", 2),
            denied("INSERT INTO orders.order_events (order_id, seq, event) VALUES (1, 3, 'delivered') IF NOT EXISTS",
                   "User fulfilment-events-lambda may not use lightweight transactions"),
            denied("UPDATE orders.orders SET status = 'shipped' WHERE id = 1", &no_permission("fulfilment-events-lambda", "MODIFY", "<table orders.orders>")),
            connect(&invoices),
            rows("SELECT * FROM orders.orders WHERE id = 1", 1),
            denied("UPDATE orders.orders SET status = 'invoiced' WHERE id = 1", &no_permission("invoice-renderer-lambda", "MODIFY", "<table orders.orders>")),
            refused_unbound(&other_client, workflow_sub),
            {"connect": "refused", "token": id_token, "reason": "token lacks the claim \"client_id\""},
        ]),
    );

    run.expect_audit(
        &[
            json!({"event": "login", "type": "LOGIN_SUCCESS", "principal": workflow_sub, "roles": ["orders_workflow"]}),
            json!({"event": "request", "principal": workflow_sub, "type": "UPDATE", "keyspace": "orders",
                   "table": "orders", "decision": "allow", "outcome": "success"}),
            json!({"event": "request", "principal": workflow_sub, "type": "TRUNCATE", "decision": "deny"}),
            json!({"event": "request", "principal": workflow_sub, "type": "DROP_TABLE", "decision": "deny"}),
            json!({"event": "login", "principal": "fulfilment-events-lambda", "roles": ["order_events_append"]}),
            json!({"event": "request", "principal": "fulfilment-events-lambda", "type": "UPDATE",
                   "table": "order_events", "decision": "allow", "outcome": "success"}),
            json!({"event": "request", "principal": "fulfilment-events-lambda", "type": "UPDATE",
                   "table": "orders", "decision": "deny",
                   "reason": no_permission("fulfilment-events-lambda", "MODIFY", "<table orders.orders>")}),
            json!({"event": "request", "principal": "invoice-renderer-lambda", "type": "SELECT",
                   "decision": "allow", "outcome": "success"}),
            unbound_login(workflow_sub),
            json!({"event": "login", "type": "LOGIN_ERROR", "principal": null,
                   "reason": "token lacks the claim \"client_id\""}),
        ],
        &[&workflow, &fulfilment, &invoices, &other_client, &id_token],
    );
    run.stop();
}

// ------------------------------------------------------------------------------------------
// Service mesh: SPIFFE IDs in client certificates
// ------------------------------------------------------------------------------------------

#[test]
fn mesh_workloads_by_spiffe_id() {
    let mut run = Run::new(
        "spiffe-mesh",
        &[
            &format!("CREATE KEYSPACE payments {KEYSPACE}"),
            "CREATE TABLE payments.ledger (id int PRIMARY KEY, amount int)",
        ],
    );
    let dir = run.dir.clone();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    cql_token(&[
        "ca",
        "--out",
        &p("mesh-ca"),
        "--cn",
        "cluster.local mesh CA",
        "--o",
        "cluster.local",
    ]);
    cql_token(&[
        "cert",
        "--ca",
        &p("mesh-ca"),
        "--cn",
        "localhost",
        "--server",
        "--out",
        &p("nginx"),
    ]);
    // Workload certificates as a mesh issues them: an empty subject, one URI SAN.
    let svid = |name: &str, spiffe_id: &str| {
        cql_token(&[
            "cert",
            "--ca",
            &p("mesh-ca"),
            "--san-uri",
            spiffe_id,
            "--out",
            &p(name),
        ]);
        json!({"cert": p(&format!("{name}.pem")), "key": p(&format!("{name}.key"))})
    };
    let ledger_id = "spiffe://cluster.local/ns/payments/sa/ledger";
    let migrations_id = "spiffe://cluster.local/ns/payments/sa/schema-migrations";
    let dashboards_id = "spiffe://cluster.local/ns/reporting/sa/dashboards";
    let default_id = "spiffe://cluster.local/ns/default/sa/default";
    let staging_id = "spiffe://staging.acme.example/ns/payments/sa/ledger";
    let connect_as = |cert: Value| {
        let mut step = json!({"connect": "ok"});
        step["cert"] = cert["cert"].clone();
        step["key"] = cert["key"].clone();
        step
    };
    // A workload the policy binds to no role: refused at login, the connection ends.
    let refused_as = |cert: Value, spiffe_id: &str| {
        let mut step = connect_as(cert);
        step["connect"] = json!("refused");
        step["reason"] = json!(no_role(spiffe_id));
        step
    };
    let ledger = connect_as(svid("ledger", ledger_id));
    let migrations = connect_as(svid("migrations", migrations_id));
    let dashboards = connect_as(svid("dashboards", dashboards_id));
    let default = refused_as(svid("default", default_id), default_id);
    let staging = refused_as(svid("staging", staging_id), staging_id);
    run.start_mtls(
        "spiffe-mesh",
        &run.path("nginx.pem"),
        &run.path("nginx.key"),
        &run.path("mesh-ca/ca.pem"),
    );

    run.gate(
        "mesh",
        &["--ca", &p("mesh-ca/ca.pem")],
        json!([
            ledger,
            ok("INSERT INTO payments.ledger (id, amount) VALUES (1, 250)"),
            rows("SELECT * FROM payments.ledger WHERE id = 1", 1),
            denied("CREATE TABLE payments.refunds (id int PRIMARY KEY, amount int)", &no_permission(ledger_id, "CREATE", "<keyspace payments>")),
            denied("TRUNCATE payments.ledger", &format!("User {ledger_id} may not use TRUNCATE (guardrail of role payments_ledger)")),
            migrations,
            ok("CREATE TABLE payments.refunds (id int PRIMARY KEY, amount int)"),
            denied("DROP TABLE payments.refunds", &no_permission(migrations_id, "DROP", "<table payments.refunds>")),
            dashboards,
            rows("SELECT * FROM payments.ledger", 1),
            denied("SELECT * FROM payments.ledger WHERE amount > 100 ALLOW FILTERING", &format!("User {dashboards_id} may not use ALLOW FILTERING (guardrail of role payments_reader)")),
            denied("UPDATE payments.ledger SET amount = 0 WHERE id = 1", &no_permission(dashboards_id, "MODIFY", "<table payments.ledger>")),
            default,
            staging,
            // No certificate: ssl_verify_client on ends the TLS handshake.
            {"connect": "refused"},
        ]),
    );

    run.expect_audit(
        &[
            json!({"event": "login", "type": "LOGIN_SUCCESS", "auth": "mtls", "principal": ledger_id,
                   "roles": ["payments_ledger"]}),
            json!({"event": "request", "auth": "mtls", "principal": ledger_id, "type": "UPDATE",
                   "keyspace": "payments", "table": "ledger", "decision": "allow", "outcome": "success"}),
            json!({"event": "request", "principal": ledger_id, "type": "CREATE_TABLE", "decision": "deny"}),
            json!({"event": "request", "principal": ledger_id, "type": "TRUNCATE", "decision": "deny",
                   "rule": "~guardrail truncate = false"}),
            json!({"event": "login", "principal": migrations_id, "roles": ["payments_ledger", "payments_schema"]}),
            json!({"event": "request", "principal": migrations_id, "type": "CREATE_TABLE", "table": "refunds",
                   "decision": "allow", "outcome": "success"}),
            json!({"event": "request", "principal": migrations_id, "type": "DROP_TABLE", "decision": "deny"}),
            json!({"event": "login", "principal": dashboards_id, "roles": ["payments_reader"]}),
            json!({"event": "request", "principal": dashboards_id, "type": "SELECT", "decision": "allow",
                   "outcome": "success"}),
            json!({"event": "request", "principal": dashboards_id, "type": "UPDATE", "decision": "deny",
                   "reason": no_permission(dashboards_id, "MODIFY", "<table payments.ledger>")}),
            unbound_login(default_id),
            unbound_login(staging_id),
        ],
        &[],
    );
    let log = run.nginx.as_ref().unwrap().error_log();
    run.stop();
    assert!(!log.contains("exited on signal"), "{log}");
}

// ------------------------------------------------------------------------------------------
// People: cqlsh with Okta SSO
// ------------------------------------------------------------------------------------------

const OKTA_ISSUER: &str = "https://acme.okta.com/oauth2/default";

/// An Okta custom authorization server's access token with a groups claim.
fn okta_access_token(login: &str, groups: &[&str]) -> Value {
    let mut all = vec!["Everyone"];
    all.extend_from_slice(groups);
    json!({
        "ver": 1,
        "jti": "AT.7kq2V0h3mQ9xYzLw1bN5cD8eF4gH6iJ",
        "iss": OKTA_ISSUER,
        "aud": "api://cassandra",
        "cid": "0oa8cqlshnative",
        "uid": "00u1abcdEFGH2345",
        "scp": ["openid", "cassandra"],
        "auth_time": 1_700_000_000u64,
        "sub": login,
        "groups": all,
    })
}

#[test]
fn people_with_cqlsh_by_okta_groups() {
    let mut run = Run::new(
        "okta-cqlsh",
        &[
            &format!("CREATE KEYSPACE shop {KEYSPACE}"),
            "CREATE TABLE shop.carts (id int PRIMARY KEY, items text)",
            "INSERT INTO shop.carts (id, items) VALUES (1, 'socks')",
        ],
    );
    let key = run.keygen("okta-k1");
    run.start_jwt("okta-cqlsh");
    let reader = mint(
        &key,
        &okta_access_token("alice@acme.example", &["cassandra-readers"]),
        &[],
    );
    let operator = mint(
        &key,
        &okta_access_token("carol@acme.example", &["cassandra-operators"]),
        &[],
    );
    let admin = mint(
        &key,
        &okta_access_token("dave@acme.example", &["cassandra-admins"]),
        &[],
    );
    let both = mint(
        &key,
        &okta_access_token(
            "erin@acme.example",
            &["cassandra-operators", "cassandra-admins"],
        ),
        &[],
    );
    let nobody = mint(&key, &okta_access_token("frank@acme.example", &[]), &[]);

    // cqlsh, as people use it: the token as password.
    let cqlsh_as = |user: &str, token: &str, cql: &str| {
        Command::new(cqlsh())
            .args([
                "127.0.0.1",
                &run.port.to_string(),
                "-u",
                user,
                "-p",
                token,
                "-e",
                cql,
            ])
            .output()
            .unwrap()
    };
    let out = cqlsh_as("alice", &reader, "SELECT * FROM shop.carts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("socks"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cqlsh_as("carol", &operator, "TRUNCATE shop.carts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "TRUNCATE by an operator succeeded");
    assert!(
        stderr.contains("Unauthorized")
            && stderr.contains(
                "User carol@acme.example may not use TRUNCATE (guardrail of role operator)"
            ),
        "{stderr}"
    );

    run.gate(
        "okta",
        &[],
        json!([
            connect(&reader),
            rows("SELECT * FROM shop.carts WHERE id = 1", 1),
            denied(
                "SELECT * FROM shop.carts WHERE items = 'socks' ALLOW FILTERING",
                "User alice@acme.example may not use ALLOW FILTERING (guardrail of role reader)"
            ),
            denied(
                "INSERT INTO shop.carts (id, items) VALUES (2, 'hat')",
                &no_permission("alice@acme.example", "MODIFY", "<table shop.carts>")
            ),
            connect(&operator),
            ok("INSERT INTO shop.carts (id, items) VALUES (2, 'hat')"),
            ok("CREATE TABLE shop.notes (id int PRIMARY KEY, body text)"),
            denied(
                "TRUNCATE shop.carts",
                "User carol@acme.example may not use TRUNCATE (guardrail of role operator)"
            ),
            denied(
                "DROP TABLE shop.notes",
                &no_permission("carol@acme.example", "DROP", "<table shop.notes>")
            ),
            // In both operator and admin groups: guardrails only restrict.
            connect(&both),
            denied(
                "TRUNCATE shop.carts",
                "User erin@acme.example may not use TRUNCATE (guardrail of role operator)"
            ),
            connect(&admin),
            ok("TRUNCATE shop.carts"),
            rows("SELECT * FROM shop.carts", 0),
            ok("DROP TABLE shop.notes"),
            refused_unbound(&nobody, "frank@acme.example"),
        ]),
    );

    run.expect_audit(
        &[
            json!({"event": "login", "type": "LOGIN_SUCCESS", "principal": "alice@acme.example", "roles": ["reader"]}),
            json!({"event": "request", "principal": "alice@acme.example", "type": "SELECT", "keyspace": "shop",
                   "table": "carts", "decision": "allow", "outcome": "success"}),
            json!({"event": "request", "principal": "alice@acme.example", "type": "UPDATE", "decision": "deny"}),
            // cqlsh's statement (it keeps the semicolon), then the driver's.
            json!({"event": "request", "principal": "carol@acme.example", "type": "TRUNCATE",
                   "statement": "TRUNCATE shop.carts;", "decision": "deny"}),
            json!({"event": "request", "principal": "carol@acme.example", "type": "TRUNCATE", "decision": "deny",
                   "statement": "TRUNCATE shop.carts",
                   "reason": "User carol@acme.example may not use TRUNCATE (guardrail of role operator)",
                   "rule": "~role operator: guardrail truncate = false"}),
            json!({"event": "request", "principal": "carol@acme.example", "type": "CREATE_TABLE", "decision": "allow",
                   "outcome": "success"}),
            json!({"event": "request", "principal": "carol@acme.example", "type": "DROP_TABLE", "decision": "deny"}),
            json!({"event": "login", "principal": "erin@acme.example", "roles": ["admin", "operator"]}),
            json!({"event": "request", "principal": "dave@acme.example", "roles": ["admin"], "type": "TRUNCATE",
                   "decision": "allow", "outcome": "success"}),
            json!({"event": "request", "principal": "dave@acme.example", "type": "DROP_TABLE", "table": "notes",
                   "decision": "allow", "outcome": "success"}),
            unbound_login("frank@acme.example"),
        ],
        &[&reader, &operator, &admin, &both, &nobody],
    );
    run.stop();
}

// ------------------------------------------------------------------------------------------
// The shipped nginx.conf files
// ------------------------------------------------------------------------------------------

#[test]
fn every_recipe_nginx_conf_passes_nginx_t() {
    let dir = scratch_dir("recipe-nginx-t");
    let cql = dir.join("cql");
    std::fs::create_dir_all(&cql).unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    cql_token(&[
        "keygen",
        "--kid",
        "k1",
        "--alg",
        "RS256",
        "--out",
        &p("keys"),
    ]);
    cql_token(&["ca", "--out", &p("ca")]);
    cql_token(&[
        "cert",
        "--ca",
        &p("ca"),
        "--cn",
        "localhost",
        "--server",
        "--out",
        &p("server"),
    ]);
    for recipe in [
        "buildkite",
        "bitbucket-pipelines",
        "airflow-keycloak",
        "aws-cognito",
        "spiffe-mesh",
        "okta-cqlsh",
    ] {
        let conf = std::fs::read_to_string(recipe_file(recipe, "nginx.conf")).unwrap();
        // The files it names under cql/ (relative to NGINX's configuration folder).
        for word in conf.split_whitespace() {
            let Some(name) = word.trim_end_matches(';').strip_prefix("cql/") else {
                continue;
            };
            let source = match name.rsplit('.').next() {
                Some("toml") => recipe_file(recipe, "policy.toml"),
                Some("json") => dir.join("keys/jwks.json"),
                _ if name.contains("trust-bundle") => dir.join("ca/ca.pem"),
                _ if name.ends_with("-logins") => recipe_file(recipe, "logins.example"),
                Some("pem") => dir.join("server.pem"),
                Some("key") => dir.join("server.key"),
                _ => panic!("{recipe}: what is cql/{name}?"),
            };
            std::fs::copy(&source, cql.join(name)).unwrap();
        }
        let load = "load_module modules/ngx_stream_cql_module.so;\n";
        assert!(conf.contains(load), "{recipe}/nginx.conf loads the module");
        let text = conf
            .replace(load, &harness::load_module_lines())
            .replace(" cql/", &format!(" {}/", cql.display()))
            .replace("cassandra-1.internal", "127.0.0.1")
            .replace("cassandra-2.internal", "127.0.0.2")
            .replace("/var/log/nginx/cql-audit.log", &p("audit.log"));
        let (ok, out, _) = harness::test_config(&format!("recipe-nginx-t-{recipe}"), &text);
        assert!(ok, "{recipe}/nginx.conf fails nginx -t:\n{out}");
    }
}

// ------------------------------------------------------------------------------------------
// scripts/refresh-jwks
// ------------------------------------------------------------------------------------------

#[test]
fn refresh_jwks_installs_a_changed_key_set_and_reloads_nginx_only_then() {
    let dir = scratch_dir("recipe-refresh-jwks");
    let keys = dir.join("keys");
    cql_token(&[
        "keygen",
        "--kid",
        "k1",
        "--alg",
        "ES256",
        "--out",
        keys.to_str().unwrap(),
    ]);
    // A stand-in nginx on PATH that records its arguments.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = dir.join("nginx-calls");
    let fake = bin.join("nginx");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", calls.display()),
    )
    .unwrap();
    run_ok(Command::new("chmod").arg("+x").arg(&fake));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let target = dir.join("cql/jwks.json");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let refresh = |url: String| {
        Command::new(repo_dir().join("scripts/refresh-jwks"))
            .arg(url)
            .arg(&target)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let calls_made = || std::fs::read_to_string(&calls).unwrap_or_default();
    let url = format!("file://{}", keys.join("jwks.json").display());

    // New: installed, then nginx -t and nginx -s reload.
    let out = refresh(url.clone());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(keys.join("jwks.json")).unwrap()
    );
    assert_eq!(calls_made(), "-t\n-s reload\n");

    // Unchanged: nothing to do.
    let out = refresh(url.clone());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(calls_made(), "-t\n-s reload\n");

    // Rotated (a second key): installed and reloaded again.
    cql_token(&[
        "keygen",
        "--kid",
        "k2",
        "--alg",
        "ES256",
        "--out",
        keys.to_str().unwrap(),
    ]);
    let out = refresh(url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&target).unwrap().contains("\"k2\""));
    assert_eq!(calls_made(), "-t\n-s reload\n-t\n-s reload\n");

    // Not a key set, or unreachable: refused, the installed file stays, no reload.
    let before = std::fs::read(&target).unwrap();
    for (name, body) in [
        ("html", "<html>502 Bad Gateway</html>"),
        ("nokeys", "{\"keys\": 1}"),
    ] {
        let bad = dir.join(format!("{name}.json"));
        std::fs::write(&bad, body).unwrap();
        let out = refresh(format!("file://{}", bad.display()));
        assert!(!out.status.success(), "{name} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("refresh-jwks:"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = refresh(format!("file://{}/missing.json", dir.display()));
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&target).unwrap(), before);
    assert_eq!(calls_made(), "-t\n-s reload\n-t\n-s reload\n");
    // No temporary files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, ["jwks.json"]);
}
