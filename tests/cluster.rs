//! The gate in front of a cluster, with real drivers: the Rust `scylla` driver (token-aware by
//! default) and the Python driver (default load-balancing policy) run their workload through
//! NGINX in front of the development server, alone on another loopback address or as a
//! three-node cluster, in both layouts of `cql_topology`: the drivers discover only proxy
//! addresses, every connection the server sees is NGINX's, per-node proxies keep token-aware
//! routing, and a node's DOWN and UP reach the drivers under its proxy's address. Then TLS
//! on both sides of the proxy: `listen ... ssl` toward the driver, `proxy_ssl` toward the
//! server.

mod harness;

use std::collections::BTreeSet;
use std::fmt::Display;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};

use harness::cluster::{
    runtime, scylla_connected, scylla_hosts, scylla_session, DevCluster, Gate, PyDriver,
};
use harness::{free_port, wait_for, DevServer, Nginx};
use serde_json::json;

/// The one identity of these tests: creates keyspaces, and owns every `cl_*` keyspace.
const POLICY: &str = r#"
[roles.app]
grant = [
    { permissions = ["CREATE"], on = "ALL KEYSPACES" },
    { permissions = ["ALL"], on = "KEYSPACE cl_*" },
]

[[bind]]
role = "app"
principals = ["app"]
"#;

/// Keys each driver writes and reads in its workload.
const KEYS: usize = 30;

/// Turns a driver error into a test message naming the step.
fn step<E: Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The `scylla` driver's whole workload: keyspace and table `keyspace.kv`, prepared INSERT
/// and SELECT of `keys` keys, a logged batch with a prepared and a query child, count(*).
async fn scylla_workload(session: &Session, keyspace: &str, keys: usize) -> Result<(), String> {
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
            (),
        )
        .await
        .map_err(step("CREATE KEYSPACE"))?;
    session
        .query_unpaged(
            format!("CREATE TABLE IF NOT EXISTS {keyspace}.kv (k int PRIMARY KEY, v text)"),
            (),
        )
        .await
        .map_err(step("CREATE TABLE"))?;
    // The replication of the new keyspace, for token-aware routing from the first EXECUTE.
    session
        .refresh_metadata()
        .await
        .map_err(step("refresh metadata"))?;
    scylla_keys(session, keyspace, 0, keys).await?;

    let n = i32::try_from(keys).map_err(step("key count"))?;
    let insert = session
        .prepare(format!("INSERT INTO {keyspace}.kv (k, v) VALUES (?, ?)"))
        .await
        .map_err(step("PREPARE INSERT"))?;
    let mut batch = Batch::new(BatchType::Logged);
    batch.append_statement(insert);
    batch.append_statement(
        format!(
            "INSERT INTO {keyspace}.kv (k, v) VALUES ({}, 'b{}')",
            n + 1,
            n + 1
        )
        .as_str(),
    );
    session
        .batch(&batch, ((n, format!("b{n}")), ()))
        .await
        .map_err(step("BATCH"))?;
    let (count,): (i64,) = session
        .query_unpaged(format!("SELECT count(*) FROM {keyspace}.kv"), ())
        .await
        .map_err(step("SELECT count(*)"))?
        .into_rows_result()
        .map_err(step("count(*) rows"))?
        .single_row()
        .map_err(step("count(*) row"))?;
    if count != i64::from(n) + 2 {
        return Err(format!("count(*): expected {}, got {count}", n + 2));
    }
    Ok(())
}

/// Prepared INSERT, then SELECT, of keys `first..first + count` of `keyspace.kv`.
async fn scylla_keys(
    session: &Session,
    keyspace: &str,
    first: usize,
    count: usize,
) -> Result<(), String> {
    let mut insert = session
        .prepare(format!("INSERT INTO {keyspace}.kv (k, v) VALUES (?, ?)"))
        .await
        .map_err(step("PREPARE INSERT"))?;
    let mut select = session
        .prepare(format!("SELECT v FROM {keyspace}.kv WHERE k = ?"))
        .await
        .map_err(step("PREPARE SELECT"))?;
    // Both are: the driver may retry them on another node when one goes down under them.
    insert.set_is_idempotent(true);
    select.set_is_idempotent(true);
    let first = i32::try_from(first).map_err(step("first key"))?;
    let last = first + i32::try_from(count).map_err(step("key count"))?;
    for k in first..last {
        session
            .execute_unpaged(&insert, (k, format!("v{k}")))
            .await
            .map_err(step(&format!("INSERT key {k}")))?;
    }
    for k in first..last {
        let (v,): (String,) = session
            .execute_unpaged(&select, (k,))
            .await
            .map_err(step(&format!("SELECT key {k}")))?
            .into_rows_result()
            .map_err(step("SELECT rows"))?
            .single_row()
            .map_err(step(&format!("SELECT key {k}: one row")))?;
        if v != format!("v{k}") {
            return Err(format!("key {k}: expected v{k}, got {v}"));
        }
    }
    Ok(())
}

/// The Python driver through `host:port` with a token, connected.
fn python_driver(gate: &Gate, host: &str, port: u16, token: &str, extra: &[&str]) -> PyDriver {
    let port = port.to_string();
    let mut args = vec!["--host", host, "--port", &port, "--token", token];
    args.extend_from_slice(extra);
    let mut driver = PyDriver::start(&gate.dir, &args);
    driver.ok(json!({"cmd": "connect"}));
    driver
}

/// Fails unless every connection the development cluster accepted came from `source`.
fn assert_only_from(cluster: &DevCluster, source: &str) {
    let accepted = cluster.connections();
    assert!(!accepted.is_empty(), "the cluster accepted no connection");
    let stray: Vec<_> = accepted
        .iter()
        .filter(|a| !a.client.starts_with(&format!("{source}:")))
        .collect();
    assert!(
        stray.is_empty(),
        "connections that did not come from NGINX ({source}): {stray:#?}"
    );
}

/// Fails unless the cluster served exactly `expected` EXECUTEs on `table` since the last
/// reset, each on the node owning its token, and every node served some.
fn assert_routed_to_owners(cluster: &DevCluster, table: &str, expected: usize, driver: &str) {
    let served = cluster.served();
    let executes: Vec<_> = served
        .iter()
        .filter(|s| s.opcode == "EXECUTE" && s.table.as_deref() == Some(table))
        .collect();
    assert_eq!(
        executes.len(),
        expected,
        "{driver}: EXECUTEs on {table} the cluster served: {executes:#?}"
    );
    let misrouted: Vec<_> = executes
        .iter()
        .filter(|s| s.token.is_none() || s.owner.as_deref() != Some(s.node.as_str()))
        .collect();
    assert!(
        misrouted.is_empty(),
        "{driver}: {} of {} EXECUTEs on {table} did not land on the owner of their token: \
         {misrouted:#?}",
        misrouted.len(),
        executes.len()
    );
    let nodes: BTreeSet<&str> = executes.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(
        nodes.len(),
        cluster.nodes.len(),
        "{driver}: the keys did not reach every node: {nodes:?}"
    );
}

/// Waits until the Python driver has seen `event` (`{"type", "change", "address"}`).
fn wait_for_event(driver: &mut PyDriver, event: serde_json::Value) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    wait_for(Duration::from_secs(10), || {
        let answer = driver.ok(json!({"cmd": "events"}));
        seen = answer["events"].as_array().cloned().unwrap_or_default();
        seen.contains(&event).then_some(())
    })
    .unwrap_or_else(|| panic!("no event {event}; the driver saw {seen:?}"));
    seen
}

/// Waits until the `scylla` driver has (or has no) open connection to `address`.
fn wait_for_scylla(session: &Session, address: &str, connected: bool) {
    wait_for(Duration::from_secs(20), || {
        (scylla_connected(session, address) == Some(connected)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "scylla: node {address} connected is {:?}, expected {connected}",
            scylla_connected(session, address)
        )
    });
}

#[test]
fn drivers_work_through_nginx_on_another_address_than_the_node() {
    let gate = Gate::new("cluster-single", POLICY);
    let token = gate.token("app");
    let server = DevServer::start(&[]);
    let port = free_port();
    let proxy = format!("127.0.0.2:{port}");
    let nginx = Nginx::start(
        "cluster-single",
        &format!(
            "server {{\n\
                 listen {proxy};\n\
                 proxy_pass 127.0.0.1:{upstream};\n\
                 {gate}\
             }}",
            upstream = server.port,
            gate = gate.directives(),
        ),
    );

    // The driver dials the address system.local names: the proxy's, not the node's.
    runtime()
        .block_on(async {
            let session = scylla_session(&proxy, "app", &token).await?;
            assert_eq!(scylla_hosts(&session), std::slice::from_ref(&proxy));
            scylla_workload(&session, "cl_single_rs", KEYS).await?;
            assert_eq!(scylla_hosts(&session), std::slice::from_ref(&proxy));
            Ok::<(), String>(())
        })
        .unwrap_or_else(|e| panic!("scylla: {e}\n--- error log\n{}", nginx.error_log()));

    let mut py = python_driver(&gate, "127.0.0.2", port, &token, &[]);
    py.ok(json!({"cmd": "workload", "keyspace": "cl_single_py", "keys": KEYS}));
    assert_eq!(py.hosts(), [proxy]);
    drop(py);
    nginx.stop();
}

#[test]
fn the_proxy_stands_for_a_three_node_cluster() {
    let gate = Gate::new("cluster-proxy", POLICY);
    let token = gate.token("app");
    let cluster = DevCluster::start(&["127.0.1.1", "127.0.1.2", "127.0.1.3"]);
    let port = free_port();
    let proxies = [format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}")];
    let upstreams: String = cluster
        .nodes
        .iter()
        .map(|n| format!("server {n};\n"))
        .collect();
    let nginx = Nginx::start(
        "cluster-proxy",
        &format!(
            "upstream cluster {{\n{upstreams}}}\n\
             server {{\n\
                 listen {a};\n\
                 listen {b};\n\
                 proxy_pass cluster;\n\
                 proxy_bind 127.0.0.9;\n\
                 {gate}\
                 cql_topology proxy {a} {b};\n\
             }}",
            a = proxies[0],
            b = proxies[1],
            gate = gate.directives(),
        ),
    );

    let mut py = python_driver(&gate, "127.0.0.2", port, &token, &[]);
    py.ok(json!({"cmd": "workload", "keyspace": "cl_proxy_py", "keys": KEYS}));
    let hosts = py.ok(json!({"cmd": "hosts"}));
    let listed: Vec<(&str, bool)> = hosts["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| (h["address"].as_str().unwrap_or(""), h["up"] == true))
        .collect();
    assert_eq!(
        listed,
        [(proxies[0].as_str(), true), (proxies[1].as_str(), true)],
        "the Python driver's hosts: {hosts}"
    );

    runtime()
        .block_on(async {
            let session = scylla_session(&proxies[1], "app", &token).await?;
            assert_eq!(scylla_hosts(&session), proxies);
            scylla_workload(&session, "cl_proxy_rs", KEYS).await?;
            assert_eq!(scylla_hosts(&session), proxies);
            Ok::<(), String>(())
        })
        .unwrap_or_else(|e| panic!("scylla: {e}\n--- error log\n{}", nginx.error_log()));

    assert_only_from(&cluster, "127.0.0.9");
    drop(py);
    nginx.stop();
}

#[test]
fn per_node_proxies_keep_token_aware_routing_and_announce_a_node_down_and_up() {
    let gate = Gate::new("cluster-nodes", POLICY);
    let token = gate.token("app");
    let cluster = DevCluster::start(&[
        "127.0.3.1,dc=dc1,rack=r1",
        "127.0.3.2,dc=dc1,rack=r2",
        "127.0.3.3,dc=dc1,rack=r3",
    ]);
    let port = free_port();
    let proxies: Vec<String> = (1..=3).map(|i| format!("127.0.2.{i}:{port}")).collect();
    let mut body = String::new();
    for (node, proxy) in cluster.nodes.iter().zip(&proxies) {
        body.push_str(&format!("cql_topology_node {node} {proxy};\n"));
    }
    for (node, proxy) in cluster.nodes.iter().zip(&proxies) {
        body.push_str(&format!(
            "server {{\n\
                 listen {proxy};\n\
                 proxy_pass {node};\n\
                 proxy_bind 127.0.0.9;\n\
                 {gate}\
                 cql_topology nodes;\n\
             }}\n",
            gate = gate.directives(),
        ));
    }
    let nginx = Nginx::start("cluster-nodes", &body);
    let rt = runtime();

    // Python: the proxies with the nodes' racks; each key's EXECUTE on its owner.
    let mut py = python_driver(&gate, "127.0.2.1", port, &token, &[]);
    let hosts = py.ok(json!({"cmd": "hosts"}));
    let listed: Vec<(&str, &str, &str)> = hosts["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| {
            (
                h["address"].as_str().unwrap_or(""),
                h["dc"].as_str().unwrap_or(""),
                h["rack"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let want: Vec<(&str, &str, &str)> = proxies
        .iter()
        .zip(["r1", "r2", "r3"])
        .map(|(p, rack)| (p.as_str(), "dc1", rack))
        .collect();
    assert_eq!(listed, want, "the Python driver's hosts: {hosts}");
    py.ok(json!({"cmd": "workload", "keyspace": "cl_nodes_py", "keys": KEYS}));
    assert_routed_to_owners(&cluster, "cl_nodes_py.kv", 2 * KEYS, "python");

    // scylla: the same, through another proxy.
    cluster.reset();
    let session = rt
        .block_on(async {
            let session = scylla_session(&proxies[2], "app", &token).await?;
            scylla_workload(&session, "cl_nodes_rs", KEYS).await?;
            Ok::<Session, String>(session)
        })
        .unwrap_or_else(|e| panic!("scylla: {e}\n--- error log\n{}", nginx.error_log()));
    assert_eq!(scylla_hosts(&session), proxies);
    let racks: Vec<(Option<String>, Option<String>)> = session
        .get_cluster_state()
        .get_nodes_info()
        .iter()
        .map(|n| (n.datacenter.clone(), n.rack.clone()))
        .collect();
    for (dc, rack) in &racks {
        assert_eq!(dc.as_deref(), Some("dc1"), "scylla's nodes: {racks:?}");
        assert!(rack.is_some(), "scylla's nodes: {racks:?}");
    }
    assert_routed_to_owners(&cluster, "cl_nodes_rs.kv", 2 * KEYS, "scylla");
    assert_only_from(&cluster, "127.0.0.9");

    // Node 2 stops: node 1 announces it, under its proxy's address.
    py.ok(json!({"cmd": "listen"}));
    cluster.stop_node(cluster.node(1));
    let down = json!({"type": "STATUS_CHANGE", "change": "DOWN", "address": proxies[1]});
    let events = wait_for_event(&mut py, down);
    assert!(
        events
            .iter()
            .all(|e| e["type"] == "STATUS_CHANGE"
                && proxies.iter().any(|p| e["address"] == p.as_str())),
        "events name only proxies, and no TOPOLOGY_CHANGE: {events:?}"
    );
    // Both drivers keep working on the two nodes left, and hold the host down. (The Python
    // driver ignores a DOWN event while its pool to the host still looks open, which the
    // closed connection can still do when the event arrives; then the first request on it
    // marks the host down, and goes on to another host.)
    wait_for_scylla(&session, &proxies[1], false);
    rt.block_on(scylla_keys(&session, "cl_nodes_rs", 100, KEYS))
        .unwrap_or_else(|e| panic!("scylla with node 2 down: {e}"));
    py.ok(json!({"cmd": "keys", "keyspace": "cl_nodes_py", "from": 100, "count": KEYS}));
    py.ok(json!({"cmd": "wait_host", "address": proxies[1], "up": false, "timeout": 10}));

    // Node 2 is back: announced UP, and the drivers route its keys to it again.
    cluster.start_node(cluster.node(1));
    let up = json!({"type": "STATUS_CHANGE", "change": "UP", "address": proxies[1]});
    wait_for_event(&mut py, up);
    py.ok(json!({"cmd": "wait_host", "address": proxies[1], "up": true, "timeout": 20}));
    wait_for_scylla(&session, &proxies[1], true);
    // The drivers' new connections to node 2 came through NGINX too.
    assert_only_from(&cluster, "127.0.0.9");
    cluster.reset();
    py.ok(json!({"cmd": "keys", "keyspace": "cl_nodes_py", "from": 200, "count": KEYS}));
    rt.block_on(scylla_keys(&session, "cl_nodes_rs", 200, KEYS))
        .unwrap_or_else(|e| panic!("scylla after node 2 came back: {e}"));
    assert_routed_to_owners(&cluster, "cl_nodes_py.kv", 2 * KEYS, "python, node 2 back");
    assert_routed_to_owners(&cluster, "cl_nodes_rs.kv", 2 * KEYS, "scylla, node 2 back");

    drop(session);
    drop(py);
    let log = nginx.stop();
    assert!(!log.contains("topology: left out"), "{log}");
}

#[test]
fn tls_toward_the_driver_and_toward_the_server_with_tokens_and_policy() {
    let gate = Gate::new("cluster-tls", POLICY);
    let upstream_name = "cassandra.test";
    gate.certificates(upstream_name);
    let token = gate.token("app");
    let server = DevServer::start(&[]);
    let (port, wrong_ca_port, tls_upstream) = (free_port(), free_port(), free_port());
    // The development server speaks no TLS: a plain stream server stands for a Cassandra
    // with client encryption on, in the same configuration.
    let gated = |listen: u16, upstream_host: &str, trusted: &str| {
        format!(
            "server {{\n\
                 listen 127.0.0.1:{listen} ssl;\n\
                 ssl_certificate {cert};\n\
                 ssl_certificate_key {key};\n\
                 proxy_pass {upstream_host}:{tls_upstream};\n\
                 proxy_ssl on;\n\
                 proxy_ssl_verify on;\n\
                 proxy_ssl_trusted_certificate {trusted};\n\
                 proxy_ssl_name {upstream_name};\n\
                 {gate}\
             }}\n",
            cert = gate.path("server.pem"),
            key = gate.path("server.key"),
            gate = gate.directives(),
        )
    };
    // NGINX keeps one upstream TLS session per upstream peer, shared by every `server` that
    // proxies to it, and a resumed session is not verified again: the server that trusts the
    // wrong CA reaches the TLS server through an address of its own.
    let body = format!(
        "server {{\n\
             listen 127.0.0.1:{tls_upstream} ssl;\n\
             listen 127.0.0.3:{tls_upstream} ssl;\n\
             ssl_certificate {cert};\n\
             ssl_certificate_key {key};\n\
             proxy_pass 127.0.0.1:{upstream};\n\
         }}\n\
         {good}{bad}",
        cert = gate.path("upstream.pem"),
        key = gate.path("upstream.key"),
        upstream = server.port,
        good = gated(port, "127.0.0.1", &gate.path("ca/ca.pem")),
        bad = gated(wrong_ca_port, "127.0.0.3", &gate.path("rogue-ca/ca.pem")),
    );
    let nginx = Nginx::start("cluster-tls", &body);
    let ca = gate.path("ca/ca.pem");

    let mut py = python_driver(&gate, "127.0.0.1", port, &token, &["--ca", &ca]);
    assert_eq!(py.hosts(), [format!("127.0.0.1:{port}")]);
    py.ok(json!({"cmd": "workload", "keyspace": "cl_tls", "keys": 5}));
    py.ok(json!({
        "cmd": "cql", "statement": "SELECT * FROM secret.t", "expect": "unauthorized",
        "message": "User app has no SELECT permission on <table secret.t> or any of its parents",
    }));
    py.ok(json!({
        "cmd": "cql", "statement": "SELECT k, v FROM cl_tls.kv WHERE k = 1", "expect": "ok",
    }));
    drop(py);

    // The server's certificate is not signed by the CA NGINX trusts: no session.
    let mut py = PyDriver::start(
        &gate.dir,
        &[
            "--host",
            "127.0.0.1",
            "--port",
            &wrong_ca_port.to_string(),
            "--token",
            &token,
            "--ca",
            &ca,
            // The driver notices the closed connection only when its timeout ends.
            "--connect-timeout",
            "2",
        ],
    );
    let answer = py.call(json!({"cmd": "connect"}));
    assert_eq!(
        answer["ok"], false,
        "connected past an unverified server: {answer}"
    );
    drop(py);
    // OpenSSL's reason follows the words, e.g. "(21:unable to verify the first certificate)".
    wait_for(Duration::from_secs(5), || {
        nginx
            .error_log()
            .contains("upstream SSL certificate verify error: (")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no verify error in the log:\n{}", nginx.error_log()));
    nginx.stop();
}
