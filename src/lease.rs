//! The leader lease: one replica of a fleet fires, the others stand by (`[ha]`).
//!
//! [`LeaseState`] is the pure state machine (standby/holder; claim answers and the holder's own
//! monotonic clock move it); [`run`] drives it against an [`aws::LeaseTable`](crate::aws::LeaseTable)
//! and publishes the role on a `watch` channel. The table decides who wins a claim by the
//! claimer's wall clock (`expires_at < :now`); the holder decides when to stop by its monotonic
//! clock, counted from the moment it *sent* the claim that won, minus [`skew_margin`]: a holder
//! that cannot renew stops firing that margin before its lease can expire on a replica whose
//! wall clock runs up to that margin ahead.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::aws::{ApiError, Claim, ErrorKind, LeaseRecord, LeaseTable};
use crate::clock::Clock;

/// The item key of the fleet's lease (one table per fleet).
pub const LEASE_NAME: &str = "orchestrator-leader";

/// Lease timing and identity (validated by `config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// The DynamoDB table.
    pub table: String,
    /// How long a claim holds on the table.
    pub duration: Duration,
    /// How often the holder renews and a standby tries to take over.
    pub renew_interval: Duration,
    /// This replica's name in the table.
    pub owner_id: String,
}

/// How much earlier than the table the holder gives its lease up: a quarter of the duration,
/// at least one second (7.5 s of a 30 s lease). It covers clock skew between replicas plus the
/// time a fire already under way needs to reach StartExecution.
pub fn skew_margin(duration: Duration) -> Duration {
    (duration / 4).max(Duration::from_secs(1)).min(duration)
}

/// The default owner id: host name and process id.
pub fn default_owner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "orchestrator".into());
    format!("{host}-{}", std::process::id())
}

/// What a change of role was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// This replica holds the lease now.
    Acquired {
        /// How long the fleet may have gone without a firing leader, up to our winning claim:
        /// since the previous holder's last claim or renewal as the replaced item tells (its
        /// expiry minus the lease duration, which the fleet shares), or, when the table had no
        /// item (released on shutdown), since this replica last saw another holder's lease.
        /// `None`: neither is known (the fleet's first leader). At least the real gap: a
        /// holder killed after its last renewal fired no more.
        since_previous_leader: Option<Duration>,
        /// How long after the replaced lease expired our claim was sent (the wait for the
        /// expiry is the rest of the gap); `None` without an expired item of another owner.
        after_lease_expiry: Option<Duration>,
        /// The replaced item's owner, when there was one.
        previous_owner: Option<String>,
    },
    /// This replica no longer holds it.
    Lost(LostReason),
}

/// Why the holder stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// No renewal succeeded in time: our own clock says stop.
    Expired,
    /// The table says another owner holds it.
    TakenOver {
        /// The other owner, when the table said.
        by: Option<String>,
    },
}

impl LostReason {
    /// Stable name for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            LostReason::Expired => "renewal_deadline_passed",
            LostReason::TakenOver { .. } => "held_by_other",
        }
    }
}

/// The result of one claim, for the renewals metric.
pub fn claim_result(r: &Result<Claim, ApiError>) -> &'static str {
    match r {
        Ok(Claim::Won { .. }) => "won",
        Ok(Claim::HeldByOther { .. }) => "held_by_other",
        Err(e) => e.kind.as_str(),
    }
}

/// Standby or holder, by this replica's monotonic clock.
#[derive(Debug, Clone)]
pub struct LeaseState {
    owner: String,
    duration: Duration,
    margin: Duration,
    /// Set while we hold the lease: the instant we must stop firing.
    valid_until: Option<Instant>,
    /// When (wall clock, ms) a claim of ours last found another holder's lease.
    last_saw_leader_ms: Option<i64>,
}

impl LeaseState {
    /// A standby named `owner`.
    pub fn new(owner: impl Into<String>, duration: Duration) -> Self {
        LeaseState {
            owner: owner.into(),
            duration,
            margin: skew_margin(duration),
            valid_until: None,
            last_saw_leader_ms: None,
        }
    }

    /// True while we hold the lease and our clock says it is still ours.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.valid_until.is_some_and(|v| now < v)
    }

    /// When the holder must stop if no renewal wins before.
    pub fn valid_until(&self) -> Option<Instant> {
        self.valid_until
    }

    /// The expiry to write for a claim sent at wall time `now_ms`.
    pub fn expires_at_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_add(i64::try_from(self.duration.as_millis()).unwrap_or(i64::MAX))
    }

    /// Applies the answer to a claim sent at `sent_at` (monotonic) / `sent_ms` (wall), read at
    /// `now`. A failed call changes nothing: [`LeaseState::on_tick`] expires the lease in time.
    pub fn on_claim(
        &mut self,
        sent_at: Instant,
        sent_ms: i64,
        now: Instant,
        result: &Result<Claim, ApiError>,
    ) -> Option<Event> {
        let was_leader = self.is_leader(now);
        match result {
            Ok(Claim::Won { previous }) => {
                // Counted from the send: the table may have written it at any point after.
                let until = sent_at + self.duration - self.margin;
                self.valid_until = Some(until);
                if now >= until {
                    // The answer came too late to act on.
                    self.valid_until = None;
                    return was_leader.then_some(Event::Lost(LostReason::Expired));
                }
                if was_leader {
                    return None;
                }
                Some(self.acquired(sent_ms, previous.as_ref()))
            }
            Ok(Claim::HeldByOther { holder }) => {
                self.valid_until = None;
                self.last_saw_leader_ms = Some(sent_ms);
                was_leader.then(|| {
                    Event::Lost(LostReason::TakenOver {
                        by: holder.as_ref().map(|h: &LeaseRecord| h.owner.clone()),
                    })
                })
            }
            Err(_) => self.on_tick(now),
        }
    }

    /// The takeover of a claim sent at `sent_ms` that replaced `previous`.
    fn acquired(&self, sent_ms: i64, previous: Option<&LeaseRecord>) -> Event {
        let ms = |from: i64| Duration::from_millis(sent_ms.saturating_sub(from).max(0) as u64);
        let lease_ms = i64::try_from(self.duration.as_millis()).unwrap_or(i64::MAX);
        let renewed_ms = previous.map(|p| p.expires_at_ms.saturating_sub(lease_ms));
        Event::Acquired {
            since_previous_leader: renewed_ms.or(self.last_saw_leader_ms).map(ms),
            after_lease_expiry: previous
                .filter(|p| p.owner != self.owner)
                .map(|p| ms(p.expires_at_ms)),
            previous_owner: previous.map(|p| p.owner.clone()),
        }
    }

    /// Expires the lease by our own clock.
    pub fn on_tick(&mut self, now: Instant) -> Option<Event> {
        match self.valid_until {
            Some(v) if now >= v => {
                self.valid_until = None;
                Some(Event::Lost(LostReason::Expired))
            }
            _ => None,
        }
    }

    /// Gives the lease up (before a release on shutdown); true if we held it.
    pub fn resign(&mut self) -> bool {
        self.valid_until.take().is_some()
    }
}

/// Observes claims and role changes (logs are written by [`run`]; metrics plug in here).
pub trait LeaseObserver: Send + Sync + 'static {
    /// One claim answered (`result` from [`claim_result`]); `leader` is the role after it.
    fn claimed(&self, result: &'static str, leader: bool);
    /// The role changed.
    fn changed(&self, event: &Event);
}

impl LeaseObserver for () {
    fn claimed(&self, _: &'static str, _: bool) {}
    fn changed(&self, _: &Event) {}
}

fn report(settings: &LeaseSettings, event: &Event, observer: &dyn LeaseObserver) {
    match event {
        Event::Acquired {
            since_previous_leader,
            after_lease_expiry,
            previous_owner,
        } => info!(
            event = crate::telemetry::event::LEADERSHIP_ACQUIRED,
            owner = %settings.owner_id,
            table = %settings.table,
            since_previous_leader_ms = since_previous_leader.map(|d| d.as_millis() as u64),
            after_lease_expiry_ms = after_lease_expiry.map(|d| d.as_millis() as u64),
            previous_owner = previous_owner.as_deref(),
            "this replica holds the lease and fires"
        ),
        Event::Lost(reason) => warn!(
            event = crate::telemetry::event::LEADERSHIP_LOST,
            owner = %settings.owner_id,
            reason = reason.as_str(),
            by = match reason {
                LostReason::TakenOver { by } => by.as_deref(),
                LostReason::Expired => None,
            },
            "this replica stops firing and stands by"
        ),
    }
    observer.changed(event);
}

/// Claims and renews until `cancel`, publishing `true` on `leader` while this replica holds the
/// lease; on cancel it releases a held lease so a standby takes over at its next attempt.
pub async fn run<T: LeaseTable>(
    table: Arc<T>,
    settings: LeaseSettings,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
    leader: watch::Sender<bool>,
    observer: Arc<dyn LeaseObserver>,
) {
    let mut state = LeaseState::new(settings.owner_id.clone(), settings.duration);
    let apply = |state: &LeaseState, event: Option<Event>| {
        if let Some(e) = event {
            report(&settings, &e, observer.as_ref());
        }
        leader.send_if_modified(|l| {
            let now = state.is_leader(Instant::now());
            std::mem::replace(l, now) != now
        });
    };
    'outer: loop {
        let sent_at = Instant::now();
        let sent_ms = clock.now().timestamp_millis();
        let call = table.claim(
            LEASE_NAME,
            &settings.owner_id,
            sent_ms,
            state.expires_at_ms(sent_ms),
        );
        tokio::pin!(call);
        let deadline = sent_at + settings.renew_interval;
        let result = loop {
            let expiry = state.valid_until();
            tokio::select! {
                r = tokio::time::timeout_at(deadline, &mut call) => {
                    break r.unwrap_or_else(|_| Err(ApiError {
                        operation: "PutItem",
                        kind: ErrorKind::Transient,
                        code: None,
                        message: format!("no answer within {:?}", settings.renew_interval),
                        request_id: None,
                    }));
                }
                // A hung call must not keep a holder firing past its deadline.
                _ = tokio::time::sleep_until(expiry.unwrap_or(deadline)), if expiry.is_some() => {
                    let e = state.on_tick(Instant::now());
                    apply(&state, e);
                }
                _ = cancel.cancelled() => break 'outer,
            }
        };
        let event = state.on_claim(sent_at, sent_ms, Instant::now(), &result);
        observer.claimed(claim_result(&result), state.is_leader(Instant::now()));
        if let Err(e) = &result {
            warn!(event = "lease_claim_failed", error = %e, "lease claim failed; retrying");
        }
        apply(&state, event);
        loop {
            let wake = state.valid_until().map_or(deadline, |v| v.min(deadline));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = cancel.cancelled() => break 'outer,
            }
            let e = state.on_tick(Instant::now());
            apply(&state, e);
            if Instant::now() >= deadline {
                break;
            }
        }
    }
    if state.resign() {
        leader.send_replace(false);
        match table.release(LEASE_NAME, &settings.owner_id).await {
            Ok(()) => info!(event = "lease_released", owner = %settings.owner_id, "lease released"),
            Err(e) => {
                warn!(event = "lease_release_failed", error = %e, "lease release failed; it expires by itself")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::fake::FakeLeaseTable;
    use crate::clock::TokioClock;
    use chrono::{DateTime, Utc};
    use std::sync::Mutex;

    const D: Duration = Duration::from_secs(30);
    const R: Duration = Duration::from_secs(10);

    fn settings(owner: &str) -> LeaseSettings {
        LeaseSettings {
            table: "leases".into(),
            duration: D,
            renew_interval: R,
            owner_id: owner.into(),
        }
    }

    fn base() -> DateTime<Utc> {
        "2026-03-01T00:00:00Z".parse().unwrap()
    }

    #[derive(Default)]
    struct Events(Mutex<Vec<(Instant, Event)>>);
    impl LeaseObserver for Events {
        fn claimed(&self, _: &'static str, _: bool) {}
        fn changed(&self, e: &Event) {
            self.0.lock().unwrap().push((Instant::now(), e.clone()));
        }
    }

    struct Replica {
        table: Arc<FakeLeaseTable>,
        leader: watch::Receiver<bool>,
        cancel: CancellationToken,
        events: Arc<Events>,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(table: FakeLeaseTable, owner: &str, clock: TokioClock) -> Replica {
        let table = Arc::new(table);
        let (tx, rx) = watch::channel(false);
        let cancel = CancellationToken::new();
        let events = Arc::new(Events::default());
        let task = tokio::spawn(run(
            table.clone(),
            settings(owner),
            Arc::new(clock),
            cancel.clone(),
            tx,
            events.clone(),
        ));
        Replica {
            table,
            leader: rx,
            cancel,
            events,
            task,
        }
    }

    /// Steps paused time by `step` until `until`, recording (a leader?, b leader?) each step.
    async fn watch_both(a: &Replica, b: &Replica, until: Duration) -> Vec<(bool, bool)> {
        let end = Instant::now() + until;
        let mut seen = Vec::new();
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(100)).await;
            seen.push((*a.leader.borrow(), *b.leader.borrow()));
        }
        seen
    }

    #[test]
    fn margin_is_a_quarter_of_the_lease_and_at_least_a_second() {
        assert_eq!(skew_margin(D), Duration::from_millis(7500));
        assert_eq!(skew_margin(Duration::from_secs(2)), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_won_answer_does_not_make_a_leader() {
        let mut s = LeaseState::new("a", D);
        let sent = Instant::now();
        tokio::time::advance(D).await;
        let e = s.on_claim(sent, 0, Instant::now(), &Ok(Claim::Won { previous: None }));
        assert_eq!(e, None);
        assert!(!s.is_leader(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn takeover_reports_the_gap_since_the_previous_leader_renewed() {
        let mut s = LeaseState::new("b", D);
        // a renewed at 31,000 ms (its item expires 30 s later); b's claim goes at 65,500 ms.
        let previous = Some(LeaseRecord {
            owner: "a".into(),
            expires_at_ms: 61_000,
        });
        let e = s.on_claim(
            Instant::now(),
            65_500,
            Instant::now(),
            &Ok(Claim::Won { previous }),
        );
        assert_eq!(
            e,
            Some(Event::Acquired {
                since_previous_leader: Some(Duration::from_millis(34_500)),
                after_lease_expiry: Some(Duration::from_millis(4_500)),
                previous_owner: Some("a".into()),
            })
        );
        // Our own renewal is no takeover and reports nothing.
        let own = Some(LeaseRecord {
            owner: "b".into(),
            expires_at_ms: 9_000,
        });
        let e = s.on_claim(
            Instant::now(),
            5_000,
            Instant::now(),
            &Ok(Claim::Won { previous: own }),
        );
        assert_eq!(e, None);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_release_the_gap_is_since_this_replica_last_saw_a_holder() {
        let mut s = LeaseState::new("b", D);
        let holder = Some(LeaseRecord {
            owner: "a".into(),
            expires_at_ms: 40_000,
        });
        let now = Instant::now();
        assert_eq!(
            s.on_claim(now, 10_000, now, &Ok(Claim::HeldByOther { holder })),
            None
        );
        // a released the item; b's next claim, 10 s later, finds none.
        let e = s.on_claim(now, 20_000, now, &Ok(Claim::Won { previous: None }));
        assert_eq!(
            e,
            Some(Event::Acquired {
                since_previous_leader: Some(Duration::from_secs(10)),
                after_lease_expiry: None,
                previous_owner: None,
            })
        );
        // The fleet's first leader knows no gap.
        let mut first = LeaseState::new("c", D);
        let e = first.on_claim(now, 0, now, &Ok(Claim::Won { previous: None }));
        assert_eq!(
            e,
            Some(Event::Acquired {
                since_previous_leader: None,
                after_lease_expiry: None,
                previous_owner: None,
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn held_by_other_demotes_a_holder() {
        let mut s = LeaseState::new("a", D);
        s.on_claim(
            Instant::now(),
            0,
            Instant::now(),
            &Ok(Claim::Won { previous: None }),
        );
        let holder = Some(LeaseRecord {
            owner: "b".into(),
            expires_at_ms: 0,
        });
        let e = s.on_claim(
            Instant::now(),
            0,
            Instant::now(),
            &Ok(Claim::HeldByOther { holder }),
        );
        assert_eq!(
            e,
            Some(Event::Lost(LostReason::TakenOver {
                by: Some("b".into())
            }))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_replica_takes_the_lease_and_keeps_it_with_a_call_per_renew_interval() {
        let table = FakeLeaseTable::new();
        let a = start(table.handle(), "a", TokioClock::starting_at(base()));
        tokio::time::sleep(Duration::from_secs(595)).await;
        assert!(*a.leader.borrow());
        // One claim at start, then one each 10 s (0, 10, …, 590).
        assert_eq!(a.table.calls(), 60);
        assert_eq!(a.events.0.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn of_two_replicas_exactly_one_leads() {
        let table = FakeLeaseTable::new();
        let a = start(table.handle(), "a", TokioClock::starting_at(base()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let b = start(table.handle(), "b", TokioClock::starting_at(base()));
        let seen = watch_both(&a, &b, Duration::from_secs(300)).await;
        assert!(seen.iter().all(|&(x, y)| x && !y), "a leads throughout");
        assert_eq!(table.item(LEASE_NAME).unwrap().owner, "a");
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_that_loses_the_table_stops_before_a_skewed_standby_takes_over() {
        let table = FakeLeaseTable::new();
        let a = start(table.handle(), "a", TokioClock::starting_at(base()));
        // b tries at 4, 14, …, 44 s; its wall clock runs 7 s ahead (inside the 7.5 s margin),
        // so at 44 s it sees a's lease (written at 20 s, until 50 s) expired.
        let skewed = TokioClock::starting_at(base() + chrono::Duration::seconds(7));
        tokio::time::sleep(Duration::from_secs(4)).await;
        let b = start(table.handle(), "b", skewed);
        tokio::time::sleep(Duration::from_secs(21)).await;
        a.table.set_unreachable(true);
        let cut = Instant::now();
        let seen = watch_both(&a, &b, Duration::from_secs(60)).await;
        assert!(seen.iter().all(|&(x, y)| !(x && y)), "never two leaders");
        assert!(*b.leader.borrow(), "b took over");
        let a_lost = a.events.0.lock().unwrap()[1].0;
        let b_won = b.events.0.lock().unwrap()[0].0;
        assert!(a_lost < b_won);
        // a's last claim won at 20 s; it stops 22.5 s later.
        assert!(a_lost - cut <= D, "a stopped within its lease");
        assert!(
            b_won - cut <= D + R,
            "b took over within lease + one attempt"
        );
        assert_eq!(
            a.events.0.lock().unwrap()[1].1,
            Event::Lost(LostReason::Expired)
        );
        match &b.events.0.lock().unwrap()[0].1 {
            Event::Acquired {
                since_previous_leader: Some(gap),
                after_lease_expiry: Some(after),
                ..
            } => assert!(gap > after && *gap >= D, "{gap:?} {after:?}"),
            e => panic!("{e:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_releases_and_the_standby_takes_over_at_its_next_attempt() {
        let table = FakeLeaseTable::new();
        let a = start(table.handle(), "a", TokioClock::starting_at(base()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut b = start(table.handle(), "b", TokioClock::starting_at(base()));
        tokio::time::sleep(Duration::from_secs(15)).await;
        a.cancel.cancel();
        a.task.await.unwrap();
        assert!(!*a.leader.borrow());
        assert_eq!(table.item(LEASE_NAME), None, "released");
        let t = Instant::now();
        b.leader.wait_for(|l| *l).await.unwrap();
        assert!(Instant::now() - t <= R, "within one renew interval");
        b.cancel.cancel();
        b.task.await.unwrap();
    }
}
