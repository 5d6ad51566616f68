//! `cql-explain`: what a policy decides on one statement for one identity, and why,
//! without NGINX. Prints the identity's roles, each need of the statement with the rule
//! that decided it (and the same for every child of a BATCH), then the decision.
//!
//! Exit status: 0 allowed, 1 denied, 2 usage or policy error.

use std::process::ExitCode;

use ngx_stream_cql_module::classify::{classify, Rejection, Statement};
use ngx_stream_cql_module::identity::{identity_from_pem, Identity, Source};
use ngx_stream_cql_module::policy::{Explanation, Policy};
use serde_json::{Map, Value};

const USAGE: &str = "\
usage: cql-explain --policy FILE [identity options] [--keyspace KS] \"STATEMENT\"

What the policy decides on STATEMENT for an identity, and which rule decided each
permission the statement needs (and each child of a BATCH).

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
    // Untrimmed: a `--` comment needs its line end, and positions in syntax errors count
    // from the text as given.
    let st = classify(&text, args.keyspace.as_deref());
    let e = policy.explain(&id.principal, &roles, &st);
    print_statement("", &st, &e);
    for (i, child) in st.children.iter().enumerate() {
        println!();
        println!("child {}:", i + 1);
        let ce = policy.explain(&id.principal, &roles, child);
        print_statement("  ", child, &ce);
    }
    Ok(e.decision.allowed)
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
