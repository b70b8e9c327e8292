//! The children of one retained-tree node, keyed by topic level.
//!
//! Most nodes have a handful of children (a device's metrics) or none (every
//! leaf, so a million of them): a short vector scanned linearly takes a
//! fraction of a hash table's memory and hashes nothing. Wide levels
//! (thousands of devices under a site) switch to a hash map, keyed with the
//! standard randomized hasher since clients choose the levels.

use std::collections::HashMap;

/// Past this many children a level becomes a hash map; back to a vector
/// at half of it, so a level at the limit does not flip at every change.
const FEW: usize = 8;

#[derive(Debug)]
pub(super) enum Children<N> {
    Few(Vec<(Box<str>, N)>),
    /// Boxed: keeps every node (most are leaves) the size of a vector
    /// rather than of a hash map, which is twice that.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<Box<str>, N>>),
}

impl<N> Default for Children<N> {
    fn default() -> Self {
        Children::Few(Vec::new())
    }
}

impl<N> Children<N> {
    pub fn len(&self) -> usize {
        match self {
            Children::Few(v) => v.len(),
            Children::Many(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, level: &str) -> Option<&N> {
        match self {
            Children::Few(v) => v.iter().find(|(k, _)| **k == *level).map(|(_, n)| n),
            Children::Many(m) => m.get(level),
        }
    }

    pub fn get_mut(&mut self, level: &str) -> Option<&mut N> {
        match self {
            Children::Few(v) => v.iter_mut().find(|(k, _)| **k == *level).map(|(_, n)| n),
            Children::Many(m) => m.get_mut(level),
        }
    }

    pub fn get_or_insert(&mut self, level: &str) -> &mut N
    where
        N: Default,
    {
        if let Children::Few(v) = self {
            if v.len() >= FEW && !v.iter().any(|(k, _)| **k == *level) {
                *self = Children::Many(Box::new(std::mem::take(v).into_iter().collect()));
            }
        }
        match self {
            Children::Few(v) => {
                let i = match v.iter().position(|(k, _)| **k == *level) {
                    Some(i) => i,
                    None => {
                        v.push((level.into(), N::default()));
                        v.len() - 1
                    }
                };
                &mut v[i].1
            }
            Children::Many(m) => m.entry(level.into()).or_default(),
        }
    }

    pub fn remove(&mut self, level: &str) -> Option<N> {
        match self {
            Children::Few(v) => {
                let i = v.iter().position(|(k, _)| **k == *level)?;
                Some(v.swap_remove(i).1)
            }
            Children::Many(m) => {
                let removed = m.remove(level);
                if m.len() <= FEW / 2 {
                    *self = Children::Few(m.drain().collect());
                }
                removed
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &N)> {
        let (few, many) = match self {
            Children::Few(v) => (Some(v.iter()), None),
            Children::Many(m) => (None, Some(m.iter())),
        };
        let few = few.into_iter().flatten().map(|(k, n)| (&**k, n));
        let many = many.into_iter().flatten().map(|(k, n)| (&**k, n));
        few.chain(many)
    }

    pub fn values(&self) -> impl Iterator<Item = &N> {
        self.iter().map(|(_, n)| n)
    }

    /// Moves every child into `out`, leaving this empty.
    pub fn drain_into(&mut self, out: &mut Vec<N>) {
        match std::mem::take(self) {
            Children::Few(v) => out.extend(v.into_iter().map(|(_, n)| n)),
            Children::Many(m) => out.extend(m.into_values()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(c: &Children<u32>) -> Vec<String> {
        let mut k: Vec<String> = c.iter().map(|(k, _)| k.to_owned()).collect();
        k.sort();
        k
    }

    #[test]
    fn grows_into_a_map_and_shrinks_back() {
        let mut c = Children::<u32>::default();
        for i in 0..=FEW as u32 {
            *c.get_or_insert(&i.to_string()) = i;
        }
        assert!(matches!(c, Children::Many(_)));
        assert_eq!(c.len(), FEW + 1);
        for i in 0..=FEW as u32 {
            assert_eq!(c.get(&i.to_string()), Some(&i));
        }
        // An existing key at the limit does not convert.
        let mut few = Children::<u32>::default();
        for i in 0..FEW {
            few.get_or_insert(&i.to_string());
        }
        *few.get_or_insert("0") += 5;
        assert!(matches!(few, Children::Few(_)));
        assert_eq!(few.get("0"), Some(&5));

        for i in 0..FEW as u32 {
            assert_eq!(c.remove(&i.to_string()), Some(i));
        }
        assert!(matches!(c, Children::Few(_)));
        assert_eq!(keys(&c), [FEW.to_string()]);
        assert_eq!(c.remove("nope"), None);
    }

    #[test]
    fn get_mut_remove_and_drain_in_both_forms() {
        for n in [3u32, 3 * FEW as u32] {
            let mut c = Children::<u32>::default();
            for i in 0..n {
                c.get_or_insert(&format!("k{i}"));
            }
            *c.get_mut("k1").expect("present") = 7;
            assert_eq!(c.get("k1"), Some(&7));
            assert_eq!(c.get_mut("x"), None);
            assert_eq!(c.remove("k1"), Some(7));
            assert_eq!(c.get("k1"), None);
            assert_eq!(c.len() as u32, n - 1);
            assert_eq!(c.values().count() as u32, n - 1);
            let mut out = Vec::new();
            c.drain_into(&mut out);
            assert_eq!(out.len() as u32, n - 1);
            assert!(c.is_empty());
        }
    }
}
