//! A cluster of routed `nats-server` processes on loopback.

use std::time::Duration;

use crate::{
    config::NatsServerBuilder,
    port::free_port,
    probe::{jetstream_answers, wait_until},
    server::NatsServer,
};

/// How long the cluster may take to elect a JetStream meta leader.
const QUORUM_TIMEOUT: Duration = Duration::from_secs(30);

/// Servers routed to each other with JetStream, each with its own store.
///
/// ```no_run
/// let cluster = backbone_testkit::NatsCluster::start(3);
/// let urls = cluster.urls();
/// ```
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until JetStream answers on each.
    ///
    /// # Panics
    /// When `size` is 0, no binary is found, or JetStream does not form a
    /// quorum within 30 seconds.
    pub fn start(size: usize) -> Self {
        assert!(size > 0, "a cluster needs at least one node");
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect();
        let nodes = route_ports
            .iter()
            .enumerate()
            .map(|(i, route_port)| {
                let mut builder = NatsServerBuilder::default()
                    .server_name(format!("n{}", i + 1))
                    .config_text(format!(
                        "cluster {{\n  name: backbone\n  listen: \"127.0.0.1:{route_port}\"\n  routes: [{}]\n}}",
                        routes.join(", ")
                    ));
                builder.cluster_member = true;
                builder.start()
            })
            .collect();
        let mut cluster = Self { nodes };
        cluster.wait_for_quorum();
        cluster
    }

    /// Client URLs of every node, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the cluster has no nodes (never, once started).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `index` (0-based).
    pub fn node(&mut self, index: usize) -> &mut NatsServer {
        &mut self.nodes[index]
    }

    /// Kills node `index` with SIGKILL.
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill9();
    }

    /// Starts node `index` again on its port and store, and waits until
    /// JetStream answers on every running node.
    pub fn restart(&mut self, index: usize) {
        self.nodes[index].stop();
        self.nodes[index].start();
        self.wait_for_quorum();
    }

    fn wait_for_quorum(&mut self) {
        for node in self.nodes.iter_mut() {
            if !node.is_running() {
                continue;
            }
            let port = node.port();
            let answered = wait_until(QUORUM_TIMEOUT, || jetstream_answers(port));
            assert!(
                answered,
                "JetStream on cluster node port {port} did not answer; log:\n{}",
                node.log()
            );
        }
    }
}
