//! The server helpers against the real binary.

use std::net::TcpStream;

use backbone_testkit::{NatsCluster, NatsServer, find_nats_server};

fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn binary_is_found() {
    let path = find_nats_server().expect("nats-server installed (scripts/ensure-nats-server)");
    assert!(path.is_file());
}

#[test]
fn server_restarts_on_the_same_port_and_store() {
    let mut server = NatsServer::new();
    let port = server.port();
    let store = server.store_dir();
    assert!(accepts(port));
    assert!(server.url().ends_with(&port.to_string()));

    server.kill9();
    assert!(!server.is_running());
    assert!(!accepts(port));

    server.start();
    assert!(accepts(port));
    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(server.store_dir(), store);
    assert!(store.is_dir());
    assert!(accepts(port));
}

#[test]
fn dropping_the_server_stops_it() {
    let server = NatsServer::builder()
        .token("t0ken")
        .max_payload(2048)
        .start();
    let port = server.port();
    assert!(server.log().contains("Server is ready"), "{}", server.log());
    drop(server);
    assert!(!accepts(port));
}

#[test]
fn three_node_cluster_forms_and_survives_a_node_restart() {
    let mut cluster = NatsCluster::start(3);
    assert_eq!(cluster.urls().len(), 3);
    cluster.kill(2);
    assert!(!cluster.node(2).is_running());
    cluster.restart(2);
    assert!(cluster.node(2).is_running());
}
