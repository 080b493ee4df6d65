//! What every kind of followed thing shares: the entries of one kind, which are due, and the
//! backoff between polls.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// One followed thing and when it is asked about next.
pub(super) struct Entry<T> {
    /// The pure state of what is followed (a backup, a copy).
    pub(super) item: T,
    next_poll: Instant,
    /// The last wait between polls; doubles while nothing changes.
    pub(super) interval: Duration,
}

/// The things of one kind the tracker follows, by key.
pub(super) struct Followed<T> {
    /// Shared keys, so that a poll round's lists and sets of 10,000 keys are pointers, not
    /// copies. Boxed: a burst's map then holds pointers, not large entries in every bucket.
    entries: HashMap<Arc<str>, Box<Entry<T>>>,
}

impl<T> Default for Followed<T> {
    fn default() -> Self {
        Followed {
            entries: HashMap::new(),
        }
    }
}

/// The poll intervals: the first, and the ceiling of the backoff.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    pub(super) first: Duration,
    pub(super) max: Duration,
}

impl Backoff {
    /// The first interval again after a change, else double the last (up to `max`, the
    /// ceiling for this entry).
    pub(super) fn next(&self, last: Duration, changed: bool, max: Duration) -> Duration {
        if changed {
            self.first.min(max)
        } else {
            (last * 2).min(max)
        }
    }
}

impl<T> Followed<T> {
    /// Follows `item` under `key`, first asked about at `first_poll`; false (and nothing
    /// changes) when `key` is followed already.
    pub(super) fn insert(&mut self, key: Arc<str>, item: T, first: Duration) -> Option<Instant> {
        if self.entries.contains_key(&key) {
            return None;
        }
        let next_poll = Instant::now() + first;
        self.entries.insert(
            key,
            Box::new(Entry {
                item,
                next_poll,
                interval: first,
            }),
        );
        Some(next_poll)
    }

    /// The entry of `key`.
    pub(super) fn get(&self, key: &str) -> Option<&Entry<T>> {
        self.entries.get(key).map(|e| &**e)
    }

    /// The item of `key`, to change.
    pub(super) fn item_mut(&mut self, key: &str) -> Option<&mut T> {
        self.entries.get_mut(key).map(|e| &mut e.item)
    }

    /// The item of `key`; panics when it is not followed (callers hold a key of this round).
    pub(super) fn item(&self, key: &str) -> &T {
        &self.entries[key].item
    }

    /// Every entry.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &T)> {
        self.entries.iter().map(|(k, e)| (k, &e.item))
    }

    /// The keys whose next poll has come.
    pub(super) fn due(&self) -> Vec<Arc<str>> {
        let now = Instant::now();
        self.entries
            .iter()
            .filter(|(_, e)| e.next_poll <= now)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// After a round: the finished items of `due` leave (returned, for their kind's last
    /// steps); the others wait for their next poll, sooner when they changed.
    pub(super) fn settle(
        &mut self,
        due: &[Arc<str>],
        changed: &HashSet<Arc<str>>,
        backoff: Backoff,
        finished: impl Fn(&T) -> bool,
        ceiling: impl Fn(&T, Duration) -> Duration,
    ) -> Vec<T> {
        let now = Instant::now();
        let mut done = Vec::new();
        for k in due {
            let Some(e) = self.entries.get_mut(k) else {
                continue;
            };
            if finished(&e.item) {
                done.push(self.entries.remove(k).expect("present").item);
                continue;
            }
            let max = ceiling(&e.item, backoff.max);
            e.interval = backoff.next(e.interval, changed.contains(k), max);
            e.next_poll = now + e.interval;
        }
        // After a burst the map would keep room for every entry of it (8 MiB at 10,000).
        if self.entries.capacity() > 64 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to_fit();
        }
        done
    }

    /// The earliest next poll.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.next_poll).min()
    }

    /// Room in the map (a burst's is given back).
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// How many are followed.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is followed.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
