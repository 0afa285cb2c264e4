//! A map of bounded size that forgets its least recently used entry to make
//! room: the per-destination state of the ICMP rate limiter and the path-MTU
//! cache, whose keys a peer chooses (the sources it spoofs).
//!
//! Every operation is O(1): a hash map from key to a slab index, and a
//! doubly linked recency list threaded through the slab.

use std::collections::HashMap;
use std::hash::Hash;

const NIL: usize = usize::MAX;

#[derive(Debug)]
struct Node<K, V> {
    key: K,
    value: V,
    /// Towards the most recently used end.
    newer: usize,
    /// Towards the least recently used end.
    older: usize,
}

#[derive(Debug)]
pub(crate) struct Lru<K, V> {
    capacity: usize,
    index: HashMap<K, usize>,
    nodes: Vec<Node<K, V>>,
    /// Most recently used.
    newest: usize,
    /// Least recently used: the next to go.
    oldest: usize,
}

impl<K: Copy + Eq + Hash, V> Lru<K, V> {
    /// An empty map that holds at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Lru<K, V> {
        Lru {
            capacity: capacity.max(1),
            index: HashMap::new(),
            nodes: Vec::new(),
            newest: NIL,
            oldest: NIL,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The entry for `key`, leaving its recency alone.
    pub(crate) fn peek(&self, key: &K) -> Option<&V> {
        self.index.get(key).map(|&i| &self.nodes[i].value)
    }

    /// The entry for `key`, now the most recently used.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = *self.index.get(key)?;
        self.unlink(i);
        self.link_newest(i);
        Some(&mut self.nodes[i].value)
    }

    /// Sets `key`'s entry, the most recently used now, forgetting the least
    /// recently used entry if the map is full.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        if let Some(v) = self.get_mut(&key) {
            *v = value;
            return;
        }
        if self.nodes.len() >= self.capacity {
            let victim = self.oldest;
            self.remove_at(victim);
        }
        let i = self.nodes.len();
        self.nodes.push(Node {
            key,
            value,
            newer: NIL,
            older: NIL,
        });
        self.index.insert(key, i);
        self.link_newest(i);
    }

    /// Forgets `key`'s entry.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let i = *self.index.get(key)?;
        Some(self.remove_at(i))
    }

    fn remove_at(&mut self, i: usize) -> V {
        self.unlink(i);
        // Keep the slab dense: the last node moves into the hole, so take it
        // out of the list first and put it back at its new index.
        let last = self.nodes.len() - 1;
        if i != last {
            self.unlink(last);
        }
        let gone = self.nodes.swap_remove(i);
        self.index.remove(&gone.key);
        if i != last {
            self.index.insert(self.nodes[i].key, i);
            self.relink(i);
        }
        gone.value
    }

    /// Puts node `i` back between the neighbours its links name (`unlink`
    /// changes only the neighbours, so a node taken out keeps them).
    fn relink(&mut self, i: usize) {
        let (newer, older) = (self.nodes[i].newer, self.nodes[i].older);
        match newer {
            NIL => self.newest = i,
            n => self.nodes[n].older = i,
        }
        match older {
            NIL => self.oldest = i,
            o => self.nodes[o].newer = i,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (newer, older) = (self.nodes[i].newer, self.nodes[i].older);
        match newer {
            NIL => self.newest = older,
            n => self.nodes[n].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.nodes[o].newer = newer,
        }
    }

    fn link_newest(&mut self, i: usize) {
        self.nodes[i].newer = NIL;
        self.nodes[i].older = self.newest;
        match self.newest {
            NIL => self.oldest = i,
            n => self.nodes[n].newer = i,
        }
        self.newest = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    impl<K: Copy + Eq + Hash + std::fmt::Debug, V> Lru<K, V> {
        /// Keys from most to least recently used, checking the links both
        /// ways and the index.
        fn order(&self) -> Vec<K> {
            let mut out = Vec::new();
            let mut at = self.newest;
            let mut prev = NIL;
            while at != NIL {
                assert_eq!(self.nodes[at].newer, prev);
                assert_eq!(self.index[&self.nodes[at].key], at);
                out.push(self.nodes[at].key);
                prev = at;
                at = self.nodes[at].older;
            }
            assert_eq!(self.oldest, prev);
            assert_eq!(out.len(), self.nodes.len());
            assert_eq!(self.index.len(), self.nodes.len());
            out
        }
    }

    #[test]
    fn evicts_the_least_recently_used() {
        let mut m = Lru::new(3);
        m.insert(1, 'a');
        m.insert(2, 'b');
        m.insert(3, 'c');
        assert_eq!(m.get_mut(&1), Some(&mut 'a'));
        m.insert(4, 'd');
        assert_eq!(m.order(), vec![4, 1, 3]);
        assert_eq!(m.peek(&2), None);
        // peek leaves recency alone.
        assert_eq!(m.peek(&3), Some(&'c'));
        m.insert(5, 'e');
        assert_eq!(m.order(), vec![5, 4, 1]);
        m.insert(1, 'z');
        assert_eq!(m.order(), vec![1, 5, 4]);
        assert_eq!(m.remove(&5), Some('e'));
        assert_eq!(m.remove(&5), None);
        assert_eq!(m.order(), vec![1, 4]);
        assert_eq!(m.len(), 2);
        let one: Lru<u8, ()> = Lru::new(0);
        assert_eq!(one.capacity(), 1);
    }

    /// Against a Vec kept in recency order.
    #[test]
    fn matches_a_naive_model() {
        let mut rng = SmallRng::seed_from_u64(7);
        for cap in [1usize, 2, 3, 8] {
            let mut m = Lru::new(cap);
            let mut model: Vec<(u8, u32)> = Vec::new(); // newest first
            for step in 0..5000u32 {
                let k = rng.gen_range(0..12u8);
                match rng.gen_range(0..4) {
                    0 | 1 => {
                        m.insert(k, step);
                        model.retain(|(mk, _)| *mk != k);
                        model.insert(0, (k, step));
                        model.truncate(cap);
                    }
                    2 => {
                        let got = m.get_mut(&k).map(|v| *v);
                        let pos = model.iter().position(|(mk, _)| *mk == k);
                        let want = pos.map(|p| {
                            let e = model.remove(p);
                            model.insert(0, e);
                            e.1
                        });
                        assert_eq!(got, want);
                    }
                    _ => {
                        let got = m.remove(&k);
                        let pos = model.iter().position(|(mk, _)| *mk == k);
                        assert_eq!(got, pos.map(|p| model.remove(p).1));
                    }
                }
                let keys: Vec<u8> = model.iter().map(|(k, _)| *k).collect();
                assert_eq!(m.order(), keys);
            }
        }
    }
}
