//! What is in flight on each instance: the backups the launcher started and the tracker still
//! follows, and what each holds (its rule and retention). The `concurrency = "forbid"` check and
//! the overlap rule of a slot that fires meanwhile read it; the tracker releases a hold when the
//! backup ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What one backup in flight holds on its instance: which rule runs it and how long its
/// recovery point is kept (the overlap rule of a slot that fires meanwhile reads it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hold {
    /// The running rule's [`crate::model::Rule::slot_key`]; empty when not known.
    pub rule: Arc<str>,
    /// Its `delete_after_days`; 0 when not known (then treated as the shortest).
    pub delete_after_days: u32,
}

/// Resources with a backup in flight (the `concurrency = "forbid"` rule reads it).
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    held: Arc<Mutex<HashMap<String, Vec<Hold>>>>,
    freed: Arc<tokio::sync::Notify>,
}

impl InFlight {
    /// Marks one more backup of `resource` in flight.
    pub fn add(&self, resource: &str, hold: Hold) {
        self.held
            .lock()
            .expect("in-flight lock")
            .entry(resource.to_string())
            .or_default()
            .push(hold);
    }

    /// Marks one backup of `resource` done (the one holding `hold`, else any).
    pub fn remove(&self, resource: &str, hold: &Hold) {
        let mut m = self.held.lock().expect("in-flight lock");
        if let Some(v) = m.get_mut(resource) {
            let i = v.iter().position(|h| h == hold).unwrap_or(0);
            if i < v.len() {
                v.remove(i);
            }
            if v.is_empty() {
                m.remove(resource);
            }
        }
        drop(m);
        self.freed.notify_waiters();
    }

    /// True when a backup of `resource` is in flight.
    pub fn contains(&self, resource: &str) -> bool {
        self.held
            .lock()
            .expect("in-flight lock")
            .contains_key(resource)
    }

    /// What the backups of `resource` in flight hold.
    pub fn holds(&self, resource: &str) -> Vec<Hold> {
        self.held
            .lock()
            .expect("in-flight lock")
            .get(resource)
            .cloned()
            .unwrap_or_default()
    }

    /// Resolves at the next removal (make it before checking, so that none is missed).
    pub fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// Backups in flight.
    pub fn len(&self) -> usize {
        self.held
            .lock()
            .expect("in-flight lock")
            .values()
            .map(Vec::len)
            .sum()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
