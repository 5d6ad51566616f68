//! With `cql on`, every byte of real CQL traffic passes through NGINX unchanged and in
//! order, whatever the read boundaries, while the module follows the frames of both
//! directions and counts them.

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use harness::replay::{connections, sessions, Connection, FakeUpstream, Received};
use harness::{free_port, wait_for, Nginx};

/// One server that proxies to `upstream`, logging the module's counters per connection.
fn stream_body(listen: u16, upstream: u16, cql: &str) -> String {
    format!(
        "log_format counts '$remote_port $cql_protocol_version $cql_client_frames \
         $cql_server_frames $cql_client_segments $cql_server_segments';\n\
         server {{\n\
             listen 127.0.0.1:{listen};\n\
             proxy_pass 127.0.0.1:{upstream};\n\
             cql {cql};\n\
             access_log logs/counts.log counts;\n\
         }}"
    )
}

/// The access-log fields of the connection whose client used `port`.
fn counts_of(nginx: &Nginx, port: u16) -> Vec<String> {
    let prefix = format!("{port} ");
    wait_for(Duration::from_secs(10), || {
        nginx
            .read_log("counts.log")
            .lines()
            .find(|l| l.starts_with(&prefix))
            .map(|l| l.split(' ').map(str::to_string).collect())
    })
    .unwrap_or_else(|| panic!("no access-log line for client port {port}"))
}

fn assert_identical(conn: &Connection, got: &Received) {
    let name = format!("{} conn {}", conn.session, conn.conn);
    assert!(
        got.by_server == conn.c2s,
        "{name}: client bytes changed on the way"
    );
    assert!(
        got.by_client == conn.s2c,
        "{name}: server bytes changed on the way"
    );
}

/// Connections that open with a protocol version the module refuses (the driver's
/// DSE_V1/DSE_V2 probes) are covered by their own test.
fn speaks_supported_version(conn: &Connection) -> bool {
    (3..=5).contains(&conn.client_version())
}

#[test]
fn every_capture_passes_byte_identical_and_frames_are_counted() {
    let upstream = FakeUpstream::bind();
    let port = free_port();
    let nginx = Nginx::start("captures", &stream_body(port, upstream.port, "on"));
    let mut replayed = 0;
    for session in sessions() {
        for conn in connections(&session) {
            if !speaks_supported_version(&conn) {
                continue;
            }
            for seed in [1u64, 7] {
                let got = upstream.replay(&conn, port, seed + u64::from(conn.conn));
                assert_identical(&conn, &got);
                let fields = counts_of(&nginx, got.client_port);
                let name = format!("{session} conn {} seed {seed}", conn.conn);
                assert_eq!(
                    fields[1],
                    conn.client_version().to_string(),
                    "{name}: version"
                );
                assert_eq!(
                    fields[2],
                    conn.c2s_frames.to_string(),
                    "{name}: client frames"
                );
                assert_eq!(
                    fields[3],
                    conn.s2c_frames.to_string(),
                    "{name}: server frames"
                );
                replayed += 1;
            }
        }
    }
    assert!(replayed >= 40, "only {replayed} connections replayed");
    nginx.stop();
}

#[test]
fn with_cql_off_bytes_pass_and_nothing_is_counted() {
    let upstream = FakeUpstream::bind();
    let port = free_port();
    let nginx = Nginx::start("cql-off", &stream_body(port, upstream.port, "off"));
    let conn = connections("py-v4-plain").remove(0);
    let got = upstream.replay(&conn, port, 3);
    assert_identical(&conn, &got);
    assert_eq!(counts_of(&nginx, got.client_port)[2], "-");
    nginx.stop();
}

#[test]
fn reload_keeps_open_connections_working() {
    let upstream = FakeUpstream::bind();
    let port = free_port();
    let nginx = Nginx::start("reload", &stream_body(port, upstream.port, "on"));
    let conn = connections("py-v5-lz4").remove(0);
    let (prefix, master) = (nginx.prefix.clone(), nginx.pid());
    let got = upstream.replay_with(&conn, port, 11, move |_| {
        harness::reload(&prefix, master);
    });
    assert_identical(&conn, &got);
    let fields = counts_of(&nginx, got.client_port);
    assert_eq!(fields[2], conn.c2s_frames.to_string(), "client frames");
    assert_eq!(fields[3], conn.s2c_frames.to_string(), "server frames");
    // And the new worker serves new connections.
    let again = upstream.replay(&conn, port, 12);
    assert_identical(&conn, &again);
    nginx.stop();
}

/// Reads what the proxy sent back until it closed the connection.
fn reply_until_closed(client: &mut TcpStream) -> Vec<u8> {
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reply = Vec::new();
    client
        .read_to_end(&mut reply)
        .expect("the proxy closes the connection");
    reply
}

/// Splits an ERROR envelope into (header byte, stream, code, message).
fn decode_error(reply: &[u8]) -> (u8, i16, i32, String) {
    assert!(reply.len() > 15, "no ERROR envelope: {reply:?}");
    assert_eq!(reply[4], 0x00, "opcode ERROR");
    let len = u32::from_be_bytes(reply[5..9].try_into().unwrap()) as usize;
    assert_eq!(reply.len(), 9 + len, "exactly one envelope");
    let code = i32::from_be_bytes(reply[9..13].try_into().unwrap());
    let n = u16::from_be_bytes(reply[13..15].try_into().unwrap()) as usize;
    let message = String::from_utf8(reply[15..15 + n].to_vec()).expect("utf-8 message");
    (
        reply[0],
        i16::from_be_bytes([reply[2], reply[3]]),
        code,
        message,
    )
}

#[test]
fn a_stream_that_is_not_cql_gets_a_protocol_error_and_an_error_log_line() {
    let upstream = FakeUpstream::bind();
    let port = free_port();
    let nginx = Nginx::start("not-cql", &stream_body(port, upstream.port, "on"));
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let (_, stream, code, message) = decode_error(&reply_until_closed(&mut client));
    assert_eq!((stream, code), (0, 0x000A));
    assert_eq!(
        message,
        "Invalid or unsupported protocol version (71); supported versions are (3/v3, 4/v4, 5/v5)"
    );
    let log = nginx.stop();
    assert!(
        log.contains("[error]")
            && log.contains("cql: closing connection: client sent protocol version 71, which is not CQL v3, v4 or v5"),
        "error log:\n{log}"
    );
}

#[test]
fn a_driver_probing_newer_versions_is_told_which_ones_to_use() {
    let upstream = FakeUpstream::bind();
    let port = free_port();
    let nginx = Nginx::start("probe", &stream_body(port, upstream.port, "on"));
    // The Python driver's first two connections: OPTIONS as DSE_V2 (0x42), then DSE_V1 (0x41).
    let probes: Vec<Connection> = connections("py-negotiate")
        .into_iter()
        .filter(|c| !speaks_supported_version(c))
        .collect();
    assert_eq!(probes.len(), 2);
    for probe in probes {
        let version = probe.client_version();
        let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        client.write_all(&probe.c2s).expect("write");
        let (header, stream, code, message) = decode_error(&reply_until_closed(&mut client));
        assert_eq!(header & 0x80, 0x80, "a response");
        assert_eq!((stream, code), (0, 0x000A));
        assert_eq!(
            message,
            format!("Invalid or unsupported protocol version ({version}); supported versions are (3/v3, 4/v4, 5/v5)")
        );
    }
    let log = nginx.stop();
    assert!(
        log.contains("[info]") && log.contains("client sent protocol version 66"),
        "error log:\n{log}"
    );
}

#[test]
fn a_frame_above_the_handshake_cap_closes_the_connection() {
    let upstream = FakeUpstream::bind();
    let port = free_port();
    let body = stream_body(port, upstream.port, "on")
        .replace("cql on;", "cql on;\ncql_max_handshake_frame_size 8k;");
    let nginx = Nginx::start("handshake-cap", &body);
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // A v4 STARTUP announcing a 9000-byte body, before any authentication.
    client
        .write_all(&[0x04, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x23, 0x28])
        .expect("write");
    let reply = reply_until_closed(&mut client);
    assert!(reply.is_empty(), "nothing is answered: {reply:?}");
    let log = nginx.stop();
    assert!(
        log.contains("cql: closing connection: client sent an invalid CQL stream: frame body of 9000 bytes exceeds the limit of 8192 bytes"),
        "error log:\n{log}"
    );
}
