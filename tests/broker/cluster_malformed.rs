//! The malformed-packet battery ([`crate::malformed::BATTERY`]) against a
//! node of a three-node cluster. The codec and the connection machine are
//! the single node's, but in cluster mode a CONNECT claims its client id
//! cluster-wide and PUBLISH and SUBSCRIBE go through NATS: a bad packet
//! must get the same answer there, and leave the cluster serving.

use std::time::Duration;

use sluice::codec::QoS;

use crate::cluster_nodes::{client, receive, wait_for_route, SluiceCluster};
use crate::harness::*;
use crate::malformed::BATTERY;

#[test]
fn the_malformed_packet_battery_gets_the_same_answers_from_a_cluster_node() {
    let cluster = SluiceCluster::start(3, 3, 3);
    for (name, check) in BATTERY {
        eprintln!("battery: {name}");
        check(cluster.port(0));
    }
    // The node under fire still routes to the other nodes.
    for v in [V4, V5] {
        let mut sub = client(cluster.port(1), v, "battery-after-sub");
        sub.subscribe(1, &[("battery/after", sub_opts(QoS::AtLeastOnce))]);
        let mut publisher = client(cluster.port(0), v, "battery-after-pub");
        wait_for_route(&mut publisher, &mut sub, "battery/after");
        publisher.publish(publish("battery/after", b"still", QoS::AtLeastOnce, 7));
        let got = receive(&mut sub, Duration::from_secs(10)).expect("delivered across nodes");
        assert_eq!(&*got.payload, b"still", "{v:?}");
        publisher.disconnect();
        sub.disconnect();
    }
}
