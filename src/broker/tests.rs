use super::*;
use crate::codec::{Properties, SubscriptionOptions, Will};
use crate::session::after_disconnect;
use crate::topic::TopicFilter;

fn retained(topic: &str, expires_in: Option<Duration>) -> Message {
    Message {
        topic: ByteString::from(topic),
        payload: bytes::Bytes::from_static(b"v"),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: None,
        expires_at: expires_in.map(|d| Instant::now() + d),
        publisher: None,
        username: None,
        accepted_ms: 0,
        stored: None,
    }
}

#[test]
fn expired_retained_messages_leave_memory_on_purge() {
    let broker = Broker::new(Config::default(), Store::disabled());
    broker.publish(retained("a/short", Some(Duration::from_millis(10))));
    broker.publish(retained("a/long", Some(Duration::from_secs(3600))));
    broker.publish(retained("a/forever", None));
    assert_eq!(broker.retained_count(), 3);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(broker.purge_expired_retained(), 1);
    assert_eq!(broker.retained_count(), 2);
    assert_eq!(broker.purge_expired_retained(), 0);
}

// Offline timers on simulated time: the broker plans from a made-up `now`
// and fires with a later one; nothing sleeps and no task runs.

const WILL_TOPIC: &str = "wills/c";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A broker with a watcher subscribed to the will topic, and client `c`
/// offline (generation 1) with a will of `will_delay` seconds and a session
/// expiry of `expiry` seconds.
fn offline_client(
    will_delay: u32,
    expiry: u32,
) -> (Arc<Broker>, Arc<SessionSlot>, Arc<SessionSlot>) {
    let broker = Broker::new(Config::default(), Store::disabled());
    let (watcher, _) = broker.open_session(&ByteString::from("watcher"), true);
    let filter = TopicFilter::parse(ByteString::from(WILL_TOPIC), 32).expect("valid filter");
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..SubscriptionOptions::default()
    };
    let sub = Subscription {
        filter,
        options,
        identifier: None,
    };
    broker.subscribe(&watcher, sub, Instant::now());
    let (slot, _) = broker.open_session(&ByteString::from("c"), true);
    {
        let mut c = slot.control.lock();
        c.generation = 1;
        c.will = Some(Box::new(Will {
            topic: ByteString::from(WILL_TOPIC),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        }));
        c.will_delay = will_delay;
        c.session_expiry = expiry;
    }
    slot.set_online(false);
    (broker, watcher, slot)
}

fn wills_received(watcher: &SessionSlot) -> usize {
    watcher.state.lock().queued_len()
}

fn has_session(broker: &Broker, id: &str) -> bool {
    broker.find_session(&ByteString::from(id)).is_some()
}

#[test]
fn a_will_delay_shorter_than_the_expiry_publishes_first_then_the_session_ends() {
    let (broker, watcher, slot) = offline_client(5, 60);
    let t0 = Instant::now();
    broker.plan_offline(&slot, &after_disconnect(true, true, 5, 60), 1, t0);
    assert_eq!(broker.offline_timer_count(), 2);
    assert_eq!(broker.fire_due_timers(t0 + secs(4)), 0);
    assert_eq!(wills_received(&watcher), 0);
    assert_eq!(broker.fire_due_timers(t0 + secs(5)), 1);
    assert_eq!(wills_received(&watcher), 1);
    assert!(has_session(&broker, "c"), "the session outlives its will");
    assert_eq!(broker.fire_due_timers(t0 + secs(59)), 0);
    assert_eq!(broker.fire_due_timers(t0 + secs(60)), 1);
    assert!(!has_session(&broker, "c"));
    assert_eq!(wills_received(&watcher), 1, "the will goes once");
}

/// A will delay longer than the session: the will goes when the session
/// ends (v5 3.1.3.2.2), and before it ends.
#[test]
fn a_will_delay_past_the_expiry_publishes_when_the_session_ends() {
    let (broker, watcher, slot) = offline_client(30, 10);
    let t0 = Instant::now();
    broker.plan_offline(&slot, &after_disconnect(true, true, 30, 10), 1, t0);
    assert_eq!(broker.fire_due_timers(t0 + secs(9)), 0);
    assert_eq!(broker.fire_due_timers(t0 + secs(10)), 2);
    assert_eq!(wills_received(&watcher), 1);
    assert!(!has_session(&broker, "c"));
    assert_eq!(broker.offline_timer_count(), 0);
}

#[test]
fn a_reconnect_before_the_deadline_cancels_will_and_expiry() {
    let (broker, watcher, slot) = offline_client(5, 60);
    let t0 = Instant::now();
    broker.plan_offline(&slot, &after_disconnect(true, true, 5, 60), 1, t0);
    // The client comes back: a new connection, a new generation.
    slot.control.lock().generation = 2;
    slot.set_online(true);
    assert_eq!(broker.fire_due_timers(t0 + secs(3600)), 2, "both came due");
    assert_eq!(wills_received(&watcher), 0);
    assert!(has_session(&broker, "c"));
    assert!(
        slot.control.lock().will.is_some(),
        "the will stays the session's"
    );
}

/// Offline again after a reconnect: the old timers are replaced, not
/// added to, and only the new plan fires.
#[test]
fn planning_a_session_again_replaces_its_timers() {
    let (broker, watcher, slot) = offline_client(5, 60);
    let t0 = Instant::now();
    broker.plan_offline(&slot, &after_disconnect(true, true, 5, 60), 1, t0);
    slot.control.lock().generation = 2;
    let later = t0 + secs(2);
    broker.plan_offline(&slot, &after_disconnect(false, true, 0, 100), 2, later);
    assert_eq!(broker.offline_timer_count(), 1);
    assert_eq!(broker.fire_due_timers(t0 + secs(60)), 0);
    assert_eq!(wills_received(&watcher), 0);
    assert_eq!(broker.fire_due_timers(later + secs(100)), 1);
    assert!(!has_session(&broker, "c"));
}

#[test]
fn expiry_removes_the_session_and_its_subscriptions() {
    let (broker, _watcher, slot) = offline_client(0, 10);
    let filter = TopicFilter::parse(ByteString::from("x/#"), 32).expect("valid filter");
    let sub = Subscription {
        filter,
        options: SubscriptionOptions::default(),
        identifier: None,
    };
    broker.subscribe(&slot, sub, Instant::now());
    assert_eq!(broker.subscription_count(), 2);
    let t0 = Instant::now();
    broker.plan_offline(&slot, &after_disconnect(false, true, 0, 10), 1, t0);
    assert!(has_session(&broker, "c"));
    broker.fire_due_timers(t0 + secs(10));
    assert!(!has_session(&broker, "c"));
    assert_eq!(broker.subscription_count(), 1, "only the watcher's is left");
}

#[test]
fn a_zero_expiry_ends_the_session_at_once() {
    let (broker, _watcher, slot) = offline_client(0, 0);
    broker.plan_offline(
        &slot,
        &after_disconnect(false, true, 0, 0),
        1,
        Instant::now(),
    );
    assert!(!has_session(&broker, "c"));
    assert_eq!(broker.offline_timer_count(), 0);
}

/// Ten thousand offline sessions with a delayed will and an expiry each:
/// twenty thousand entries in the wheel, one task for all of them.
#[test]
fn many_offline_sessions_cost_one_task() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let broker = Broker::new(Config::default(), Store::disabled());
        let before = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        for i in 0..10_000 {
            let (slot, _) = broker.open_session(&ByteString::from(format!("c{i}")), true);
            broker.schedule_offline(&slot, after_disconnect(true, true, 600, 3600), 0);
        }
        assert_eq!(broker.offline_timer_count(), 20_000);
        let alive = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        assert_eq!(alive - before, 1);
    });
}

/// A router that counts how often the broker calls it, in front of the
/// local one: the seam lets a double stand in.
#[derive(Default)]
struct CountingRouter {
    inner: LocalRouter,
    routes: std::sync::atomic::AtomicUsize,
}

impl Router for CountingRouter {
    fn subscribe(&self, entry: RouteEntry) -> bool {
        self.inner.subscribe(entry)
    }

    fn unsubscribe(&self, filter: &TopicFilter, client: &ByteString) -> bool {
        self.inner.unsubscribe(filter, client)
    }

    fn route(&self, message: &Message, acl: Option<&crate::auth::Acl>) -> Vec<Target> {
        self.routes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.route(message, acl)
    }

    fn pick_shared(
        &self,
        group: &TopicFilter,
        topic: &str,
        acl: Option<&crate::auth::Acl>,
    ) -> Option<RouteEntry> {
        self.inner.pick_shared(group, topic, acl)
    }

    fn len(&self) -> usize {
        self.inner.len()
    }
}

/// Through `Broker::with_seams`: a publish reaching forty subscriptions
/// of twenty sessions is one call to the router (the dynamic dispatch is
/// per publish, not per match), and one delivery per session.
#[test]
fn a_router_double_stands_in_and_is_called_once_per_publish() {
    let router = Arc::new(CountingRouter::default());
    let seams = Seams {
        router: Arc::clone(&router) as Arc<dyn Router>,
        retained: Arc::new(LocalRetained::default()),
    };
    let broker = Broker::with_seams(Config::default(), Store::disabled(), seams);
    for i in 0..20 {
        let (slot, _) = broker.open_session(&ByteString::from(format!("s{i}")), true);
        for filter in ["a/+", "a/#"] {
            let filter = TopicFilter::parse(ByteString::from(filter), 32).expect("valid filter");
            let sub = Subscription {
                filter,
                options: SubscriptionOptions::default(),
                identifier: None,
            };
            broker.subscribe(&slot, sub, Instant::now());
        }
    }
    assert_eq!(broker.subscription_count(), 40);
    let published = broker.publish(Message::from_broker(
        ByteString::from("a/b"),
        bytes::Bytes::from_static(b"x"),
        QoS::AtMostOnce,
        false,
        0,
    ));
    assert_eq!(published.matched, 20);
    assert_eq!(router.routes.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// The thin driver on the real clock (milliseconds): it sleeps until a
/// far deadline, is woken when an earlier one is planned, fires it, and
/// ends once the broker is gone.
#[tokio::test]
async fn the_timer_task_wakes_for_an_earlier_deadline() {
    let broker = Broker::new(Config::default(), Store::disabled());
    let (far, _) = broker.open_session(&ByteString::from("far"), true);
    let (near, _) = broker.open_session(&ByteString::from("near"), true);
    let plan = |ends: Duration| crate::session::AfterDisconnect {
        will_after: None,
        session_ends_after: Some(ends),
    };
    broker.schedule_offline(&far, plan(secs(3600)), 0);
    tokio::task::yield_now().await;
    broker.schedule_offline(&near, plan(Duration::from_millis(20)), 0);
    let deadline = Instant::now() + secs(10);
    while has_session(&broker, "near") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!has_session(&broker, "near"), "the near expiry fired");
    assert!(has_session(&broker, "far"));
    assert_eq!(broker.offline_timer_count(), 1);
    drop(broker);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let alive = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    assert_eq!(alive, 0, "the timer task ended with the broker");
}
