//! `cql-explain`: what a policy decides on one statement for one identity, and why,
//! without NGINX. Prints the identity's roles, the guardrails that bound its requests and
//! the login the proxy uses toward Cassandra for it, each need of the statement with the
//! rule that decided it (and the same for every child of a BATCH), then the decision.
//! With `--nginx-conf`, also the request and connection limits of each server, with their
//! keys as they come out for this identity.
//!
//! Exit status: 0 allowed, 1 denied, 2 usage or policy error.

use std::process::ExitCode;

use std::path::{Path, PathBuf};

use ngx_stream_cql_module::classify::{classify, Kind, Rejection, Statement};
use ngx_stream_cql_module::identity::{identity_from_pem, Identity, Source};
use ngx_stream_cql_module::policy::{Decision, Explanation, Guards, Policy, RoleSet};
use serde_json::{Map, Value};

const USAGE: &str = "\
usage: cql-explain --policy FILE [identity options] [--keyspace KS]
                   [--nginx-conf FILE] \"STATEMENT\"

What the policy decides on STATEMENT for an identity, and which rule decided each
permission the statement needs (and each child of a BATCH); the guardrails that bound
the identity's requests and the login the proxy uses toward Cassandra for it.

options:
  --policy FILE         the policy (TOML), as cql_policy loads it
  --principal NAME      the identity's principal (default: from --claims or --cert)
  --group NAME          a group of the identity (repeatable)
  --attr NAME=VALUE     an attribute of the identity, e.g. uri=spiffe://... (repeatable)
  --source SOURCE       token (default) or certificate
  --claims JSON         a token's claims, e.g. '{\"sub\":\"alice\",\"groups\":[\"etl\"]}':
                        the principal from --principal-claim, groups from --roles-claim,
                        attributes from iss, aud, sub, azp, client_id, email,
                        preferred_username, email_verified (as the module takes them)
  --principal-claim C   the claim naming the principal (default: sub)
  --roles-claim C       the claim listing groups (default: groups)
  --cert FILE           a client certificate (PEM): the identity the module makes of it
  --keyspace KS         the connection's current keyspace (as after USE KS)
  --nginx-conf FILE     an NGINX configuration: for each server with cql_limit_req,
                        cql_limit_conn, cql_limit_in_flight or cql_dry_run, its limits,
                        their zones and their keys as they come out for the identity
  -h, --help            this text

STATEMENT may be - to read it from standard input.
exit status: 0 allowed, 1 denied, 2 usage or policy error";

/// What the command line asks.
struct Args {
    policy: String,
    principal: Option<String>,
    groups: Vec<String>,
    attributes: Vec<(String, String)>,
    source: Option<Source>,
    claims: Option<String>,
    principal_claim: String,
    roles_claim: String,
    cert: Option<String>,
    keyspace: Option<String>,
    nginx_conf: Option<String>,
    statement: String,
}

enum Parsed {
    Run(Box<Args>),
    Help,
}

fn parse_args(argv: &[String]) -> Result<Parsed, String> {
    let mut policy = None;
    let mut args = Args {
        policy: String::new(),
        principal: None,
        groups: Vec::new(),
        attributes: Vec::new(),
        source: None,
        claims: None,
        principal_claim: "sub".into(),
        roles_claim: "groups".into(),
        cert: None,
        keyspace: None,
        nginx_conf: None,
        statement: String::new(),
    };
    let mut statement = None;
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Parsed::Help);
        }
        if arg == "-" || !arg.starts_with('-') {
            if statement.is_some() {
                return Err(format!("one statement only (quote it): unexpected {arg:?}"));
            }
            statement = Some(arg.clone());
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match name {
            "--policy" => policy = Some(value()?),
            "--principal" => args.principal = Some(value()?),
            "--group" => args.groups.push(value()?),
            "--attr" => {
                let v = value()?;
                let (n, val) = v
                    .split_once('=')
                    .filter(|(n, _)| !n.is_empty())
                    .ok_or_else(|| format!("--attr needs NAME=VALUE, not {v:?}"))?;
                args.attributes.push((n.to_string(), val.to_string()));
            }
            "--source" => {
                args.source = Some(match value()?.as_str() {
                    "token" => Source::Token,
                    "certificate" => Source::Certificate,
                    other => {
                        return Err(format!("--source is token or certificate, not {other:?}"))
                    }
                })
            }
            "--claims" => args.claims = Some(value()?),
            "--principal-claim" => args.principal_claim = value()?,
            "--roles-claim" => args.roles_claim = value()?,
            "--cert" => args.cert = Some(value()?),
            "--keyspace" => args.keyspace = Some(value()?),
            "--nginx-conf" => args.nginx_conf = Some(value()?),
            _ => return Err(format!("unknown option {name}")),
        }
    }
    args.policy = policy.ok_or("--policy FILE is required")?;
    args.statement = statement.ok_or("no statement given")?;
    Ok(Parsed::Run(Box::new(args)))
}

/// A claim by exact name, or else by dotted path (`realm_access.roles`).
fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let found = match claims.get(name) {
        Some(v) => Some(v),
        None => {
            let mut parts = name.split('.');
            let first = parts.next()?;
            parts.try_fold(claims.get(first)?, |v, part| v.as_object()?.get(part))
        }
    };
    found.filter(|v| !v.is_null())
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The identity the options describe: a certificate's or claims' identity, then the
/// explicit options on top.
fn identity(args: &Args) -> Result<Identity, String> {
    let mut id = Identity {
        principal: String::new(),
        groups: Vec::new(),
        attributes: Vec::new(),
        expires_at: None,
        source: Source::Token,
    };
    if let Some(path) = &args.cert {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read certificate {path:?}: {e}"))?;
        id = identity_from_pem(&pem).map_err(|e| format!("certificate {path:?}: {e}"))?;
    }
    if let Some(json) = &args.claims {
        let value: Value =
            serde_json::from_str(json).map_err(|e| format!("--claims is not JSON: {e}"))?;
        let claims = value.as_object().ok_or("--claims must be a JSON object")?;
        if let Some(p) = lookup(claims, &args.principal_claim).and_then(Value::as_str) {
            id.principal = p.to_string();
        }
        if let Some(g) = lookup(claims, &args.roles_claim) {
            for g in strings(g) {
                if !id.groups.contains(&g) {
                    id.groups.push(g);
                }
            }
        }
        for name in [
            "iss",
            "sub",
            "azp",
            "client_id",
            "email",
            "preferred_username",
            "email_verified",
        ] {
            match claims.get(name) {
                Some(Value::String(s)) => id.attributes.push((name.into(), s.clone())),
                Some(Value::Bool(b)) if name == "email_verified" => {
                    id.attributes.push((name.into(), b.to_string()))
                }
                _ => {}
            }
            if name == "iss" {
                if let Some(aud) = claims.get("aud") {
                    for a in strings(aud) {
                        id.attributes.push(("aud".into(), a));
                    }
                }
            }
        }
    }
    if let Some(p) = &args.principal {
        id.principal = p.clone();
    }
    id.groups.extend(args.groups.iter().cloned());
    id.attributes.extend(args.attributes.iter().cloned());
    if let Some(s) = args.source {
        id.source = s;
    }
    if id.principal.is_empty() {
        return Err("no principal: give --principal, --claims or --cert".into());
    }
    Ok(id)
}

/// What Cassandra makes of a text the classifier rejects this way.
fn rejection_effect(r: Rejection) -> &'static str {
    match r {
        Rejection::Syntax => "Cassandra answers SyntaxException",
        Rejection::Invalid => "Cassandra answers InvalidRequest",
        Rejection::Unsupported => "beyond what the proxy classifies",
    }
}

fn verdict(allowed: bool) -> &'static str {
    if allowed {
        "ALLOW"
    } else {
        "DENY"
    }
}

/// Prints one statement's needs and decision, indented by `indent`.
fn print_statement(indent: &str, st: &Statement<'_>, e: &Explanation) {
    let mut about = format!("{} ({} {})", st.kind, st.category, st.operation);
    if let Some(ks) = &st.keyspace {
        about.push_str(&format!(", keyspace {ks}"));
    }
    if let Some(t) = &st.table {
        about.push_str(&format!(", table {t}"));
    }
    let flags: Vec<&str> = st.flags.names().collect();
    if !flags.is_empty() {
        about.push_str(&format!(", flags {}", flags.join(" ")));
    }
    println!("{indent}statement:  {about}");
    if let Some(why) = &st.unparsed {
        println!("{indent}unparsed:   {why}");
    }
    if let Some(r) = st.rejection {
        println!("{indent}rejection:  {r} ({})", rejection_effect(r));
    }
    for n in &e.needs {
        println!("{indent}  {:<5}  {}", verdict(n.allowed), n.need);
        println!("{indent}         by {}", n.rule);
    }
    println!("{indent}decision:   {}", verdict(e.decision.allowed));
    if !e.decision.allowed {
        println!("{indent}reason:     {}", e.decision.reason);
    }
    println!("{indent}rule:       {}", e.decision.rule);
}

fn run(args: &Args) -> Result<bool, String> {
    let policy = Policy::load(std::path::Path::new(&args.policy))?;
    let id = identity(args)?;
    let text = if args.statement == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| format!("cannot read the statement from standard input: {e}"))?;
        s
    } else {
        args.statement.clone()
    };
    let roles = policy.roles_for(&id);
    println!(
        "principal:  {} ({})",
        id.principal,
        match id.source {
            Source::Token => "token",
            Source::Certificate => "certificate",
        }
    );
    if !id.groups.is_empty() {
        println!("groups:     {}", id.groups.join(", "));
    }
    for (n, v) in &id.attributes {
        println!("attribute:  {n}={v}");
    }
    let shown = roles.names().collect::<Vec<_>>().join(", ");
    println!(
        "roles:      {}",
        if shown.is_empty() { "(none)" } else { &shown }
    );
    let rules = policy.guardrail_rules(&roles);
    if rules.is_empty() {
        println!("guardrails: (none)");
    }
    for (i, rule) in rules.iter().enumerate() {
        println!(
            "{}{rule}",
            if i == 0 {
                "guardrails: "
            } else {
                "            "
            }
        );
    }
    match policy.upstream_login_of(&roles) {
        Some((role, login)) => println!("upstream:   {login} (upstream_login of role {role})"),
        None => println!("upstream:   the server's service login (cql_upstream_auth)"),
    }
    if let Some(conf) = &args.nginx_conf {
        let conf = nginx_conf::Conf::read(Path::new(conf))?;
        print_limits(&conf, &policy, &roles, &id);
    }
    // Untrimmed: a `--` comment needs its line end, and positions in syntax errors count
    // from the text as given.
    let st = classify(&text, args.keyspace.as_deref());
    let mut e = policy.explain(&id.principal, &roles, &st);
    if e.decision.allowed {
        if let Some(d) = text_refusal(&policy.guards(&roles), &st, &text) {
            e.decision = d;
        }
    }
    print_statement("", &st, &e);
    for (i, child) in st.children.iter().enumerate() {
        println!();
        println!("child {}:", i + 1);
        let ce = policy.explain(&id.principal, &roles, child);
        print_statement("  ", child, &ce);
    }
    Ok(e.decision.allowed)
}

/// What the guardrails that the text alone decides make of it: its size, and for a
/// `BEGIN BATCH ... APPLY BATCH`, its children and bytes. (Consistency levels and page
/// sizes travel with each request, not in the text.)
fn text_refusal(guards: &Guards, st: &Statement<'_>, text: &str) -> Option<Decision> {
    let mut check = guards.check_statement_size(text.len());
    if check.is_ok() && st.kind == Kind::Batch {
        check = guards.check_batch(st.children.len(), text.len());
    }
    check.err().map(|r| Decision {
        allowed: false,
        reason: r.reason,
        rule: r.rule,
    })
}

/// `jwt` or `mtls`, as `$cql_auth_method` says it.
fn auth_method(source: Source) -> &'static str {
    match source {
        Source::Token => "jwt",
        Source::Certificate => "mtls",
    }
}

/// A limit's KEY as it comes out for the identity: `$cql_principal`, `$cql_roles` (the
/// roles in policy order, comma-separated) and `$cql_auth_method` are the identity's;
/// every other variable is NGINX's, taken per connection.
fn render_key(key: &str, policy: &Policy, roles: &RoleSet, id: &Identity) -> String {
    let mut out = String::new();
    for part in nginx_conf::variables(key) {
        match part {
            nginx_conf::Part::Text(t) => out.push_str(t),
            nginx_conf::Part::Var("cql_principal") => out.push_str(&id.principal),
            nginx_conf::Part::Var("cql_roles") => {
                let names: Vec<&str> = policy.roles_in_policy_order(roles).collect();
                out.push_str(&names.join(","));
            }
            nginx_conf::Part::Var("cql_auth_method") => out.push_str(auth_method(id.source)),
            nginx_conf::Part::Var(other) => {
                out.push_str(&format!("${other} (per connection)"));
            }
        }
    }
    out
}

/// Each server of the configuration that limits requests or connections or runs dry.
fn print_limits(conf: &nginx_conf::Conf, policy: &Policy, roles: &RoleSet, id: &Identity) {
    println!("nginx conf: {}", conf.path.display());
    for note in &conf.notes {
        println!("  note: {note}");
    }
    if conf.servers.is_empty() {
        println!(
            "  no server sets cql_limit_req, cql_limit_conn, cql_limit_in_flight or cql_dry_run"
        );
    }
    let key = |k: &str| format!("key {k} -> {}", render_key(k, policy, roles, id));
    for server in &conf.servers {
        println!(
            "  server {} ({}): dry run {}",
            server
                .listen
                .as_deref()
                .map_or("(no listen)".into(), |l| format!("listen {l}")),
            server.at,
            if server.dry_run { "on" } else { "off" }
        );
        for l in &server.limit_req {
            match conf.req_zones.iter().find(|z| z.name == l.zone) {
                Some(z) => {
                    println!(
                        "    cql_limit_req {}: rate {}, burst {}, zone size {}",
                        l.zone, z.rate, l.burst, z.size
                    );
                    println!("      {}", key(&z.key));
                }
                None => println!(
                    "    cql_limit_req {}: no cql_limit_req_zone of that name",
                    l.zone
                ),
            }
        }
        for (directive, what, limits) in [
            ("cql_limit_conn", "connections", &server.limit_conn),
            (
                "cql_limit_in_flight",
                "requests in flight",
                &server.limit_in_flight,
            ),
        ] {
            for l in limits {
                match conf.conn_zones.iter().find(|z| z.name == l.zone) {
                    Some(z) => {
                        println!(
                            "    {directive} {}: {} {what}, zone size {}",
                            l.zone, l.max, z.size
                        );
                        println!("      {}", key(&z.key));
                    }
                    None => println!(
                        "    {directive} {}: no cql_limit_conn_zone of that name",
                        l.zone
                    ),
                }
            }
        }
    }
}

/// Just enough of NGINX's configuration syntax to find the `stream` servers' limits:
/// `directive args;` and `directive args { ... }`, `#` comments, quoted strings, and
/// `include` of a single file.
mod nginx_conf {
    use super::{Path, PathBuf};

    /// How deep includes may nest.
    const MAX_INCLUDE_DEPTH: usize = 8;

    /// One directive, where it was written, and its block.
    #[derive(Debug)]
    pub struct Directive {
        pub name: String,
        pub args: Vec<String>,
        /// `nginx.conf line 12`.
        pub at: String,
        pub block: Option<Vec<Directive>>,
    }

    #[derive(Debug)]
    pub struct ReqZone {
        pub name: String,
        pub key: String,
        pub size: String,
        pub rate: String,
    }

    #[derive(Debug)]
    pub struct ConnZone {
        pub name: String,
        pub key: String,
        pub size: String,
    }

    #[derive(Debug)]
    pub struct LimitReq {
        pub zone: String,
        pub burst: String,
    }

    #[derive(Debug)]
    pub struct LimitConn {
        pub zone: String,
        pub max: String,
    }

    #[derive(Debug)]
    pub struct Server {
        pub at: String,
        /// The arguments of the server's first `listen`.
        pub listen: Option<String>,
        pub dry_run: bool,
        pub limit_req: Vec<LimitReq>,
        pub limit_conn: Vec<LimitConn>,
        pub limit_in_flight: Vec<LimitConn>,
    }

    /// What the configuration says about limits.
    #[derive(Debug)]
    pub struct Conf {
        pub path: PathBuf,
        pub req_zones: Vec<ReqZone>,
        pub conn_zones: Vec<ConnZone>,
        /// The servers that set a limit or `cql_dry_run`.
        pub servers: Vec<Server>,
        /// What was not followed (includes of patterns, unreadable includes).
        pub notes: Vec<String>,
    }

    impl Conf {
        pub fn read(path: &Path) -> Result<Conf, String> {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {:?}: {e}", path.display().to_string()))?;
            let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let mut notes = Vec::new();
            let tree = parse_file(&text, path, &base, 0, &mut notes)?;
            let mut conf = Conf {
                path: path.to_path_buf(),
                req_zones: Vec::new(),
                conn_zones: Vec::new(),
                servers: Vec::new(),
                notes,
            };
            for stream in tree.iter().filter(|d| d.name == "stream") {
                conf.stream(stream.block.as_deref().unwrap_or(&[]))?;
            }
            Ok(conf)
        }

        fn stream(&mut self, block: &[Directive]) -> Result<(), String> {
            let mut dry_run = false;
            for d in block {
                match d.name.as_str() {
                    "cql_limit_req_zone" => {
                        let (name, size) = zone_arg(d)?;
                        self.req_zones.push(ReqZone {
                            name,
                            size,
                            key: d.args.first().cloned().unwrap_or_default(),
                            rate: named_arg(d, "rate").unwrap_or_else(|| "(none)".into()),
                        });
                    }
                    "cql_limit_conn_zone" => {
                        let (name, size) = zone_arg(d)?;
                        self.conn_zones.push(ConnZone {
                            name,
                            size,
                            key: d.args.first().cloned().unwrap_or_default(),
                        });
                    }
                    "cql_dry_run" => dry_run = on_off(d)?,
                    _ => {}
                }
            }
            for server in block.iter().filter(|d| d.name == "server") {
                let inner = server.block.as_deref().unwrap_or(&[]);
                let mut s = Server {
                    at: server.at.clone(),
                    listen: None,
                    dry_run,
                    limit_req: Vec::new(),
                    limit_conn: Vec::new(),
                    limit_in_flight: Vec::new(),
                };
                let mut relevant = false;
                for d in inner {
                    match d.name.as_str() {
                        "listen" if s.listen.is_none() => s.listen = Some(d.args.join(" ")),
                        "cql_dry_run" => {
                            s.dry_run = on_off(d)?;
                            relevant = true;
                        }
                        "cql_limit_req" => {
                            let zone = named_arg(d, "zone").ok_or_else(|| {
                                format!("{}: cql_limit_req needs zone=NAME", d.at)
                            })?;
                            s.limit_req.push(LimitReq {
                                zone,
                                burst: named_arg(d, "burst").unwrap_or_else(|| "0".into()),
                            });
                            relevant = true;
                        }
                        "cql_limit_conn" | "cql_limit_in_flight" => {
                            let [zone, max] = d.args.as_slice() else {
                                return Err(format!("{}: {} needs NAME N", d.at, d.name));
                            };
                            let l = LimitConn {
                                zone: zone.clone(),
                                max: max.clone(),
                            };
                            if d.name == "cql_limit_conn" {
                                s.limit_conn.push(l);
                            } else {
                                s.limit_in_flight.push(l);
                            }
                            relevant = true;
                        }
                        _ => {}
                    }
                }
                if relevant {
                    self.servers.push(s);
                }
            }
            Ok(())
        }
    }

    /// The value of `name=VALUE` among a directive's arguments.
    fn named_arg(d: &Directive, name: &str) -> Option<String> {
        d.args.iter().find_map(|a| {
            a.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::to_string)
        })
    }

    /// `zone=NAME:SIZE`.
    fn zone_arg(d: &Directive) -> Result<(String, String), String> {
        named_arg(d, "zone")
            .and_then(|z| {
                z.split_once(':')
                    .map(|(n, s)| (n.to_string(), s.to_string()))
            })
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| format!("{}: {} needs zone=NAME:SIZE", d.at, d.name))
    }

    fn on_off(d: &Directive) -> Result<bool, String> {
        match d.args.as_slice() {
            [v] if v == "on" => Ok(true),
            [v] if v == "off" => Ok(false),
            _ => Err(format!("{}: {} takes on or off", d.at, d.name)),
        }
    }

    /// A piece of a text with variables.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Part<'a> {
        Text(&'a str),
        /// `$name` or `${name}`, without the `$` and braces.
        Var(&'a str),
    }

    /// The text and variables of `s`, in order. A `$` that starts no name is text.
    pub fn variables(s: &str) -> Vec<Part<'_>> {
        let name_len = |t: &str| {
            t.bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count()
        };
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(at) = rest.find('$') {
            let after = &rest[at + 1..];
            let (var, len) = if let Some(inner) = after.strip_prefix('{') {
                let n = name_len(inner);
                if n > 0 && inner[n..].starts_with('}') {
                    (Some(&inner[..n]), n + 2)
                } else {
                    (None, 0)
                }
            } else {
                let n = name_len(after);
                ((n > 0).then(|| &after[..n]), n)
            };
            match var {
                Some(v) => {
                    if at > 0 {
                        parts.push(Part::Text(&rest[..at]));
                    }
                    parts.push(Part::Var(v));
                    rest = &after[len..];
                }
                None => {
                    parts.push(Part::Text(&rest[..at + 1]));
                    rest = after;
                }
            }
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest));
        }
        parts
    }

    #[derive(Debug, PartialEq)]
    enum Token {
        Word(String),
        Semicolon,
        Open,
        Close,
    }

    /// Tokens with their lines: words (quoted or not), `;`, `{`, `}`; comments dropped.
    fn tokenize(text: &str, file: &str) -> Result<Vec<(Token, usize)>, String> {
        let mut out = Vec::new();
        let mut chars = text.chars().peekable();
        let mut line = 1;
        while let Some(&c) = chars.peek() {
            match c {
                '\n' => {
                    line += 1;
                    chars.next();
                }
                c if c.is_whitespace() => {
                    chars.next();
                }
                '#' => {
                    while chars.peek().is_some_and(|&c| c != '\n') {
                        chars.next();
                    }
                }
                ';' | '{' | '}' => {
                    chars.next();
                    out.push((
                        match c {
                            ';' => Token::Semicolon,
                            '{' => Token::Open,
                            _ => Token::Close,
                        },
                        line,
                    ));
                }
                '"' | '\'' => {
                    let start = line;
                    chars.next();
                    let mut word = String::new();
                    loop {
                        match chars.next() {
                            None => {
                                return Err(format!(
                                    "{file} line {start}: unterminated quoted string"
                                ))
                            }
                            Some(q) if q == c => break,
                            Some('\\') => match chars.next() {
                                Some(e @ ('"' | '\'' | '\\')) => word.push(e),
                                Some('n') => word.push('\n'),
                                Some('t') => word.push('\t'),
                                Some('r') => word.push('\r'),
                                Some(other) => {
                                    if other == '\n' {
                                        line += 1;
                                    }
                                    word.push('\\');
                                    word.push(other);
                                }
                                None => {
                                    return Err(format!(
                                        "{file} line {start}: unterminated quoted string"
                                    ))
                                }
                            },
                            Some(ch) => {
                                if ch == '\n' {
                                    line += 1;
                                }
                                word.push(ch);
                            }
                        }
                    }
                    out.push((Token::Word(word), start));
                }
                _ => {
                    let mut word = String::new();
                    while let Some(&ch) = chars.peek() {
                        if ch.is_whitespace() || matches!(ch, ';' | '}') {
                            break;
                        }
                        if ch == '{' && !word.ends_with('$') {
                            break;
                        }
                        chars.next();
                        if ch == '\\' {
                            if let Some(e) = chars.next() {
                                word.push(e);
                            }
                            continue;
                        }
                        word.push(ch);
                        if ch == '{' {
                            // `${name}`: the brace closes the variable, not a block.
                            for ch in chars.by_ref() {
                                word.push(ch);
                                if ch == '}' {
                                    break;
                                }
                            }
                        }
                    }
                    out.push((Token::Word(word), line));
                }
            }
        }
        Ok(out)
    }

    fn parse_file(
        text: &str,
        path: &Path,
        base: &Path,
        depth: usize,
        notes: &mut Vec<String>,
    ) -> Result<Vec<Directive>, String> {
        let file = path.display().to_string();
        let tokens = tokenize(text, &file)?;
        let mut it = tokens.into_iter().peekable();
        let directives = parse_block(&mut it, &file, base, depth, notes, false)?;
        Ok(directives)
    }

    fn parse_block(
        it: &mut std::iter::Peekable<std::vec::IntoIter<(Token, usize)>>,
        file: &str,
        base: &Path,
        depth: usize,
        notes: &mut Vec<String>,
        nested: bool,
    ) -> Result<Vec<Directive>, String> {
        let mut out = Vec::new();
        loop {
            let (name, line) = match it.next() {
                None if nested => {
                    return Err(format!("{file}: unexpected end of file, expecting \"}}\""))
                }
                None => return Ok(out),
                Some((Token::Close, _)) if nested => return Ok(out),
                Some((Token::Word(w), line)) => (w, line),
                Some((t, line)) => {
                    let shown = match t {
                        Token::Semicolon => ";",
                        Token::Open => "{",
                        _ => "}",
                    };
                    return Err(format!("{file} line {line}: unexpected \"{shown}\""));
                }
            };
            let mut args = Vec::new();
            let block = loop {
                match it.next() {
                    Some((Token::Word(w), _)) => args.push(w),
                    Some((Token::Semicolon, _)) => break None,
                    Some((Token::Open, _)) => {
                        break Some(parse_block(it, file, base, depth, notes, true)?)
                    }
                    Some((Token::Close, l)) => {
                        return Err(format!("{file} line {l}: unexpected \"}}\""))
                    }
                    None => {
                        return Err(format!(
                            "{file} line {line}: unexpected end of file, expecting \";\" or \"}}\""
                        ))
                    }
                }
            };
            if name == "include" && block.is_none() {
                out.extend(include(&args, file, line, base, depth, notes)?);
                continue;
            }
            out.push(Directive {
                name,
                args,
                at: format!("{file} line {line}"),
                block,
            });
        }
    }

    /// The directives of an included file, or none (and a note) when the include is a
    /// pattern, nests too deep or cannot be read.
    fn include(
        args: &[String],
        file: &str,
        line: usize,
        base: &Path,
        depth: usize,
        notes: &mut Vec<String>,
    ) -> Result<Vec<Directive>, String> {
        let [target] = args else {
            return Err(format!("{file} line {line}: include takes one file"));
        };
        let mut skip = |why: &str| {
            notes.push(format!(
                "include {target} ({file} line {line}) not followed: {why}"
            ));
            Ok(Vec::new())
        };
        if target.contains(['*', '?', '[']) {
            return skip("a pattern");
        }
        if target.contains('$') {
            return skip("a variable");
        }
        if depth + 1 >= MAX_INCLUDE_DEPTH {
            return skip("includes nest too deep");
        }
        let path = base.join(target);
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_file(&text, &path, base, depth + 1, notes),
            Err(e) => skip(&format!("cannot read it: {e}")),
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(a)) => a,
        Err(e) => {
            eprintln!("cql-explain: {e}\n(cql-explain --help tells the usage)");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("cql-explain: {e}");
            ExitCode::from(2)
        }
    }
}
