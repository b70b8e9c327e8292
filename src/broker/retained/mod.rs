//! Retained messages (3.3.1.3): the last retained message per topic name.
//!
//! Kept in a tree with one node per topic level, so a subscribe only visits
//! the branches its filter can match: a literal filter is one lookup per
//! level, `+` fans out over one level and `#` takes a subtree. A scan of
//! every retained message per SUBSCRIBE did not scale to millions of
//! retained topics (issue #11).
//!
//! Every walk is a loop over an explicit stack, never recursion: a topic
//! name may have thousands of levels (`a////...`), and a recursive walk or
//! drop that deep would overflow a worker thread's stack.

mod backend;
mod children;

use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;

use crate::session::Message;
pub use backend::{LocalRetained, RetainedBackend};
use children::Children;

#[derive(Debug, Default)]
struct Node {
    /// Keys are levels, which may be empty (`a//b`). Owned strings rather
    /// than slices of a message's topic: those can share the received frame
    /// and would keep old payloads alive after a message is replaced.
    children: Children<Node>,
    message: Option<Arc<Message>>,
}

impl Node {
    /// Pushes the live messages of this node and every node below it.
    fn collect_subtree(&self, now: Instant, out: &mut Vec<Arc<Message>>) {
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            push_live(node, now, out);
            stack.extend(node.children.values());
        }
    }
}

impl Drop for Node {
    /// Takes a deep chain apart iteratively (see the module doc).
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let mut stack = Vec::new();
        self.children.drain_into(&mut stack);
        while let Some(mut node) = stack.pop() {
            node.children.drain_into(&mut stack);
        }
    }
}

/// The node of `topic`, or how many of its levels exist.
fn descend<'a>(mut node: &'a mut Node, topic: &str) -> Result<&'a mut Node, usize> {
    for (i, level) in topic.split('/').enumerate() {
        match node.children.get_mut(level) {
            Some(child) => node = child,
            None => return Err(i),
        }
    }
    Ok(node)
}

fn push_live(node: &Node, now: Instant, out: &mut Vec<Arc<Message>>) {
    if let Some(m) = &node.message {
        if !m.is_expired(now) {
            out.push(Arc::clone(m));
        }
    }
}

#[derive(Debug, Default)]
pub struct RetainedStore {
    /// Holds no message itself: every topic name has at least one level.
    root: Node,
    count: usize,
    /// Sum of [`retained_size`] over the messages held.
    bytes: usize,
}

/// Memory a retained message is charged for (`limits.max_retained_bytes`):
/// topic, payload and properties, plus an estimate of what holding it
/// costs (the message struct, its `Arc`, a tree node per level at least),
/// so a million one-byte messages are not free.
pub fn retained_size(m: &Message) -> usize {
    const ENTRY_OVERHEAD: usize = 160;
    ENTRY_OVERHEAD
        + m.topic.len()
        + m.payload.len()
        + m.properties.as_ref().map_or(0, |p| p.encoded_len())
}

impl RetainedStore {
    /// Stores, replaces, or (empty payload) clears the topic's message.
    pub fn put(&mut self, msg: &Arc<Message>) {
        if msg.payload.is_empty() {
            self.remove(&msg.topic);
            return;
        }
        // Replacing is the common case: one lookup per level.
        self.bytes += retained_size(msg);
        let existing = match descend(&mut self.root, &msg.topic) {
            Ok(node) => {
                match node.message.replace(Arc::clone(msg)) {
                    Some(old) => self.bytes -= retained_size(&old),
                    None => self.count += 1,
                }
                return;
            }
            Err(existing) => existing,
        };
        let mut node = &mut self.root;
        for (i, level) in msg.topic.split('/').enumerate() {
            node = if i < existing {
                node.children.get_mut(level).expect("found by descend")
            } else {
                node.children.get_or_insert(level)
            };
        }
        node.message = Some(Arc::clone(msg));
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// What the held messages are charged, see [`retained_size`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether storing `msg` keeps the charge within `max_bytes`. Replacing
    /// a topic's message with one no larger always fits (and clearing it).
    pub fn fits(&self, msg: &Message, max_bytes: usize) -> bool {
        let old = self
            .find(&msg.topic)
            .and_then(|n| n.message.as_deref())
            .map_or(0, retained_size);
        let new = if msg.payload.is_empty() {
            0
        } else {
            retained_size(msg)
        };
        new <= old || self.bytes - old + new <= max_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Live retained messages matching `filter` (valid, without
    /// `$share/group/`), in topic order (stable for clients and tests).
    pub fn matching(&self, filter: &str, now: Instant) -> Vec<Arc<Message>> {
        let mut out = Vec::new();
        if !filter.contains(['+', '#']) {
            if let Some(node) = self.find(filter) {
                push_live(node, now, &mut out);
            }
            return out;
        }
        let levels: Vec<&str> = filter.split('/').collect();
        let mut stack: Vec<(&Node, usize)> = vec![(&self.root, 0)];
        while let Some((node, depth)) = stack.pop() {
            let Some(&level) = levels.get(depth) else {
                push_live(node, now, &mut out);
                continue;
            };
            // A leading wildcard does not match topics starting with `$`
            // (4.7.2): `#` and `+/x` must not reveal `$SYS/...`.
            let visible = |key: &str| depth > 0 || !key.starts_with('$');
            match level {
                // "a/#" matches "a" too (4.7.1.2); the root holds no message.
                "#" => {
                    push_live(node, now, &mut out);
                    for (key, child) in node.children.iter() {
                        if visible(key) {
                            child.collect_subtree(now, &mut out);
                        }
                    }
                }
                "+" => stack.extend(
                    node.children
                        .iter()
                        .filter(|(key, _)| visible(key))
                        .map(|(_, child)| (child, depth + 1)),
                ),
                literal => {
                    if let Some(child) = node.children.get(literal) {
                        stack.push((child, depth + 1));
                    }
                }
            }
        }
        // Topic names are unique here, so an unstable sort is deterministic.
        out.sort_unstable_by(|a, b| a.topic.cmp(&b.topic));
        out
    }

    /// Drops expired messages; returns how many.
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        self.purge_expired_topics(now).len()
    }

    /// Drops expired messages; returns their topics (so the store's index
    /// entries can go too).
    pub fn purge_expired_topics(&mut self, now: Instant) -> Vec<ByteString> {
        let mut expired: Vec<ByteString> = Vec::new();
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            if let Some(m) = &node.message {
                if m.is_expired(now) {
                    expired.push(m.topic.clone());
                }
            }
            stack.extend(node.children.values());
        }
        for topic in &expired {
            self.remove(topic);
        }
        expired
    }

    /// The node for topic name `topic`, if there is one.
    fn find(&self, topic: &str) -> Option<&Node> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        Some(node)
    }

    /// Clears `topic`'s message and prunes the nodes left empty, so a
    /// put/clear cycle leaves the tree as it was.
    fn remove(&mut self, topic: &str) -> bool {
        // First pass, read-only: find the message and the shallowest node
        // that only exists for it. `cut` is the level of that node: its
        // parent stays (it is the root, has a message or other children).
        let mut node = &self.root;
        let mut cut = 0;
        for (i, level) in topic.split('/').enumerate() {
            let Some(child) = node.children.get(level) else {
                return false;
            };
            if node.message.is_some() || node.children.len() > 1 {
                cut = i;
            }
            node = child;
        }
        let Some(old) = &node.message else {
            return false;
        };
        self.bytes -= retained_size(old);
        let prune = node.children.is_empty();
        self.count -= 1;
        let mut node = &mut self.root;
        for (i, level) in topic.split('/').enumerate() {
            if prune && i == cut {
                node.children.remove(level);
                return true;
            }
            node = node.children.get_mut(level).expect("found above");
        }
        node.message = None;
        true
    }
}

#[cfg(test)]
mod tests;
