//! A kind of thing the tracker follows (a backup, a copy; restores are followed as executions
//! by [`crate::restore_tests`]): the few steps of a poll round that differ from kind to kind.
//! The round itself is [`super::round`].

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use crate::aws::{BackupJobs, StepFunctions};
use crate::clock::Clock;

use super::Tracker;
use super::calls::{Calls, FollowsJob};
use super::followed::Followed;

/// The steps of a poll round that are a kind's own.
pub(super) trait Kind<S: StepFunctions, B: BackupJobs> {
    /// What is followed: the pure state of one thing of this kind.
    type Item: FollowsJob;

    /// The things of this kind the tracker follows.
    fn followed(t: &Tracker<S, B>) -> &Followed<Self::Item>;
    /// The same, to change.
    fn followed_mut(t: &mut Tracker<S, B>) -> &mut Followed<Self::Item>;
    /// Its followed map and what asking about jobs needs, borrowed apart.
    fn parts(t: &mut Tracker<S, B>) -> (&mut Followed<Self::Item>, &Calls, &B, &dyn Clock);
    /// True while its job is not known yet.
    fn awaits_job(item: &Self::Item) -> bool;
    /// The longest wait between two polls of `item` (`max`: the config's ceiling).
    fn max_interval(_item: &Self::Item, max: std::time::Duration) -> std::time::Duration {
        max
    }
    /// True once it is over (it then leaves the tracker).
    fn is_finished(item: &Self::Item) -> bool;

    /// Many are waiting for their job: finds them in a listing; the keys whose job it found go
    /// in `seen` (not described again this round).
    fn discover(
        t: &mut Tracker<S, B>,
        awaiting: &[Arc<str>],
        changed: &mut HashSet<Arc<str>>,
        seen: &mut HashSet<Arc<str>>,
    ) -> impl Future<Output = ()>;

    /// Reads the records of the due ones that need theirs (their executions); `batch`: a
    /// listing looks for the jobs this round, so only the ones it has missed for a while. The
    /// keys whose job need not be asked about this round go in `seen`.
    fn read_records(
        t: &mut Tracker<S, B>,
        due: &[Arc<str>],
        batch: bool,
        changed: &mut HashSet<Arc<str>>,
        seen: &mut HashSet<Arc<str>>,
    ) -> impl Future<Output = ()>;

    /// What follows the jobs' news in a round (backups: start the copies of those that
    /// COMPLETED).
    fn after_jobs(
        _t: &mut Tracker<S, B>,
        _due: &[Arc<str>],
        _changed: &mut HashSet<Arc<str>>,
    ) -> impl Future<Output = ()> {
        async {}
    }

    /// Logs `changes` of `key` once each, counts them, and marks `key` changed.
    fn report(
        t: &Tracker<S, B>,
        key: &Arc<str>,
        changes: Vec<<Self::Item as FollowsJob>::Change>,
        changed: &mut HashSet<Arc<str>>,
    );

    /// The last steps of one that is over (it has left the followed map).
    fn finished(t: &mut Tracker<S, B>, item: Self::Item);

    /// Sets the in-flight gauge of this kind.
    fn set_gauge(t: &Tracker<S, B>);
}
