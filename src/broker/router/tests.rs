use super::*;
use crate::broker::{SessionSlot, Subscription};
use crate::codec::{QoS, SubscriptionOptions};
use crate::session::QueueLimits;

fn slot(id: &str) -> Arc<SessionSlot> {
    Arc::new(SessionSlot::new(
        ByteString::from(id),
        QueueLimits::default(),
    ))
}

fn entry(slot: &Arc<SessionSlot>, filter: &str, qos: QoS, id: Option<u32>) -> RouteEntry {
    let filter = TopicFilter::parse(ByteString::from(filter), 32).expect("valid filter");
    RouteEntry {
        slot: Arc::clone(slot),
        subscription: Subscription {
            filter,
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
            identifier: id,
        },
    }
}

fn message(topic: &str, qos: QoS) -> Message {
    let mut m = Message::from_broker(
        ByteString::from(topic),
        bytes::Bytes::from_static(b"x"),
        qos,
        false,
        0,
    );
    m.publisher = Some(ByteString::from("publisher"));
    m
}

/// Past MERGE_SCAN_LIMIT targets the merge happens after the walk: each
/// session still gets one delivery, at its highest QoS, with every
/// identifier; a shared-group pick of the same session stays apart.
#[test]
fn overlapping_targets_of_many_sessions_merge_into_one_each() {
    let slots: Vec<Arc<SessionSlot>> = (0..MERGE_SCAN_LIMIT + 4)
        .map(|i| slot(&format!("c{i}")))
        .collect();
    let target = |slot: &Arc<SessionSlot>, qos, retain, id: u32, shared| Target {
        slot: Arc::clone(slot),
        qos,
        retain,
        subscription_ids: vec![id],
        shared,
        share: None,
    };
    let mut targets: Vec<Target> = Vec::new();
    for s in &slots {
        targets.push(target(s, QoS::AtMostOnce, false, 1, false));
    }
    for s in slots.iter().rev() {
        targets.push(target(s, QoS::AtLeastOnce, true, 2, false));
    }
    targets.push(target(&slots[0], QoS::AtMostOnce, false, 3, true));
    merge_overlapping(&mut targets);
    assert_eq!(targets.len(), slots.len() + 1);
    for t in targets.iter().filter(|t| !t.shared) {
        let mut ids = t.subscription_ids.clone();
        ids.sort_unstable();
        assert_eq!((t.qos, t.retain, ids), (QoS::AtLeastOnce, true, vec![1, 2]));
    }
    let shared: Vec<&Target> = targets.iter().filter(|t| t.shared).collect();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].subscription_ids, vec![3]);
}

/// Through the seam: overlapping filters of one subscriber become one
/// target (below and above the scan limit alike), a shared group yields
/// one member, and the QoS is the lower of message and subscription.
#[test]
fn route_merges_per_subscriber_and_picks_one_per_group() {
    let router: Arc<dyn Router> = Arc::new(LocalRouter::default());
    let a = slot("a");
    assert!(!router.subscribe(entry(&a, "t/+", QoS::AtMostOnce, Some(1))));
    assert!(!router.subscribe(entry(&a, "t/#", QoS::AtLeastOnce, Some(2))));
    assert!(router.subscribe(entry(&a, "t/#", QoS::ExactlyOnce, Some(2))));
    let members: Vec<_> = (0..3).map(|i| slot(&format!("m{i}"))).collect();
    for m in &members {
        router.subscribe(entry(m, "$share/g/t/x", QoS::ExactlyOnce, None));
    }
    let many: Vec<_> = (0..MERGE_SCAN_LIMIT * 2)
        .map(|i| slot(&format!("s{i}")))
        .collect();
    for s in &many {
        router.subscribe(entry(s, "t/x", QoS::AtLeastOnce, Some(3)));
        router.subscribe(entry(s, "+/x", QoS::AtMostOnce, Some(4)));
    }
    assert_eq!(router.len(), 2 + 3 + 2 * many.len());
    let targets = router.route(&message("t/x", QoS::AtLeastOnce), None);
    assert_eq!(targets.len(), 1 + 1 + many.len());
    let own: Vec<&Target> = targets.iter().filter(|t| !t.shared).collect();
    for t in own {
        let mut ids = t.subscription_ids.clone();
        ids.sort_unstable();
        if Arc::ptr_eq(&t.slot, &a) {
            assert_eq!((t.qos, ids), (QoS::AtLeastOnce, vec![1, 2]));
        } else {
            assert_eq!((t.qos, ids), (QoS::AtLeastOnce, vec![3, 4]));
        }
    }
    let shared: Vec<&Target> = targets.iter().filter(|t| t.shared).collect();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].share.as_deref(), Some("$share/g/t/x"));
    let group = TopicFilter::parse(ByteString::from("$share/g/t/x"), 32).expect("valid");
    assert!(router.pick_shared(&group, "t/x", None).is_some());
    assert!(router.unsubscribe(&group, &ByteString::from("m0")));
    assert!(!router.unsubscribe(&group, &ByteString::from("m0")));
}
