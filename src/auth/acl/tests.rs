//! ACL files: sections, patterns, access types, deny rules, errors.

use super::*;

fn acl(text: &str) -> Acl {
    match Acl::parse(text, "acl.conf") {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    }
}

fn parse_err(text: &str) -> String {
    match Acl::parse(text, "acl.conf") {
        Ok(a) => panic!("expected an error, got {a:?}"),
        Err(e) => e.to_string(),
    }
}

const R: Access = Access::Read;
const W: Access = Access::Write;

#[test]
fn empty_acl_denies_everything() {
    let a = acl("# nothing\n\n");
    assert!(!a.check_topic("c", None, "a", R));
    assert!(!a.check_topic("c", Some("u"), "a", W));
    assert!(!a.check_subscribe("c", None, "#"));
}

#[test]
fn anonymous_section_is_for_clients_without_user_name() {
    let a = acl("topic read public/#\ntopic write inbox\nuser alice\ntopic read alice/#\n");
    assert!(a.check_topic("c", None, "public/news", R));
    assert!(!a.check_topic("c", None, "public/news", W));
    assert!(a.check_topic("c", None, "inbox", W));
    assert!(!a.check_topic("c", None, "inbox", R));
    assert!(!a.check_topic("c", None, "alice/x", R));
    // A client with a user name does not get the anonymous rules, even
    // when its user has no section of its own.
    assert!(!a.check_topic("c", Some("bob"), "public/news", R));
    assert!(!a.check_topic("c", Some("alice"), "public/news", R));
    // An empty user name is a user name, not anonymity.
    assert!(!a.check_topic("c", Some(""), "public/news", R));
}

#[test]
fn user_sections() {
    let a = acl("user alice\ntopic readwrite alice/#\ntopic read shared/+\n\
         user bob\ntopic bob/#\n\
         user alice\ntopic write more/alice\n");
    assert!(a.check_topic("c1", Some("alice"), "alice/a/b", W));
    assert!(a.check_topic("c1", Some("alice"), "alice/a/b", R));
    assert!(a.check_topic("c1", Some("alice"), "shared/x", R));
    assert!(!a.check_topic("c1", Some("alice"), "shared/x", W));
    assert!(!a.check_topic("c1", Some("alice"), "shared/x/y", R));
    // A second section for the same user adds to the first.
    assert!(a.check_topic("c1", Some("alice"), "more/alice", W));
    // Access word omitted: readwrite.
    assert!(a.check_topic("c2", Some("bob"), "bob/1", R));
    assert!(a.check_topic("c2", Some("bob"), "bob/1", W));
    assert!(!a.check_topic("c2", Some("bob"), "alice/1", R));
    assert!(!a.check_topic("c2", None, "alice/1", R));
    assert!(!a.check_topic("c2", None, "bob/1", R));
}

#[test]
fn hash_matches_parent_level() {
    let a = acl("topic read a/#\n");
    assert!(a.check_topic("c", None, "a", R));
    assert!(a.check_topic("c", None, "a/b/c", R));
    assert!(!a.check_topic("c", None, "ab", R));
    assert!(!a.check_topic("c", None, "b/a", R));
    assert!(a.check_subscribe("c", None, "a"));
}

#[test]
fn patterns_substitute_client_id_and_user_name() {
    let a = acl("user alice\ntopic read x\n\
         pattern readwrite devices/%c/#\n\
         pattern write users/%u/status\n\
         pattern read mix/%u-%c/%x\n");
    assert!(a.check_topic("dev1", None, "devices/dev1/temp", W));
    assert!(a.check_topic("dev1", Some("bob"), "devices/dev1", R));
    assert!(!a.check_topic("dev1", None, "devices/dev2/temp", W));
    assert!(a.check_topic("dev1", Some("alice"), "users/alice/status", W));
    assert!(!a.check_topic("dev1", Some("alice"), "users/alice/status", R));
    assert!(!a.check_topic("dev1", Some("alice"), "users/bob/status", W));
    // Substitution inside a level; `%x` is not a variable.
    assert!(a.check_topic("d", Some("u"), "mix/u-d/%x", R));
    assert!(!a.check_topic("d", Some("u"), "mix/u-d/x", R));
    // %u never applies to anonymous clients (not even as empty text).
    assert!(!a.check_topic("dev1", None, "users//status", W));
    assert!(!a.check_topic("dev1", None, "users/%u/status", W));
    // A client id with `/` spans levels, like in mosquitto.
    assert!(a.check_topic("site/7", None, "devices/site/7/x", R));
    // Patterns are global even though written inside alice's section.
    assert!(a.check_subscribe("dev9", Some("carol"), "devices/dev9/#"));
    assert!(!a.check_subscribe("dev9", Some("carol"), "devices/+/#"));
}

#[test]
fn wildcard_in_substituted_value_grants_nothing() {
    let a = acl("pattern readwrite devices/%c/#\n\
         pattern read users/%u\n\
         pattern deny secret/%c\n\
         topic read secret/x\n");
    for id in ["#", "+", "a+b", "x#"] {
        assert!(!a.check_topic(id, None, "devices/other/t", R), "{id}");
        assert!(!a.check_subscribe(id, None, "devices/#"), "{id}");
        assert!(
            !a.check_subscribe(id, None, &format!("devices/{id}")),
            "{id}"
        );
    }
    assert!(!a.check_topic("c", Some("#"), "users/alice", R));
    assert!(!a.check_topic("c", Some("+"), "users/alice", R));
    assert!(a.check_topic("c", Some("alice"), "users/alice", R));
    // The anonymous grant on secret/x holds for ordinary clients...
    assert!(a.check_topic("c", None, "secret/x", R));
    assert!(!a.check_topic("x", None, "secret/x", R));
    // ...but a wildcard client id still triggers the deny pattern.
    assert!(!a.check_topic("#", None, "secret/x", R));
}

#[test]
fn access_types() {
    let a = acl("topic read r\ntopic write w\ntopic readwrite rw\ntopic both\ntopic deny d\n");
    assert!(a.check_topic("c", None, "r", R) && !a.check_topic("c", None, "r", W));
    assert!(!a.check_topic("c", None, "w", R) && a.check_topic("c", None, "w", W));
    assert!(a.check_topic("c", None, "rw", R) && a.check_topic("c", None, "rw", W));
    assert!(a.check_topic("c", None, "both", R) && a.check_topic("c", None, "both", W));
    assert!(!a.check_topic("c", None, "d", R) && !a.check_topic("c", None, "d", W));
    assert!(a.check_subscribe("c", None, "r"));
    assert!(!a.check_subscribe("c", None, "w"));
    assert!(!a.check_subscribe("c", None, "d"));
}

#[test]
fn deny_wins_over_grants_in_any_order_and_section() {
    let a = acl("topic deny sensors/+/secret\ntopic read sensors/#\n\
         user alice\ntopic readwrite sensors/#\ntopic deny sensors/kitchen/#\n\
         user bob\ntopic readwrite sensors/#\ntopic readwrite private/bob\n\
         pattern deny private/%u\n\
         pattern read sensors/%c/#\n");
    // Deny before the grant.
    assert!(a.check_topic("c", None, "sensors/hall/temp", R));
    assert!(!a.check_topic("c", None, "sensors/hall/secret", R));
    // Deny after the grant.
    assert!(a.check_topic("c", Some("alice"), "sensors/hall/temp", W));
    assert!(!a.check_topic("c", Some("alice"), "sensors/kitchen/temp", W));
    assert!(!a.check_topic("c", Some("alice"), "sensors/kitchen", R));
    // A user's deny beats a pattern grant.
    assert!(!a.check_topic("kitchen", Some("alice"), "sensors/kitchen/temp", R));
    // A pattern deny beats a user grant.
    assert!(!a.check_topic("c", Some("bob"), "private/bob", W));
    assert!(a.check_topic("c", Some("bob"), "sensors/x", W));
    // Subscriptions: refused when a deny covers the filter...
    assert!(!a.check_subscribe("c", Some("alice"), "sensors/kitchen/#"));
    assert!(!a.check_subscribe("c", None, "sensors/+/secret"));
    assert!(!a.check_subscribe("c", None, "sensors/hall/secret"));
    // ...accepted when it only overlaps; deliveries are then checked.
    assert!(a.check_subscribe("c", None, "sensors/#"));
    assert!(a.check_subscribe("c", Some("alice"), "sensors/+/temp"));
    assert!(!a.check_topic("c", Some("alice"), "sensors/kitchen/temp", R));
}

#[test]
fn dollar_topics_need_a_dollar_rule() {
    let a = acl("topic read #\ntopic read +/broker/#\ntopic write +/cmd\n\
         user admin\ntopic read $SYS/#\ntopic read $share-like/x\n");
    assert!(a.check_topic("c", None, "a/b", R));
    assert!(!a.check_topic("c", None, "$SYS/broker/uptime", R));
    assert!(!a.check_topic("c", None, "$SYS/cmd", W));
    assert!(!a.check_subscribe("c", None, "$SYS/#"));
    assert!(!a.check_subscribe("c", None, "$SYS/broker/uptime"));
    assert!(a.check_subscribe("c", None, "#"));
    assert!(a.check_topic("c", Some("admin"), "$SYS/broker/uptime", R));
    assert!(a.check_topic("c", Some("admin"), "$SYS", R));
    assert!(a.check_subscribe("c", Some("admin"), "$SYS/#"));
    assert!(a.check_subscribe("c", Some("admin"), "$SYS/+/uptime"));
    assert!(!a.check_topic("c", Some("admin"), "$OTHER/x", R));
    assert!(!a.check_subscribe("c", Some("admin"), "$OTHER/#"));
    assert!(a.check_topic("c", Some("admin"), "$share-like/x", R));
}

#[test]
fn subscribe_coverage() {
    let a = acl("topic read sensors/#\n\
         user u\ntopic read sensors/+/temp\ntopic read +/temp\ntopic read a/b/c\n\
         user all\ntopic read #\n\
         user plus\ntopic read +\n");
    let anon = |f: &str| a.check_subscribe("c", None, f);
    assert!(anon("sensors/+/temp"));
    assert!(anon("sensors/#"));
    assert!(anon("sensors"));
    assert!(anon("sensors/+"));
    assert!(anon("sensors/a/b/c"));
    assert!(!anon("sensors2/#"));
    assert!(!anon("#"));
    assert!(!anon("+/temp"));

    let u = |f: &str| a.check_subscribe("c", Some("u"), f);
    assert!(u("sensors/kitchen/temp"));
    assert!(u("sensors/+/temp"));
    assert!(!u("sensors/#"));
    assert!(!u("sensors/+/#"));
    assert!(!u("sensors/+/+"));
    assert!(!u("sensors/kitchen/temp/x"));
    assert!(!u("sensors/kitchen"));
    assert!(u("+/temp"));
    assert!(u("room/temp"));
    assert!(!u("$SYS/temp"));
    // A literal rule level does not cover a filter `+`.
    assert!(u("a/b/c"));
    assert!(!u("a/+/c"));
    assert!(!u("a/b/#"));

    let all = |f: &str| a.check_subscribe("c", Some("all"), f);
    assert!(all("#"));
    assert!(all("+/+/+"));
    assert!(all("x/#"));
    assert!(!all("$SYS/#"));

    let plus = |f: &str| a.check_subscribe("c", Some("plus"), f);
    assert!(plus("+"));
    assert!(plus("x"));
    assert!(!plus("#"));
    assert!(!plus("x/y"));
    assert!(!plus("$SYS"));
}

#[test]
fn invalid_topics_and_filters_are_refused() {
    let a = acl("user all\ntopic readwrite #\n");
    let u = Some("all");
    assert!(a.check_topic("c", u, "x/y", W));
    assert!(!a.check_topic("c", u, "x/+", W));
    assert!(!a.check_topic("c", u, "x/#", R));
    assert!(!a.check_topic("c", u, "", W));
    assert!(!a.check_subscribe("c", u, ""));
    assert!(!a.check_subscribe("c", u, "a/#/b"));
    assert!(!a.check_subscribe("c", u, "a/b#"));
    assert!(!a.check_subscribe("c", u, "a+/b"));
    assert!(a.check_subscribe("c", u, "a//b"));
}

#[test]
fn topics_and_user_names_with_spaces() {
    let a = acl("  topic read   my topic/with spaces  \r\n\
         \tuser John Smith\r\n\
         topic write  home/living room/lamp\r\n\
         pattern read clients/%c/in box\n");
    assert!(a.check_topic("c", None, "my topic/with spaces", R));
    assert!(!a.check_topic("c", None, "my topic/with", R));
    assert!(a.check_topic("c", Some("John Smith"), "home/living room/lamp", W));
    assert!(!a.check_topic("c", Some("John"), "home/living room/lamp", W));
    assert!(a.check_topic("my id", None, "clients/my id/in box", R));
}

#[test]
fn comments_and_blank_lines() {
    let a = acl("# header\n\n   # indented\n\t\ntopic read a\n#topic read b\n");
    assert!(a.check_topic("c", None, "a", R));
    assert!(!a.check_topic("c", None, "b", R));
}

#[test]
fn errors_name_file_and_line() {
    let cases: &[(&str, &str)] = &[
        (
            "topic read a\n\n# c\nuser x\n\ntopic read b\ntopic wirte c/d\n",
            "acl.conf line 7: unknown access type `wirte` (expected read, write, readwrite or deny)",
        ),
        ("topics read a\n", "acl.conf line 1: unknown keyword `topics`"),
        ("\nuser\n", "acl.conf line 2: `user` without a user name"),
        ("topic\n", "acl.conf line 1: `topic` without a topic"),
        ("pattern   \n", "acl.conf line 1: `pattern` without a topic"),
        ("topic deny\n", "acl.conf line 1: `topic deny` without a topic"),
        ("topic read a/#/b\n", "acl.conf line 1: invalid topic `a/#/b`: `#` must be"),
        (
            "topic read a/b # comment\n",
            "acl.conf line 1: invalid topic `a/b # comment`",
        ),
        ("pattern write x/%c+\n", "acl.conf line 1: invalid topic `x/%c+`: `+` must be"),
        ("topic my topic\n", "acl.conf line 1: unknown access type `my`"),
    ];
    for (text, expected) in cases {
        let msg = parse_err(text);
        assert!(
            msg.starts_with(expected),
            "for {text:?}: got `{msg}`, expected `{expected}`"
        );
    }
}

#[test]
fn load_names_the_file() {
    let Ok(dir) = tempfile::tempdir() else {
        panic!("tempdir")
    };
    let path = dir.path().join("acl.conf");
    std::fs::write(&path, "topic read a\nuser x\ntopic wirte b\n").ok();
    match Acl::load(&path) {
        Ok(a) => panic!("accepted {a:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.ends_with("acl.conf line 3: unknown access type `wirte` (expected read, write, readwrite or deny)"), "{msg}");
            assert!(msg.starts_with(&path.display().to_string()), "{msg}");
        }
    }
    std::fs::write(&path, "topic read a\n").ok();
    assert!(Acl::load(&path).is_ok_and(|a| a.check_topic("c", None, "a", R)));
    match Acl::load(&dir.path().join("missing.acl")) {
        Ok(_) => panic!("loaded a missing file"),
        Err(e) => assert!(e.to_string().contains("missing.acl"), "{e}"),
    }
}

#[test]
fn covers_is_mqtt_matching_for_topic_names() {
    for (rule, topic, expected) in [
        ("a/b", "a/b", true),
        ("a/+", "a/b", true),
        ("a/+", "a/b/c", false),
        ("a/+", "a", false),
        ("a/+", "a/", true),
        ("+/+", "/b", true),
        ("#", "/", true),
        ("a/#", "a", true),
        ("a/b/#", "a", false),
        ("+", "$SYS", false),
        ("$SYS/#", "$SYS", true),
        ("a//b", "a//b", true),
        ("a//b", "a/b", false),
    ] {
        assert_eq!(covers(rule, topic), expected, "{rule} vs {topic}");
    }
}
