//! Interoperability with the `rumqttc` client: its MQTT 3.1.1 API
//! (`rumqttc::{AsyncClient, MqttOptions}`) and its MQTT 5 API
//! (`rumqttc::v5`).
//!
//! Each client's event loop runs in a task that forwards incoming packets
//! to a channel and stops at the first error (no reconnection), so a test
//! sees exactly what the broker sent. Dropping a client aborts that task,
//! which drops the socket without DISCONNECT. Every wait is bounded.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::harness::Sluice;

/// Bound on any single wait for a packet.
const WAIT: Duration = Duration::from_secs(5);

/// Runs a test body on its own runtime, bounded as a whole.
fn run<F: Future<Output = ()>>(body: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            timeout(Duration::from_secs(60), body)
                .await
                .expect("test did not finish within 60 s");
        });
}

/// What the event loop task reports.
#[derive(Debug)]
enum Ev<P> {
    Packet(P),
    /// The event loop returned an error; the task has ended.
    Closed(String),
}

/// A client, the receiving side of its event loop task, and packets
/// received but not yet asked for.
struct Conn<C, P> {
    client: C,
    rx: mpsc::UnboundedReceiver<Ev<P>>,
    pending: VecDeque<P>,
    task: JoinHandle<()>,
    closed: Option<String>,
}

impl<C, P: std::fmt::Debug> Conn<C, P> {
    /// The first received packet for which `pick` returns `Some`; other
    /// packets stay queued for later calls. Panics after `WAIT`.
    async fn take<T>(&mut self, what: &str, mut pick: impl FnMut(&P) -> Option<T>) -> T {
        if let Some(i) = self.pending.iter().position(|p| pick(p).is_some()) {
            let p = self.pending.remove(i).unwrap();
            return pick(&p).unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.rx.recv()).await;
            match ev {
                Ok(Some(Ev::Packet(p))) => match pick(&p) {
                    Some(t) => return t,
                    None => self.pending.push_back(p),
                },
                Ok(Some(Ev::Closed(e))) => {
                    self.closed = Some(e.clone());
                    panic!(
                        "connection closed while waiting for {what}: {e}; had {:?}",
                        self.pending
                    )
                }
                Ok(None) => panic!("event loop gone while waiting for {what}"),
                Err(_) => panic!("no {what} within {WAIT:?}; had {:?}", self.pending),
            }
        }
    }

    /// Asserts that no packet accepted by `pick` arrives within `d`.
    async fn none_within(&mut self, d: Duration, what: &str, mut pick: impl FnMut(&P) -> bool) {
        if let Some(p) = self.pending.iter().find(|p| pick(p)) {
            panic!("unexpected {what}: {p:?}");
        }
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            match ev {
                Ev::Packet(p) if pick(&p) => panic!("unexpected {what}: {p:?}"),
                Ev::Packet(p) => self.pending.push_back(p),
                Ev::Closed(e) => {
                    self.closed = Some(e);
                    return;
                }
            }
        }
    }

    /// Waits until the event loop task has ended (after DISCONNECT the
    /// broker closes the socket) and returns its error.
    async fn closed(&mut self) -> String {
        if let Some(e) = &self.closed {
            return e.clone();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Ev::Packet(p))) => self.pending.push_back(p),
                Ok(Some(Ev::Closed(e))) => {
                    self.closed = Some(e.clone());
                    return e;
                }
                Ok(None) => return "event loop gone".into(),
                Err(_) => panic!("connection still open after {WAIT:?}"),
            }
        }
    }
}

impl<C, P> Drop for Conn<C, P> {
    /// Drops the event loop, hence the socket, without DISCONNECT.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// MQTT 3.1.1 through `rumqttc`'s top-level API.
mod v4 {
    use super::*;
    use rumqttc::{
        AsyncClient, ConnAck, ConnectReturnCode, Event, LastWill, MqttOptions, Packet, Publish,
        QoS, SubscribeReasonCode,
    };

    pub type Client = Conn<AsyncClient, Packet>;

    pub fn options(port: u16, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    pub async fn connect_with(o: MqttOptions) -> (Client, ConnAck) {
        let (client, mut eventloop) = AsyncClient::new(o, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PingResp)) => {}
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Ev::Packet(p)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Ev::Closed(e.to_string()));
                        return;
                    }
                }
            }
        });
        let mut c = Conn {
            client,
            rx,
            pending: VecDeque::new(),
            task,
            closed: None,
        };
        let ack = c
            .take("CONNACK", |p| match p {
                Packet::ConnAck(a) => Some(a.clone()),
                _ => None,
            })
            .await;
        assert_eq!(ack.code, ConnectReturnCode::Success);
        (c, ack)
    }

    pub async fn connect(port: u16, id: &str) -> Client {
        connect_with(options(port, id)).await.0
    }

    impl Conn<AsyncClient, Packet> {
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
            self.client.subscribe(filter, qos).await.unwrap();
            self.take("SUBACK", |p| match p {
                Packet::SubAck(a) => Some(a.return_codes.clone()),
                _ => None,
            })
            .await
        }

        /// Publishes and, for QoS 1/2, waits for the end of the flow, so
        /// the broker has routed the message when this returns.
        pub async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: &str) {
            self.client
                .publish(topic, qos, retain, payload.as_bytes().to_vec())
                .await
                .unwrap();
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => {
                    self.take("PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(()))
                        .await
                }
                QoS::ExactlyOnce => {
                    self.take("PUBCOMP", |p| matches!(p, Packet::PubComp(_)).then_some(()))
                        .await
                }
            }
        }

        pub async fn recv(&mut self) -> Publish {
            self.take("PUBLISH", |p| match p {
                Packet::Publish(m) => Some(m.clone()),
                _ => None,
            })
            .await
        }

        pub async fn no_publish(&mut self, d: Duration) {
            self.none_within(d, "PUBLISH", |p| matches!(p, Packet::Publish(_)))
                .await
        }

        /// DISCONNECT, then wait for the broker to close the socket.
        pub async fn disconnect(mut self) {
            self.client.disconnect().await.unwrap();
            self.closed().await;
        }
    }

    /// (topic, payload, qos, retain) of a received message.
    pub fn summary(p: &Publish) -> (String, String, QoS, bool) {
        (
            p.topic.clone(),
            String::from_utf8_lossy(&p.payload).into_owned(),
            p.qos,
            p.retain,
        )
    }

    pub fn will(topic: &str, payload: &str, retain: bool) -> LastWill {
        LastWill::new(topic, payload.as_bytes().to_vec(), QoS::AtLeastOnce, retain)
    }
}

/// MQTT 5 through `rumqttc::v5`.
mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{
        ConnAck, ConnectReturnCode, Filter, LastWill, Packet, Publish, PublishProperties,
        RetainForwardRule, SubscribeProperties, SubscribeReasonCode,
    };
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    pub type Client = Conn<AsyncClient, Packet>;

    pub fn options(port: u16, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    pub async fn connect_with(o: MqttOptions) -> (Client, ConnAck) {
        let (client, mut eventloop) = AsyncClient::new(o, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PingResp(_))) => {}
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Ev::Packet(p)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Ev::Closed(e.to_string()));
                        return;
                    }
                }
            }
        });
        let mut c = Conn {
            client,
            rx,
            pending: VecDeque::new(),
            task,
            closed: None,
        };
        let ack = c
            .take("CONNACK", |p| match p {
                Packet::ConnAck(a) => Some(a.clone()),
                _ => None,
            })
            .await;
        assert_eq!(ack.code, ConnectReturnCode::Success);
        (c, ack)
    }

    pub async fn connect(port: u16, id: &str) -> Client {
        connect_with(options(port, id)).await.0
    }

    impl Conn<AsyncClient, Packet> {
        pub async fn subscribe_filter(
            &mut self,
            filter: Filter,
            id: Option<usize>,
        ) -> Vec<SubscribeReasonCode> {
            let props = SubscribeProperties {
                id,
                user_properties: vec![],
            };
            self.client
                .subscribe_many_with_properties(vec![filter], props)
                .await
                .unwrap();
            self.take("SUBACK", |p| match p {
                Packet::SubAck(a) => Some(a.return_codes.clone()),
                _ => None,
            })
            .await
        }

        pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
            self.subscribe_filter(Filter::new(filter, qos), None).await
        }

        pub async fn publish_props(
            &mut self,
            topic: &str,
            qos: QoS,
            retain: bool,
            payload: &str,
            props: PublishProperties,
        ) {
            self.client
                .publish_with_properties(topic, qos, retain, payload.as_bytes().to_vec(), props)
                .await
                .unwrap();
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => {
                    self.take("PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(()))
                        .await
                }
                QoS::ExactlyOnce => {
                    self.take("PUBCOMP", |p| matches!(p, Packet::PubComp(_)).then_some(()))
                        .await
                }
            }
        }

        pub async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: &str) {
            self.publish_props(topic, qos, retain, payload, PublishProperties::default())
                .await
        }

        pub async fn recv(&mut self) -> Publish {
            self.take("PUBLISH", |p| match p {
                Packet::Publish(m) => Some(m.clone()),
                _ => None,
            })
            .await
        }

        pub async fn no_publish(&mut self, d: Duration) {
            self.none_within(d, "PUBLISH", |p| matches!(p, Packet::Publish(_)))
                .await
        }

        pub async fn disconnect(mut self) {
            self.client.disconnect().await.unwrap();
            self.closed().await;
        }
    }

    pub fn summary(p: &Publish) -> (String, String, QoS, bool) {
        (
            String::from_utf8_lossy(&p.topic).into_owned(),
            String::from_utf8_lossy(&p.payload).into_owned(),
            p.qos,
            p.retain,
        )
    }

    pub fn will(topic: &str, payload: &str, retain: bool) -> LastWill {
        LastWill::new(
            topic,
            payload.as_bytes().to_vec(),
            QoS::AtLeastOnce,
            retain,
            None,
        )
    }

    pub fn filter(path: &str, qos: QoS, no_local: bool, rh: RetainForwardRule) -> Filter {
        let mut f = Filter::new(path, qos);
        f.nolocal = no_local;
        f.retain_forward_rule = rh;
        f
    }
}

fn s(x: &str) -> String {
    x.to_string()
}

// ---------------------------------------------------------------- 3.1.1

mod v311_tests {
    use super::v4::*;
    use super::*;
    use rumqttc::{QoS, SubscribeReasonCode};

    #[test]
    fn rumqttc_v4_connect_and_clean_session_flag() {
        let sluice = Sluice::start();
        run(async {
            let (c, ack) = connect_with(options(sluice.port, "r4-connect")).await;
            assert!(!ack.session_present);
            c.disconnect().await;
        });
    }

    #[test]
    fn rumqttc_v4_qos_0_1_2_publish_subscribe() {
        let sluice = Sluice::start();
        run(async {
            let mut sub = connect(sluice.port, "r4-sub").await;
            assert_eq!(
                sub.subscribe("q/+", QoS::ExactlyOnce).await,
                vec![SubscribeReasonCode::Success(QoS::ExactlyOnce)]
            );
            let mut publ = connect(sluice.port, "r4-pub").await;
            for (qos, name) in [
                (QoS::AtMostOnce, "q0"),
                (QoS::AtLeastOnce, "q1"),
                (QoS::ExactlyOnce, "q2"),
            ] {
                publ.publish(&format!("q/{name}"), qos, false, name).await;
                let m = sub.recv().await;
                assert_eq!(summary(&m), (format!("q/{name}"), s(name), qos, false));
                assert!(!m.dup);
                if qos != QoS::AtMostOnce {
                    assert_ne!(m.pkid, 0);
                }
            }
            // A QoS 1 subscription downgrades a QoS 2 message.
            let mut low = connect(sluice.port, "r4-low").await;
            low.subscribe("q/#", QoS::AtLeastOnce).await;
            publ.publish("q/high", QoS::ExactlyOnce, false, "h").await;
            assert_eq!(
                summary(&low.recv().await),
                (s("q/high"), s("h"), QoS::AtLeastOnce, false)
            );
            assert_eq!(
                summary(&sub.recv().await),
                (s("q/high"), s("h"), QoS::ExactlyOnce, false)
            );
            publ.disconnect().await;
            sub.disconnect().await;
            low.disconnect().await;
        });
    }

    #[test]
    fn rumqttc_v4_wildcard_subscription() {
        let sluice = Sluice::start();
        run(async {
            let mut sub = connect(sluice.port, "r4-wild").await;
            sub.subscribe("plant/+/line/#", QoS::AtLeastOnce).await;
            let mut publ = connect(sluice.port, "r4-wild-pub").await;
            for t in [
                "plant/a/line/1",
                "plant/a/line",
                "plant/b/other/1",
                "plant/b/line/2/3",
                "plant/line/x",
            ] {
                publ.publish(t, QoS::AtLeastOnce, false, t).await;
            }
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(sub.recv().await.topic);
            }
            assert_eq!(
                got,
                vec!["plant/a/line/1", "plant/a/line", "plant/b/line/2/3"]
            );
            sub.no_publish(Duration::from_millis(200)).await;
            publ.disconnect().await;
            sub.disconnect().await;
        });
    }

    #[test]
    fn rumqttc_v4_retained_message() {
        let sluice = Sluice::start();
        run(async {
            let mut publ = connect(sluice.port, "r4-ret-pub").await;
            publ.publish("cfg/interval", QoS::AtLeastOnce, true, "30s")
                .await;
            let mut sub = connect(sluice.port, "r4-ret-sub").await;
            sub.subscribe("cfg/#", QoS::AtLeastOnce).await;
            assert_eq!(
                summary(&sub.recv().await),
                (s("cfg/interval"), s("30s"), QoS::AtLeastOnce, true)
            );
            // Cleared by an empty retained message: a later subscriber
            // gets nothing. The live subscriber sees the empty message.
            publ.publish("cfg/interval", QoS::AtLeastOnce, true, "")
                .await;
            assert_eq!(
                summary(&sub.recv().await),
                (s("cfg/interval"), s(""), QoS::AtLeastOnce, false)
            );
            let mut later = connect(sluice.port, "r4-ret-later").await;
            later.subscribe("cfg/#", QoS::AtLeastOnce).await;
            later.no_publish(Duration::from_millis(300)).await;
            for c in [publ, sub, later] {
                c.disconnect().await;
            }
        });
    }

    #[test]
    fn rumqttc_v4_will_on_abrupt_drop() {
        let sluice = Sluice::start();
        run(async {
            let mut watcher = connect(sluice.port, "r4-watch").await;
            watcher.subscribe("dev/+/status", QoS::AtLeastOnce).await;

            let mut o = options(sluice.port, "r4-dev");
            o.set_last_will(will("dev/r4/status", "offline", false));
            let (polite, _) = connect_with(o.clone()).await;
            polite.disconnect().await;
            watcher.no_publish(Duration::from_millis(300)).await;

            let (victim, _) = connect_with(o).await;
            drop(victim); // event loop and socket gone, no DISCONNECT
            assert_eq!(
                summary(&watcher.recv().await),
                (s("dev/r4/status"), s("offline"), QoS::AtLeastOnce, false)
            );
            watcher.disconnect().await;
        });
    }

    #[test]
    fn rumqttc_v4_persistent_session_gets_offline_messages() {
        let sluice = Sluice::start();
        run(async {
            let mut o = options(sluice.port, "r4-persist");
            o.set_clean_session(false);
            let (mut c, ack) = connect_with(o.clone()).await;
            assert!(!ack.session_present);
            c.subscribe("inbox/#", QoS::ExactlyOnce).await;
            c.disconnect().await;

            let mut publ = connect(sluice.port, "r4-persist-pub").await;
            publ.publish("inbox/1", QoS::AtLeastOnce, false, "one")
                .await;
            publ.publish("inbox/2", QoS::ExactlyOnce, false, "two")
                .await;
            publ.publish("inbox/3", QoS::AtLeastOnce, false, "three")
                .await;

            let (mut c, ack) = connect_with(o.clone()).await;
            assert!(ack.session_present);
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(summary(&c.recv().await));
            }
            assert_eq!(
                got,
                vec![
                    (s("inbox/1"), s("one"), QoS::AtLeastOnce, false),
                    (s("inbox/2"), s("two"), QoS::ExactlyOnce, false),
                    (s("inbox/3"), s("three"), QoS::AtLeastOnce, false),
                ]
            );
            // The subscription is still there while online.
            publ.publish("inbox/4", QoS::AtLeastOnce, false, "four")
                .await;
            assert_eq!(c.recv().await.topic, "inbox/4");
            c.disconnect().await;

            // Everything was acknowledged: nothing comes again.
            let (mut c, ack) = connect_with(o).await;
            assert!(ack.session_present);
            c.no_publish(Duration::from_millis(300)).await;
            c.disconnect().await;
            publ.disconnect().await;
        });
    }

    #[test]
    fn rumqttc_v4_unsubscribe() {
        let sluice = Sluice::start();
        run(async {
            let mut c = connect(sluice.port, "r4-unsub").await;
            c.subscribe("u/#", QoS::AtLeastOnce).await;
            c.client.unsubscribe("u/#").await.unwrap();
            c.take("UNSUBACK", |p| {
                matches!(p, rumqttc::Packet::UnsubAck(_)).then_some(())
            })
            .await;
            let mut publ = connect(sluice.port, "r4-unsub-pub").await;
            publ.publish("u/x", QoS::AtLeastOnce, false, "x").await;
            c.no_publish(Duration::from_millis(300)).await;
            c.disconnect().await;
            publ.disconnect().await;
        });
    }
}

// ---------------------------------------------------------------- 5.0

mod v5_tests {
    use super::v5::*;
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{PublishProperties, RetainForwardRule, SubscribeReasonCode};
    use rumqttc::v5::mqttbytes::QoS;

    #[test]
    fn rumqttc_v5_connect_assigns_client_id_and_announces_limits() {
        let sluice = Sluice::start();
        run(async {
            let (c, ack) = connect_with(options(sluice.port, "")).await;
            let props = ack.properties.expect("CONNACK properties");
            let id = props.assigned_client_identifier.expect("assigned id");
            assert!(!id.is_empty());
            assert_eq!(props.max_packet_size, Some(1024 * 1024));
            assert_eq!(props.topic_alias_max, Some(64));
            c.disconnect().await;
        });
    }

    #[test]
    fn rumqttc_v5_qos_0_1_2_publish_subscribe() {
        let sluice = Sluice::start();
        run(async {
            let mut sub = connect(sluice.port, "r5-sub").await;
            assert_eq!(
                sub.subscribe("q/+", QoS::ExactlyOnce).await,
                vec![SubscribeReasonCode::Success(QoS::ExactlyOnce)]
            );
            let mut publ = connect(sluice.port, "r5-pub").await;
            for (qos, name) in [
                (QoS::AtMostOnce, "q0"),
                (QoS::AtLeastOnce, "q1"),
                (QoS::ExactlyOnce, "q2"),
            ] {
                publ.publish(&format!("q/{name}"), qos, false, name).await;
                assert_eq!(
                    summary(&sub.recv().await),
                    (format!("q/{name}"), s(name), qos, false)
                );
            }
            publ.disconnect().await;
            sub.disconnect().await;
        });
    }

    #[test]
    fn rumqttc_v5_wildcards_and_dollar_topics() {
        let sluice = Sluice::start();
        run(async {
            let mut sub = connect(sluice.port, "r5-wild").await;
            sub.subscribe("#", QoS::AtLeastOnce).await;
            sub.subscribe("$internal/#", QoS::AtLeastOnce).await;
            let mut publ = connect(sluice.port, "r5-wild-pub").await;
            publ.publish("$internal/x", QoS::AtLeastOnce, false, "d")
                .await;
            publ.publish("a/b", QoS::AtLeastOnce, false, "n").await;
            assert_eq!(sub.recv().await.topic, Bytes::from("$internal/x"));
            assert_eq!(sub.recv().await.topic, Bytes::from("a/b"));
            sub.no_publish(Duration::from_millis(200)).await;
            publ.disconnect().await;
            sub.disconnect().await;
        });
    }

    #[test]
    fn rumqttc_v5_retained_and_retain_handling() {
        let sluice = Sluice::start();
        run(async {
            let mut publ = connect(sluice.port, "r5-ret-pub").await;
            publ.publish("r/a", QoS::AtLeastOnce, true, "ra").await;

            let mut sub = connect(sluice.port, "r5-ret-sub").await;
            sub.subscribe("r/#", QoS::AtLeastOnce).await;
            assert_eq!(
                summary(&sub.recv().await),
                (s("r/a"), s("ra"), QoS::AtLeastOnce, true)
            );
            // Retain handling 1: only for a new subscription.
            let f = filter(
                "r/#",
                QoS::AtLeastOnce,
                false,
                RetainForwardRule::OnNewSubscribe,
            );
            sub.subscribe_filter(f, None).await;
            sub.no_publish(Duration::from_millis(300)).await;
            // Retain handling 2: never.
            let mut never = connect(sluice.port, "r5-ret-never").await;
            let f = filter("r/#", QoS::AtLeastOnce, false, RetainForwardRule::Never);
            never.subscribe_filter(f, None).await;
            never.no_publish(Duration::from_millis(300)).await;
            for c in [publ, sub, never] {
                c.disconnect().await;
            }
        });
    }

    #[test]
    fn rumqttc_v5_will_on_abrupt_drop() {
        let sluice = Sluice::start();
        run(async {
            let mut watcher = connect(sluice.port, "r5-watch").await;
            watcher.subscribe("dev/+/status", QoS::AtLeastOnce).await;
            let mut o = options(sluice.port, "r5-dev");
            o.set_last_will(will("dev/r5/status", "offline", true));
            let (victim, _) = connect_with(o).await;
            drop(victim);
            assert_eq!(
                summary(&watcher.recv().await),
                (s("dev/r5/status"), s("offline"), QoS::AtLeastOnce, false)
            );
            // It was a retained will: a later subscriber gets it too.
            let mut later = connect(sluice.port, "r5-later").await;
            later.subscribe("dev/#", QoS::AtLeastOnce).await;
            assert_eq!(
                summary(&later.recv().await),
                (s("dev/r5/status"), s("offline"), QoS::AtLeastOnce, true)
            );
            watcher.disconnect().await;
            later.disconnect().await;
        });
    }

    #[test]
    fn rumqttc_v5_persistent_session_gets_offline_messages() {
        let sluice = Sluice::start();
        run(async {
            let mut o = options(sluice.port, "r5-persist");
            o.set_clean_start(false);
            o.set_session_expiry_interval(Some(60));
            let (mut c, ack) = connect_with(o.clone()).await;
            assert!(!ack.session_present);
            c.subscribe("inbox/#", QoS::ExactlyOnce).await;
            c.disconnect().await;

            let mut publ = connect(sluice.port, "r5-persist-pub").await;
            publ.publish("inbox/1", QoS::AtLeastOnce, false, "one")
                .await;
            publ.publish("inbox/2", QoS::ExactlyOnce, false, "two")
                .await;

            let (mut c, ack) = connect_with(o).await;
            assert!(ack.session_present);
            assert_eq!(
                summary(&c.recv().await),
                (s("inbox/1"), s("one"), QoS::AtLeastOnce, false)
            );
            assert_eq!(
                summary(&c.recv().await),
                (s("inbox/2"), s("two"), QoS::ExactlyOnce, false)
            );
            c.disconnect().await;
            publ.disconnect().await;
        });
    }

    #[test]
    fn rumqttc_v5_user_properties_and_subscription_identifiers() {
        let sluice = Sluice::start();
        run(async {
            let mut sub = connect(sluice.port, "r5-props").await;
            let f = filter(
                "tele/#",
                QoS::AtLeastOnce,
                false,
                RetainForwardRule::OnEverySubscribe,
            );
            sub.subscribe_filter(f, Some(7)).await;
            let f = filter(
                "tele/+/temp",
                QoS::AtLeastOnce,
                false,
                RetainForwardRule::OnEverySubscribe,
            );
            sub.subscribe_filter(f, Some(300)).await;

            let mut publ = connect(sluice.port, "r5-props-pub").await;
            let props = PublishProperties {
                user_properties: vec![(s("site"), s("lyon")), (s("site"), s("paris"))],
                content_type: Some(s("text/plain")),
                response_topic: Some(s("tele/reply")),
                correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
                payload_format_indicator: Some(1),
                ..Default::default()
            };
            publ.publish_props("tele/k/temp", QoS::AtLeastOnce, false, "20", props)
                .await;
            let m = sub.recv().await;
            let p = m.properties.expect("properties");
            assert_eq!(
                p.user_properties,
                vec![(s("site"), s("lyon")), (s("site"), s("paris"))],
                "user properties in order, duplicates kept"
            );
            assert_eq!(p.content_type.as_deref(), Some("text/plain"));
            assert_eq!(p.response_topic.as_deref(), Some("tele/reply"));
            assert_eq!(
                p.correlation_data,
                Some(Bytes::from_static(b"\x00\x01corr"))
            );
            assert_eq!(p.payload_format_indicator, Some(1));
            let mut ids = p.subscription_identifiers.clone();
            ids.sort();
            assert_eq!(ids, vec![7, 300], "one copy carrying both identifiers");
            sub.no_publish(Duration::from_millis(200)).await;

            // Only the '#' subscription matches here.
            publ.publish("tele/k/humidity", QoS::AtLeastOnce, false, "40")
                .await;
            let p = sub.recv().await.properties.expect("properties");
            assert_eq!(p.subscription_identifiers, vec![7]);
            assert!(p.user_properties.is_empty());
            publ.disconnect().await;
            sub.disconnect().await;
        });
    }

    #[test]
    fn rumqttc_v5_no_local() {
        let sluice = Sluice::start();
        run(async {
            let mut c = connect(sluice.port, "r5-nolocal").await;
            let f = filter(
                "chat/#",
                QoS::AtLeastOnce,
                true,
                RetainForwardRule::OnEverySubscribe,
            );
            c.subscribe_filter(f, None).await;
            c.publish("chat/room", QoS::AtLeastOnce, false, "mine")
                .await;
            c.no_publish(Duration::from_millis(300)).await;
            let mut other = connect(sluice.port, "r5-nolocal-other").await;
            other
                .publish("chat/room", QoS::AtLeastOnce, false, "theirs")
                .await;
            assert_eq!(c.recv().await.payload, Bytes::from("theirs"));
            c.disconnect().await;
            other.disconnect().await;
        });
    }

    #[test]
    fn rumqttc_v5_message_expiry_is_forwarded_decremented() {
        let sluice = Sluice::start();
        run(async {
            let mut o = options(sluice.port, "r5-exp");
            o.set_clean_start(false);
            o.set_session_expiry_interval(Some(60));
            let (mut c, _) = connect_with(o.clone()).await;
            c.subscribe("exp/#", QoS::AtLeastOnce).await;
            c.disconnect().await;
            let mut publ = connect(sluice.port, "r5-exp-pub").await;
            let short = PublishProperties {
                message_expiry_interval: Some(1),
                ..Default::default()
            };
            let long = PublishProperties {
                message_expiry_interval: Some(100),
                ..Default::default()
            };
            publ.publish_props("exp/short", QoS::AtLeastOnce, false, "s", short)
                .await;
            publ.publish_props("exp/long", QoS::AtLeastOnce, false, "l", long)
                .await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let (mut c, _) = connect_with(o).await;
            let m = c.recv().await;
            assert_eq!(m.topic, Bytes::from("exp/long"), "expired message dropped");
            let left = m.properties.and_then(|p| p.message_expiry_interval);
            assert!(
                matches!(left, Some(97..=99)),
                "remaining expiry decremented: {left:?}"
            );
            c.no_publish(Duration::from_millis(200)).await;
            c.disconnect().await;
            publ.disconnect().await;
        });
    }

    #[test]
    fn rumqttc_v5_takeover_closes_the_first_connection() {
        let sluice = Sluice::start();
        run(async {
            let mut first = connect(sluice.port, "r5-same").await;
            first.subscribe("tk", QoS::AtLeastOnce).await;
            let mut second = connect(sluice.port, "r5-same").await;
            // Sluice sends DISCONNECT 0x8E as `e0 01 8e` (no property
            // length: allowed by 3.14.2.2.1 and what mosquitto sends too).
            // rumqttc 0.25 cannot parse that form and reports the close as
            // "closed by peer abruptly"; newer versions report
            // SessionTakenOver. Either way the first connection must end.
            let err = first.closed().await;
            assert!(
                err.contains("SessionTakenOver") || err.contains("closed by peer"),
                "first connection: {err}"
            );
            // The session (clean start) did not keep the subscription, and
            // the second connection is served normally.
            second.subscribe("tk", QoS::AtLeastOnce).await;
            second.publish("tk", QoS::AtLeastOnce, false, "x").await;
            assert_eq!(second.recv().await.payload, Bytes::from("x"));
            second.disconnect().await;
        });
    }
}
