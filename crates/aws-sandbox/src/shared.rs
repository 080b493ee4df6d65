//! The state the server's tasks share: everything the AWS operations read and change behind
//! one lock (requests are short, so one lock is simplest and fast enough), and the faults to
//! inject behind another (read before the request is answered).

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::dynamodb::Tables;
use super::faults::Faults;
use super::stats::Ledger;
use super::tagging::Tagging;
use super::world::World;

/// What the AWS operations read and change.
#[derive(Debug)]
pub(crate) struct Inner {
    pub world: World,
    pub ledger: Ledger,
    pub dynamodb: Tables,
    pub tagging: Tagging,
}

/// The two locks.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    faults: Mutex<Faults>,
}

impl Shared {
    /// A sandbox with nothing in it yet but `world`.
    pub(crate) fn new(world: World) -> Self {
        Self {
            inner: Mutex::new(Inner {
                world,
                ledger: Ledger::default(),
                dynamodb: Tables::default(),
                tagging: Tagging::default(),
            }),
            faults: Mutex::new(Faults::default()),
        }
    }

    /// The state, even after a panic in another request (the sandbox keeps answering).
    pub(crate) fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The faults in force.
    pub(crate) fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
