//! Private NATS JetStream servers and clusters: start, kill, start again.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use synchdb_testkit::{nats, NatsCluster, NatsServer};

/// The `INFO {...}` line a NATS server sends right after a client connects.
fn info(port: u16) -> std::io::Result<String> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line)
}

/// `GET path` on a monitoring port: the whole HTTP response.
fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The JetStream meta leader's name according to `/jsz` on a monitoring port.
fn meta_leader(monitor_port: u16) -> Option<String> {
    let jsz = http_get(monitor_port, "/jsz");
    let rest = &jsz[jsz.find("\"meta_cluster\"")?..];
    let rest = &rest[rest.find("\"leader\": \"")? + "\"leader\": \"".len()..];
    Some(rest[..rest.find('"')?].to_string())
}

#[track_caller]
fn assert_jetstream(port: u16) -> String {
    let line = info(port).unwrap_or_else(|e| panic!("no INFO from port {port}: {e}"));
    assert!(line.starts_with("INFO {"), "{line}");
    assert!(line.contains("\"jetstream\":true"), "{line}");
    line
}

fn keep() -> bool {
    std::env::var_os("SYNCHDB_TESTKIT_KEEP").is_some_and(|v| v == "1" || v == "true")
}

#[test]
fn server_kill_and_start_again() {
    let server = NatsServer::start().unwrap();
    let port = server.port();
    assert_eq!(server.host(), "127.0.0.1");
    assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));
    assert_ne!(server.monitor_port(), port);
    assert_jetstream(port);
    assert!(server.store_dir().join("jetstream").is_dir());
    let first_pid = server.pid().expect("running");

    server.kill();
    assert_eq!(server.pid(), None);
    assert!(info(port).is_err(), "port {port} still answers after kill");
    server.kill(); // no-op

    server.start_again().unwrap();
    assert_eq!(server.port(), port);
    let pid = server.pid().expect("running again");
    assert_ne!(pid, first_pid);
    assert_jetstream(port);
    server.start_again().unwrap(); // no-op while running
    assert_eq!(server.pid(), Some(pid));

    server.restart().unwrap();
    assert_jetstream(port);

    server.stop().unwrap();
    assert_eq!(server.pid(), None);
    assert!(info(port).is_err());
    server.stop().unwrap(); // no-op

    let dir = server.store_dir();
    drop(server);
    if !keep() {
        assert!(!dir.exists(), "{} still exists", dir.display());
    }
}

#[test]
fn shared_server() {
    let server = nats();
    assert!(std::ptr::eq(server, nats()));
    assert_jetstream(server.port());
}

#[test]
fn cluster_kill_node_and_start_again() {
    let started = Instant::now();
    let cluster = NatsCluster::start().unwrap();
    eprintln!("cluster ready after {:?}", started.elapsed());
    let urls = cluster.urls();
    assert_eq!(urls.len(), 3);
    assert_eq!(cluster.url(), urls.join(","));
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert_eq!(node.name(), format!("n{}", i + 1));
        assert_eq!(urls[i], format!("nats://127.0.0.1:{}", node.port()));
        assert_eq!(node.url(), urls[i]);
        let line = assert_jetstream(node.port());
        assert!(line.contains(&format!("\"server_name\":\"{}\"", node.name())), "{line}");
        assert!(line.contains("\"cluster\":\"synchdb\""), "{line}");
        assert!(node.pid().is_some());
    }

    // Kill the JetStream meta leader: the worst case for the others.
    let leader = meta_leader(cluster.node(0).monitor_port()).expect("a meta leader");
    let victim = cluster.nodes().iter().find(|n| n.name() == leader).expect("leader is a node");
    let port = victim.port();
    victim.kill();
    assert_eq!(victim.pid(), None);
    assert!(info(port).is_err(), "port {port} still answers after kill");
    for other in cluster.nodes().iter().filter(|n| n.name() != leader) {
        assert_jetstream(other.port());
    }

    let started = Instant::now();
    victim.start_again().unwrap();
    eprintln!("killed node ready again after {:?}", started.elapsed());
    assert_eq!(victim.port(), port);
    assert!(victim.pid().is_some());
    for node in cluster.nodes() {
        assert_jetstream(node.port());
        let health = http_get(node.monitor_port(), "/healthz");
        assert!(health.starts_with("HTTP/1.1 200") || health.starts_with("HTTP/1.0 200"), "{health}");
        let new_leader = meta_leader(node.monitor_port());
        assert!(new_leader.is_some(), "{} knows no meta leader", node.name());
        eprintln!("{}: meta leader {new_leader:?}", node.name());
    }

    let root = cluster.node(0).store_dir().parent().unwrap().parent().unwrap().to_path_buf();
    drop(cluster);
    if !keep() {
        assert!(!root.exists(), "{} still exists", root.display());
    }
}

#[test]
fn cluster_stop_node_and_start_again() {
    let cluster = NatsCluster::start().unwrap();
    let node = cluster.node(2);
    node.stop().unwrap();
    assert_eq!(node.pid(), None);
    assert!(info(node.port()).is_err());
    assert_jetstream(cluster.node(0).port());
    node.start_again().unwrap();
    assert_jetstream(node.port());
}
