//! The NATS test cluster itself (the ground cluster mode stands on): three
//! servers form a cluster, a stream with three replicas stores a message,
//! still does with one server killed (a quorum of two), and the killed
//! server rejoins.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream;

use crate::nats_peer::NatsCluster;

/// Bound on every NATS operation of these tests.
const WITHIN: Duration = Duration::from_secs(20);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WITHIN, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WITHIN:?}"))
}

/// Publishes `payload` to `subject` and returns the stream that stored it
/// and its sequence, once JetStream has acknowledged it (stored on a quorum
/// of the replicas). Right after a server dies the stream may be electing
/// a new leader: the publish is retried with the same message id, which
/// JetStream deduplicates, until acknowledged within [`WITHIN`].
async fn publish(js: &jetstream::Context, subject: &str, payload: &'static str) -> (String, u64) {
    let attempt = || async {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", payload);
        js.publish_with_headers(subject.to_owned(), headers, payload.into())
            .await?
            .await
            .map_err(async_nats::Error::from)
    };
    let ack = bounded("publish", async {
        loop {
            match attempt().await {
                Ok(ack) => return ack,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await;
    (ack.stream, ack.sequence)
}

#[test]
fn three_servers_store_a_message_with_three_replicas() {
    let mut cluster = NatsCluster::start(3);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let servers: Vec<async_nats::ServerAddr> = cluster
            .urls()
            .iter()
            .map(|url| url.parse().expect("a server URL"))
            .collect();
        let client = bounded("connect", async_nats::connect(servers))
            .await
            .expect("connect to the cluster");
        let js = jetstream::new(client);
        let stream = bounded(
            "create stream",
            js.create_stream(jetstream::stream::Config {
                name: "SMOKE".into(),
                subjects: vec!["smoke.>".into()],
                num_replicas: 3,
                ..Default::default()
            }),
        )
        .await
        .expect("create a stream with three replicas");
        assert_eq!(stream.cached_info().config.num_replicas, 3);
        assert_eq!(publish(&js, "smoke.a", "one").await, ("SMOKE".into(), 1));

        // Two of three replicas are a quorum: still acknowledged.
        cluster.kill(2);
        assert_eq!(publish(&js, "smoke.b", "two").await, ("SMOKE".into(), 2));
    });

    cluster.restart(2);
    runtime.block_on(async {
        // A client of the restarted server alone sees both messages.
        let client = bounded("connect", async_nats::connect(cluster.url(2)))
            .await
            .expect("connect to the restarted server");
        let js = jetstream::new(client);
        let mut stream = bounded("get stream", js.get_stream("SMOKE"))
            .await
            .expect("the stream");
        let info = bounded("stream info", stream.info()).await.expect("info");
        assert_eq!(info.state.messages, 2);
        assert_eq!(publish(&js, "smoke.c", "three").await, ("SMOKE".into(), 3));
    });
}
