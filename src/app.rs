//! Wires config, scheduler, launcher, tracker, signals and the health listener into the daemon.
//!
//! [`run`] is four phases, each a method of [`Daemon`]: [`Daemon::start`] (tracker, launcher,
//! health listener), [`Daemon::stand_by`] (`[ha]`: until this replica holds the lease),
//! [`Daemon::first_resolution`] and [`Daemon::begin`] (tag selections, timers, restart recovery,
//! ready), [`Daemon::serve`] (signals, reloads, refreshes) and [`Daemon::shut_down`]. The AWS SDK
//! settings are [`sdk`]; reloads are [`reloads`].

mod reloads;
mod sdk;
mod systemd;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::aws::{BackupJobs, LeaseTable, RecoveryPoints, StepFunctions, TagSearch};
use crate::clock::Clock;
use crate::http::{self, Health};
use crate::launcher::Launcher;
use crate::lease::LeaseSettings;
use crate::metrics::Metrics;
use crate::model::Config;
use crate::pacing::TokenBucket;
use crate::recovery;
use crate::refresh::{self, Report, Selected, Specs};
use crate::scheduler::Scheduler;
use crate::signals::Signal;
use crate::telemetry::event;
use crate::tracker::{Tracker, TrackerHandle, TrackerSettings};

use reloads::Reloads;
pub use sdk::{check_credentials, sdk_config};
use systemd::notify;

/// How the daemon runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The config file (None: [`crate::config::CONFIG_TOML_ENV`]).
    pub config_path: Option<PathBuf>,
    /// Reload when the file changes.
    pub watch: bool,
    /// Fire and log, but make no AWS call.
    pub dry_run: bool,
}

/// How long the start waits for the first resolution of tag selections before it registers the
/// timers and runs recovery without the unresolved ones (they join at their first refresh).
const FIRST_RESOLUTION: Duration = Duration::from_secs(10);

/// Runs the daemon until a shutdown signal; returns after in-flight starts finished (or the
/// grace period ran out).
///
/// With `[ha]` and a `lease` table it first stands by (config valid, `/readyz` ready, no Step
/// Functions or Backup call) until it holds the lease, then runs what a start runs (recovery,
/// catch-up). When it loses the lease it stops firing, shuts down as on SIGTERM and returns an
/// error, so its supervisor restarts it as a standby.
///
/// Tag selections are resolved through `tags` by the holder only (or by every replica without
/// `[ha]`); see [`crate::refresh`].
#[allow(clippy::too_many_arguments)]
pub async fn run<S: StepFunctions, B: BackupJobs + RecoveryPoints, L: LeaseTable, T: TagSearch>(
    opts: Options,
    mut config: Config,
    sfn: Arc<S>,
    backup: Arc<B>,
    lease: Option<Arc<L>>,
    tags: Arc<T>,
    clock: Arc<dyn Clock>,
    signals: mpsc::UnboundedReceiver<Signal>,
) -> anyhow::Result<()> {
    let mut d = Daemon::start(opts, &config, sfn, backup, clock, signals).await?;
    let mut leader = None;
    if let (Some(ha), Some(table)) = (config.ha.clone(), lease) {
        match d.stand_by(&mut config, ha, table).await? {
            Some(rx) => leader = Some(rx),
            None => return Ok(()),
        }
    }
    let mut serving = d.first_resolution(config, tags.clone()).await;
    d.begin(&mut serving).await?;
    d.restores(&serving, tags);
    let lost = d.serve(&mut serving, leader).await;
    d.shut_down(serving, lost).await
}

/// What every phase of the daemon shares.
struct Daemon<S: StepFunctions, B: BackupJobs> {
    opts: Options,
    sfn: Arc<S>,
    backup: Arc<B>,
    clock: Arc<dyn Clock>,
    signals: mpsc::UnboundedReceiver<Signal>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Stops the scheduler and the health listener.
    stop: CancellationToken,
    /// Cuts short the waits between StartExecution retries.
    stop_retries: CancellationToken,
    tracker_stop: CancellationToken,
    tracker_task: JoinHandle<()>,
    handle: TrackerHandle,
    launcher: Launcher<S>,
    reloads: Reloads,
    /// The resolved tag selections (none on a standby: only the holder resolves).
    selected: Selected,
    lease_stop: CancellationToken,
    lease_task: Option<JoinHandle<()>>,
    /// The StartExecution quota the launcher, the copies and the restores share.
    starts: Arc<TokenBucket>,
}

impl<S: StepFunctions, B: BackupJobs + RecoveryPoints> Daemon<S, B> {
    /// The restore tests of every config from here on, and the sweeper (on the replica that
    /// works only: this runs after the lease is held).
    fn restores<T: TagSearch>(&self, serving: &Serving, tags: Arc<T>) {
        if self.opts.dry_run {
            return;
        }
        let rx = serving.config_tx.as_ref().expect("begun").subscribe();
        let config = rx.borrow().clone();
        let parts = Arc::new(crate::restore_tests::Parts {
            sfn: self.sfn.clone(),
            backup: self.backup.clone(),
            tags,
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            describes: Arc::new(TokenBucket::new(config.pacing.describe_rate, 10)),
            starts: self.starts.clone(),
            poll_interval: config.poll_interval,
            max_poll_interval: config.max_poll_interval,
        });
        tokio::spawn(crate::restore_tests::run(parts, rx, self.stop.clone()));
    }
}

/// What serving needs beyond the daemon: the config as loaded and as effective, and the
/// channels of the scheduler and the selection refreshes.
struct Serving {
    /// The config as loaded (selections unresolved).
    base: Config,
    /// The effective config until the scheduler takes it ([`Daemon::begin`]).
    effective: Option<Config>,
    config_tx: Option<watch::Sender<Arc<Config>>>,
    specs_tx: watch::Sender<Specs>,
    reports: mpsc::UnboundedReceiver<Report>,
    refresh_stop: CancellationToken,
    scheduler_task: Option<JoinHandle<()>>,
}

impl<S: StepFunctions, B: BackupJobs> Daemon<S, B> {
    /// The tracker, the launcher and the health listener: running, firing nothing yet.
    async fn start(
        opts: Options,
        config: &Config,
        sfn: Arc<S>,
        backup: Arc<B>,
        clock: Arc<dyn Clock>,
        signals: mpsc::UnboundedReceiver<Signal>,
    ) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        let stop = CancellationToken::new();
        let stop_retries = CancellationToken::new();
        let (mut tracker, handle) = Tracker::new(
            sfn.clone(),
            backup.clone(),
            clock.clone(),
            TrackerSettings {
                poll_interval: config.poll_interval,
                max_poll_interval: config.max_poll_interval,
                describe_rate: config.pacing.describe_rate,
                backup_read_rate: config.pacing.backup_read_rate,
            },
            metrics.clone(),
        );
        // One StartExecution quota for the launcher's backups and the tracker's copies.
        let starts = Arc::new(TokenBucket::new(
            config.pacing.start_rate,
            config.pacing.start_burst,
        ));
        tracker.share_start_pacing(starts.clone());
        let tracker_stop = CancellationToken::new();
        let tracker_task = tokio::spawn(tracker.run(tracker_stop.clone()));
        let launcher = Launcher::new(
            sfn.clone(),
            clock.clone(),
            handle.clone(),
            starts.clone(),
            metrics.clone(),
            opts.dry_run,
            stop_retries.clone(),
        );
        if let Some(addr) = config.listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            info!(listen = %addr, "health and metrics listener up");
            tokio::spawn(http::serve(
                listener,
                metrics.clone(),
                health.clone(),
                stop.clone(),
            ));
        }
        let reloads = Reloads::new(opts.config_path.clone(), opts.watch, config);
        metrics.set_generation(reloads.generation);
        Ok(Daemon {
            opts,
            sfn,
            backup,
            clock,
            signals,
            metrics,
            health,
            stop,
            stop_retries,
            tracker_stop,
            tracker_task,
            handle,
            launcher,
            reloads,
            selected: Selected::new(),
            lease_stop: CancellationToken::new(),
            lease_task: None,
            starts,
        })
    }

    /// `[ha]`: stands by (ready, applying reloads, calling nothing but the lease table) until
    /// this replica holds the lease; then the lease's watch, or `None` when a shutdown came
    /// first (the standby has stopped).
    async fn stand_by<L: LeaseTable>(
        &mut self,
        config: &mut Config,
        ha: LeaseSettings,
        table: Arc<L>,
    ) -> anyhow::Result<Option<watch::Receiver<bool>>> {
        let (tx, mut rx) = watch::channel(false);
        self.metrics.set_ha_lease(ha.duration);
        let observer: Arc<dyn crate::lease::LeaseObserver> = self.metrics.clone();
        self.lease_task = Some(tokio::spawn(crate::lease::run(
            table,
            ha.clone(),
            self.clock.clone(),
            self.lease_stop.clone(),
            tx,
            observer,
        )));
        self.health.config_loaded.store(true, Ordering::Relaxed);
        notify(&[sd_notify::NotifyState::Ready]);
        info!(
            event = event::STANDBY,
            owner = %ha.owner_id,
            table = %ha.table,
            "standing by: waiting for the lease"
        );
        loop {
            // A standby applies reloads as the holder does: it takes over with the newest config.
            let changed: Option<Vec<u8>> = tokio::select! {
                r = rx.wait_for(|l| *l) => {
                    if r.is_err() {
                        anyhow::bail!("the lease task ended");
                    }
                    break;
                }
                bytes = self.reloads.changed_file() => Some(bytes),
                s = self.signals.recv() => match s {
                    Some(Signal::Reload) => None,
                    Some(Signal::Shutdown) | None => {
                        info!(event = event::SHUTDOWN, "shutting down a standby");
                        self.lease_stop.cancel();
                        if let Some(t) = self.lease_task.take() {
                            let _ = t.await;
                        }
                        return Ok(None);
                    }
                },
            };
            if let Some((loaded, _)) = self
                .reloads
                .apply(config, changed, &self.metrics, &mut self.selected)
                .await
            {
                *config = loaded;
            }
        }
        Ok(Some(rx))
    }

    /// Tag selections: resolved before the timers when the API answers soon; until then (and
    /// when it does not) the explicit targets run alone and `/readyz` names what is missing.
    async fn first_resolution<T: TagSearch>(&mut self, base: Config, tags: Arc<T>) -> Serving {
        let (specs_tx, specs_rx) = watch::channel(Specs::of(&base));
        let (reports_tx, mut reports) = mpsc::unbounded_channel();
        let refresh_stop = CancellationToken::new();
        let dry_run = self.opts.dry_run;
        if !dry_run {
            // Always running: a reload may add the first selection.
            tokio::spawn(refresh::run(
                tags,
                specs_rx,
                reports_tx,
                self.metrics.clone(),
                refresh_stop.clone(),
            ));
        }
        if !base.selections.is_empty() && !dry_run {
            let mut heard = std::collections::HashSet::new();
            let deadline = tokio::time::Instant::now() + FIRST_RESOLUTION;
            while heard.len() < base.selections.len() {
                match tokio::time::timeout_at(deadline, reports.recv()).await {
                    Ok(Some(r)) => {
                        heard.insert(r.selection.name.clone());
                        self.selected.take(&base, r, &self.metrics);
                    }
                    _ => break,
                }
            }
        } else if !base.selections.is_empty() {
            warn!(
                selections = base.selections.len(),
                "dry run: tag selections are not resolved (no AWS call); only explicit targets fire"
            );
        }
        self.health.set_pending(self.selected.pending(&base));
        let effective = self.selected.effective(&base);
        Serving {
            base,
            effective: Some(effective),
            config_tx: None,
            specs_tx,
            reports,
            refresh_stop,
            scheduler_task: None,
        }
    }

    /// Timers first (slots after now), then restart recovery (slots up to now), so that no slot
    /// falls between; then ready.
    async fn begin(&mut self, serving: &mut Serving) -> anyhow::Result<()> {
        let config = serving.effective.take().expect("resolved once");
        let generation = self.reloads.generation;
        info!(
            event = event::CONFIG_LOADED,
            source = %config.source,
            targets = config.rules.len(),
            enabled = config.enabled_rules().count(),
            schedule_groups = config.groups().len(),
            generation,
            dry_run = self.opts.dry_run,
            selections = serving.base.selections.len(),
            "config loaded"
        );
        let refusals = crate::stack::refusals(&config);
        for (field, targets, names, message) in crate::stack::by_field(&refusals, 20) {
            warn!(
                event = event::STACK_REFUSES,
                field,
                targets,
                names = ?names,
                "{message}"
            );
        }
        let mut scheduler = Scheduler::new(
            self.launcher.clone(),
            self.clock.clone(),
            self.metrics.clone(),
        )
        .await
        .context("starting tokio-cron-scheduler")?;
        scheduler.apply(&config, self.clock.now()).await;
        info!(timers = scheduler.timer_count(), "schedules registered");
        let config = Arc::new(config);
        // The watch's baseline is the text `config` was parsed from: an edit made since (during
        // recovery below, say) differs from it and is reloaded at the first look.
        let (config_tx, config_rx) = watch::channel(config.clone());
        // Coverage series (expected intervals, last successes seeded from AWS Backup) for every
        // config from here on: on the replica that works only, so after a takeover too.
        tokio::spawn(crate::coverage::run(
            config_tx.subscribe(),
            self.backup.clone(),
            self.metrics.clone(),
            !self.opts.dry_run,
            self.stop.clone(),
        ));
        if !self.opts.dry_run {
            recovery::recover(
                &config,
                &*self.sfn,
                &*self.backup,
                &*self.clock,
                &self.handle,
                &self.launcher,
                &self.metrics,
            )
            .await;
        }
        serving.scheduler_task = Some(tokio::spawn(scheduler.run(config_rx, self.stop.clone())));
        serving.config_tx = Some(config_tx);
        self.health.config_loaded.store(true, Ordering::Relaxed);
        notify(&[sd_notify::NotifyState::Ready]);
        info!(
            event = event::READY,
            generation,
            watch = self.reloads.watched_path.is_some(),
            "ready: schedules registered, restart recovery done"
        );
        if let Some(period) = sd_notify::watchdog_enabled() {
            let stop = self.stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period / 2);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = tick.tick() => notify(&[sd_notify::NotifyState::Watchdog]),
                    }
                }
            });
        }
        Ok(())
    }

    /// Serves until a shutdown signal or the loss of the lease (then true): reloads, and the
    /// selections' refreshes, each swapped into the scheduler when valid.
    async fn serve(
        &mut self,
        serving: &mut Serving,
        mut leader: Option<watch::Receiver<bool>>,
    ) -> bool {
        let config_tx = serving.config_tx.as_ref().expect("begun");
        loop {
            let lost_lease = async {
                match leader.as_mut() {
                    Some(rx) => {
                        let _ = rx.wait_for(|l| !*l).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            // Some(bytes): a watched change, already read; None: SIGHUP (read the source now).
            let changed: Option<Vec<u8>> = tokio::select! {
                () = lost_lease => return true,
                s = self.signals.recv() => match s {
                    Some(Signal::Reload) => None,
                    Some(Signal::Shutdown) | None => return false,
                },
                Some(report) = serving.reports.recv() => {
                    // A refresh that changed nothing changes nothing here either.
                    if self.selected.take(&serving.base, report, &self.metrics) {
                        self.health.set_pending(self.selected.pending(&serving.base));
                        let _ = config_tx.send(Arc::new(self.selected.effective(&serving.base)));
                    }
                    continue;
                }
                bytes = self.reloads.changed_file() => Some(bytes),
            };
            let old = config_tx.borrow().clone();
            if let Some((loaded, new)) = self
                .reloads
                .apply(&old, changed, &self.metrics, &mut self.selected)
                .await
            {
                let _ = serving.specs_tx.send(Specs::of(&loaded));
                serving.base = loaded;
                self.health
                    .set_pending(self.selected.pending(&serving.base));
                let _ = config_tx.send(Arc::new(new));
            }
        }
    }

    /// Stops firing, lets in-flight starts finish within the grace period, stops following,
    /// hands the lease over. After a lost lease: an error, so the supervisor restarts this
    /// replica as a standby.
    async fn shut_down(self, serving: Serving, lost: bool) -> anyhow::Result<()> {
        let grace = serving
            .config_tx
            .as_ref()
            .expect("begun")
            .borrow()
            .shutdown_grace;
        info!(
            event = event::SHUTDOWN,
            grace_seconds = grace.as_secs_f64(),
            "shutting down: no new slots fire"
        );
        notify(&[sd_notify::NotifyState::Stopping]);
        self.stop.cancel();
        serving.refresh_stop.cancel();
        if let Some(t) = serving.scheduler_task {
            let _ = t.await;
        }
        if lost {
            // The lease is (or is about to be) another replica's: it follows the backups in
            // flight from its takeover on, so this one stops logging them now.
            self.tracker_stop.cancel();
        }
        // In-flight StartExecution calls finish; waits between retries are cut short.
        self.stop_retries.cancel();
        if !self.launcher.drain(grace).await {
            warn!(
                event = event::SHUTDOWN,
                "grace period over with StartExecution calls in flight; their slots are caught up at the next start"
            );
        }
        self.tracker_stop.cancel();
        let _ = self.tracker_task.await;
        // Nothing fires or is followed here any more: hand the lease over, so a standby takes
        // over at its next attempt (and each backup's lines come from one replica).
        self.lease_stop.cancel();
        if let Some(t) = self.lease_task {
            let _ = t.await;
        }
        info!(event = event::SHUTDOWN, "stopped");
        if lost {
            anyhow::bail!(
                "leadership lost: exiting so the supervisor restarts this replica as a standby"
            );
        }
        Ok(())
    }
}
