//! Wires config, scheduler, launcher, tracker, signals and the health listener into the daemon.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_types::SdkConfig;
use aws_types::region::Region;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::aws::{BackupJobs, LeaseTable, StepFunctions, TagSearch};
use crate::clock::Clock;
use crate::config::{self, Config, ConfigError, ContentHash};
use crate::http::{self, Health};
use crate::launcher::Launcher;
use crate::metrics::Metrics;
use crate::pacing::TokenBucket;
use crate::recovery;
use crate::refresh::{self, Selected, Specs};
use crate::scheduler::Scheduler;
use crate::signals::Signal;
use crate::telemetry::event;
use crate::tracker::{Tracker, TrackerSettings};
use crate::watch::{self as file_watch, Action, Look, Watch};

/// Target names a `config_reloaded` line lists per kind of change (the counts are complete).
const LOGGED_NAMES: usize = 20;

/// How the daemon runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The config file (None: [`config::CONFIG_TOML_ENV`]).
    pub config_path: Option<PathBuf>,
    /// Reload when the file changes.
    pub watch: bool,
    /// Fire and log, but make no AWS call.
    pub dry_run: bool,
}

/// The SDK settings: the standard chain, plus the config's region and endpoint.
pub async fn sdk_config(config: &Config, static_credentials: bool) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .operation_timeout(Duration::from_secs(90))
                .build(),
        )
        // Responses are small JSON documents, and the attempt timeout already bounds a stall;
        // the per-request throughput monitor only costs CPU in a same-second storm.
        .stalled_stream_protection(
            aws_config::stalled_stream_protection::StalledStreamProtectionConfig::disabled(),
        );
    // Every client is made for its machine's region (`RegionalClients`), so the base region only
    // needs to be some region: without `region`, take the first machine's rather than asking the
    // chain, which off EC2 ends in instance metadata (IMDS) calls and long warnings.
    let region = config.region.clone().or_else(|| {
        config
            .targets
            .first()
            .map(|t| t.state_machine.region.clone())
    });
    if let Some(r) = region {
        loader = loader.region(Region::new(r));
    }
    if let Some(u) = &config.endpoint_url {
        loader = loader.endpoint_url(u);
    }
    if static_credentials {
        loader = loader.credentials_provider(aws_sdk_sfn::config::Credentials::new(
            "demo",
            "demo",
            None,
            None,
            "orchestrator-demo",
        ));
    }
    loader.load().await
}

/// How long the start-up credentials check may take (the chain's instance metadata step
/// times out by itself after about a second off EC2).
const CREDENTIALS_CHECK: Duration = Duration::from_secs(10);

/// Resolves credentials once at start: when none can be found, says in one short line what to
/// set (the SDK would otherwise fail each call with a long chain report). The answer is cached
/// by the SDK, so the first call does not resolve them again.
pub async fn check_credentials(sdk: &SdkConfig) -> bool {
    use aws_sdk_sfn::config::ProvideCredentials;
    let Some(provider) = sdk.credentials_provider() else {
        return true;
    };
    let found = tokio::time::timeout(CREDENTIALS_CHECK, provider.provide_credentials())
        .await
        .is_ok_and(|r| r.is_ok());
    if !found {
        warn!(
            event = event::AWS_CREDENTIALS_MISSING,
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance or task role"
        );
    }
    found
}

fn log_config_errors(e: &ConfigError) {
    match e {
        ConfigError::Invalid(diags) => {
            for d in diags {
                error!(
                    event = event::CONFIG_RELOAD_FAILED,
                    file = %d.file,
                    line = d.line,
                    column = d.column,
                    field = %d.field,
                    error = %d.message,
                    "config rejected; the running config stays"
                );
            }
        }
        other => error!(
            event = event::CONFIG_RELOAD_FAILED,
            error = %other,
            "config rejected; the running config stays"
        ),
    }
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    // Outside systemd there is no NOTIFY_SOCKET and this does nothing.
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "systemd notify failed");
    }
}

/// Names of the enabled targets a reload adds, removes and changes (linear: 100,000 targets).
/// A target is changed when any of its rules is: the rules of a target are consecutive in a
/// config, compared in order.
fn diff_targets<'a>(
    old: &'a Config,
    new: &'a Config,
) -> (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) {
    use crate::config::{Settings, Target};
    use crate::fasthash::FastMap;
    type Run<'r, 'a> = (&'a str, &'r [&'a Target]);
    /// Each target's enabled rules, one run per target, in config order.
    fn runs<'r, 'a>(rules: &'r [&'a Target]) -> Vec<Run<'r, 'a>> {
        rules
            .chunk_by(|a, b| a.name == b.name)
            .map(|run| (&*run[0].name, run))
            .collect()
    }
    let enabled =
        |c: &'a Config| -> Vec<&'a Target> { c.enabled_targets().map(|t| &**t).collect() };
    let (old_rules, new_rules) = (enabled(old), enabled(new));
    let (before, after) = (runs(&old_rules), runs(&new_rules));
    // Two loads never share `Settings`, but a fleet has few distinct ones: compare each pair once.
    let mut settings_equal: FastMap<(*const Settings, *const Settings), bool> = FastMap::default();
    let mut same = |a: &[&Target], b: &[&Target]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.name == y.name
                    && x.resource_arn == y.resource_arn
                    && *settings_equal
                        .entry((Arc::as_ptr(&x.settings), Arc::as_ptr(&y.settings)))
                        .or_insert_with(|| x.settings == y.settings)
            })
    };
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    if before.len() == after.len() && before.iter().zip(&after).all(|(b, a)| b.0 == a.0) {
        // The usual reload: the same targets in the same order.
        for (b, a) in before.iter().zip(&after) {
            if !same(b.1, a.1) {
                changed.push(a.0);
            }
        }
    } else {
        fn index<'r, 'a>(runs: &[Run<'r, 'a>]) -> FastMap<&'a str, &'r [&'a Target]> {
            let mut m = FastMap::with_capacity_and_hasher(runs.len(), Default::default());
            m.extend(runs.iter().copied());
            m
        }
        let (old_index, new_index) = (index(&before), index(&after));
        for (name, rules) in &after {
            match old_index.get(name) {
                None => added.push(*name),
                Some(was) if !same(was, rules) => changed.push(*name),
                Some(_) => {}
            }
        }
        removed.extend(
            before
                .iter()
                .map(|(name, _)| *name)
                .filter(|name| !new_index.contains_key(name)),
        );
    }
    for v in [&mut added, &mut removed, &mut changed] {
        v.sort_unstable();
    }
    (added, removed, changed)
}

/// Parses `bytes` (a watched change) or reads the source afresh (SIGHUP); with the content
/// hash of a file that was read, so that a refused content is refused once.
async fn reload(
    path: Option<&std::path::Path>,
    bytes: Option<Vec<u8>>,
) -> (Result<Config, ConfigError>, Option<ContentHash>) {
    let Some(path) = path else {
        return (config::load_from(None), None);
    };
    let file = path.display().to_string();
    let bytes = match bytes {
        Some(b) => b,
        None => match tokio::fs::read(path).await {
            Ok(b) => b,
            Err(source) => return (Err(ConfigError::Read { file, source }), None),
        },
    };
    let hash = config::content_hash(&bytes);
    (config::from_bytes(bytes, &file), Some(hash))
}

/// Reloads (SIGHUP, `--watch`) as the standby and the holder both apply them: the file watch,
/// the generation, the `config_reloaded` / `config_reload_failed` lines and their metrics.
struct Reloads {
    watched: Watch,
    /// The file `--watch` looks at.
    watched_path: Option<PathBuf>,
    /// The file SIGHUP reads (None: [`config::CONFIG_TOML_ENV`]).
    config_path: Option<PathBuf>,
    generation: u64,
    tick: tokio::time::Interval,
}

impl Reloads {
    fn new(opts: &Options, config: &Config) -> Self {
        Reloads {
            watched: Watch::new(config.content_hash),
            watched_path: opts.config_path.clone().filter(|_| opts.watch),
            config_path: opts.config_path.clone(),
            generation: 1,
            tick: tokio::time::interval(file_watch::INTERVAL),
        }
    }

    /// The next `--watch` look that found a new content to load; never, without `--watch`.
    async fn changed_file(&mut self) -> Vec<u8> {
        let Some(path) = self.watched_path.clone() else {
            return std::future::pending().await;
        };
        loop {
            self.tick.tick().await;
            let read = tokio::fs::read(&path).await;
            let look = match &read {
                Ok(bytes) => Look::Read(config::content_hash(bytes)),
                Err(e) => Look::Unreadable(e.kind()),
            };
            match (self.watched.observe(look), read) {
                (Action::Load, Ok(bytes)) => {
                    info!(file = %path.display(), "config file changed");
                    return bytes;
                }
                (Action::Settle, _) => {
                    // Look again soon: a writer may still be at work.
                    self.tick.reset_after(file_watch::SETTLE);
                }
                (Action::ReportUnreadable(_), Err(e)) => warn!(
                    event = event::CONFIG_FILE_UNREADABLE,
                    file = %path.display(),
                    error = %e,
                    "config file cannot be read; the running config stays"
                ),
                (Action::ReportBack, _) => {
                    info!(file = %path.display(), "config file readable again, unchanged");
                }
                _ => {}
            }
        }
    }

    /// Parses `changed` (a watched change) or reads the source afresh (SIGHUP: None), logs the
    /// outcome against `old` (the effective config: explicit targets and resolved selections),
    /// and returns the new config as loaded and as effective, when it is valid. Selections that
    /// search as before keep their sets in `selected`; changed ones are resolved again at once.
    async fn apply(
        &mut self,
        old: &Config,
        changed: Option<Vec<u8>>,
        metrics: &Metrics,
        selected: &mut Selected,
    ) -> Option<(Config, Config)> {
        notify(&[
            sd_notify::NotifyState::Reloading,
            sd_notify::NotifyState::monotonic_usec_now()
                .unwrap_or(sd_notify::NotifyState::Status("reloading")),
        ]);
        let (loaded, hash) = reload(self.config_path.as_deref(), changed).await;
        let applied = match loaded {
            Ok(loaded) => {
                self.generation += 1;
                let generation = self.generation;
                selected.reloaded(&loaded);
                let new = selected.effective(&loaded);
                let (added, removed, changed) = diff_targets(old, &new);
                info!(
                    event = event::CONFIG_RELOADED,
                    source = %new.source,
                    generation,
                    targets = new.targets.len(),
                    added_count = added.len(),
                    removed_count = removed.len(),
                    changed_count = changed.len(),
                    added = ?&added[..added.len().min(LOGGED_NAMES)],
                    removed = ?&removed[..removed.len().min(LOGGED_NAMES)],
                    changed = ?&changed[..changed.len().min(LOGGED_NAMES)],
                    "config reloaded; backups in flight are still followed"
                );
                metrics.reload("applied");
                metrics.set_generation(generation);
                self.watched.applied(loaded.content_hash);
                Some((loaded, new))
            }
            Err(e) => {
                if let Some(h) = hash {
                    // Refused once: `--watch` neither retries nor re-reports this content.
                    self.watched.refused(h);
                }
                metrics.reload("rejected");
                log_config_errors(&e);
                None
            }
        };
        notify(&[sd_notify::NotifyState::Ready]);
        applied
    }
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
pub async fn run<S: StepFunctions, B: BackupJobs, L: LeaseTable, T: TagSearch>(
    opts: Options,
    mut config: Config,
    sfn: Arc<S>,
    backup: Arc<B>,
    lease: Option<Arc<L>>,
    tags: Arc<T>,
    clock: Arc<dyn Clock>,
    mut signals: mpsc::UnboundedReceiver<Signal>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let stop = CancellationToken::new();
    let stop_retries = CancellationToken::new();

    let (tracker, handle) = Tracker::new(
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
    let tracker_stop = CancellationToken::new();
    let tracker_task = tokio::spawn(tracker.run(tracker_stop.clone()));
    let launcher = Launcher::new(
        sfn.clone(),
        clock.clone(),
        handle.clone(),
        Arc::new(TokenBucket::new(
            config.pacing.start_rate,
            config.pacing.start_burst,
        )),
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

    let mut reloads = Reloads::new(&opts, &config);
    metrics.set_generation(reloads.generation);
    // The resolved tag selections (none on a standby: only the holder resolves).
    let mut selected = Selected::new();
    // [ha]: stand by until this replica holds the lease.
    let lease_stop = CancellationToken::new();
    let mut lease_task = None;
    let mut leader_rx = None;
    if let (Some(ha), Some(table)) = (config.ha.clone(), lease) {
        let (tx, mut rx) = watch::channel(false);
        let observer: Arc<dyn crate::lease::LeaseObserver> = metrics.clone();
        lease_task = Some(tokio::spawn(crate::lease::run(
            table,
            ha.clone(),
            clock.clone(),
            lease_stop.clone(),
            tx,
            observer,
        )));
        health.config_loaded.store(true, Ordering::Relaxed);
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
                bytes = reloads.changed_file() => Some(bytes),
                s = signals.recv() => match s {
                    Some(Signal::Reload) => None,
                    Some(Signal::Shutdown) | None => {
                        info!(event = event::SHUTDOWN, "shutting down a standby");
                        lease_stop.cancel();
                        if let Some(t) = lease_task {
                            let _ = t.await;
                        }
                        return Ok(());
                    }
                },
            };
            if let Some((loaded, _)) = reloads
                .apply(&config, changed, &metrics, &mut selected)
                .await
            {
                config = loaded;
            }
        }
        leader_rx = Some(rx);
    }

    // Tag selections: resolved before the timers when the API answers soon; until then (and
    // when it does not) the explicit targets run alone and `/readyz` names what is missing.
    let mut base = config;
    let (specs_tx, specs_rx) = watch::channel(Specs::of(&base));
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let refresh_stop = CancellationToken::new();
    if !opts.dry_run {
        // Always running: a reload may add the first selection.
        tokio::spawn(refresh::run(
            tags,
            specs_rx,
            reports_tx,
            metrics.clone(),
            refresh_stop.clone(),
        ));
    }
    if !base.selections.is_empty() && !opts.dry_run {
        let mut heard = std::collections::HashSet::new();
        let deadline = tokio::time::Instant::now() + FIRST_RESOLUTION;
        while heard.len() < base.selections.len() {
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some(r)) => {
                    heard.insert(r.selection.name.clone());
                    selected.take(&base, r, &metrics);
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
    health.set_pending(selected.pending(&base));
    let config = selected.effective(&base);

    let generation = reloads.generation;
    info!(
        event = event::CONFIG_LOADED,
        source = %config.source,
        targets = config.targets.len(),
        enabled = config.enabled_targets().count(),
        schedule_groups = config.groups().len(),
        generation,
        dry_run = opts.dry_run,
        selections = base.selections.len(),
        "config loaded"
    );
    let mut scheduler = Scheduler::new(launcher.clone(), clock.clone(), metrics.clone())
        .await
        .context("starting tokio-cron-scheduler")?;
    // Timers first (slots after now), then recovery (slots up to now): none falls between.
    scheduler.apply(&config, clock.now()).await;
    info!(timers = scheduler.timer_count(), "schedules registered");
    if !opts.dry_run {
        recovery::recover(
            &config, &*sfn, &*backup, &*clock, &handle, &launcher, &metrics,
        )
        .await;
    }
    // The watch's baseline is the text `config` was parsed from: an edit made since (during
    // recovery above, say) differs from it and is reloaded at the first look.
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let scheduler_task = tokio::spawn(scheduler.run(config_rx, stop.clone()));
    health.config_loaded.store(true, Ordering::Relaxed);
    notify(&[sd_notify::NotifyState::Ready]);
    info!(
        event = event::READY,
        generation,
        watch = reloads.watched_path.is_some(),
        "ready: schedules registered, restart recovery done"
    );

    if let Some(period) = sd_notify::watchdog_enabled() {
        let stop = stop.clone();
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

    let mut lost = false;
    loop {
        let lost_lease = async {
            match leader_rx.as_mut() {
                Some(rx) => {
                    let _ = rx.wait_for(|l| !*l).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        // Some(bytes): a watched change, already read; None: SIGHUP (read the source now).
        let changed: Option<Vec<u8>> = tokio::select! {
            () = lost_lease => {
                lost = true;
                break;
            }
            s = signals.recv() => match s {
                Some(Signal::Reload) => None,
                Some(Signal::Shutdown) | None => break,
            },
            Some(report) = reports.recv() => {
                // A refresh that changed nothing changes nothing here either.
                if selected.take(&base, report, &metrics) {
                    health.set_pending(selected.pending(&base));
                    let _ = config_tx.send(Arc::new(selected.effective(&base)));
                }
                continue;
            }
            bytes = reloads.changed_file() => Some(bytes),
        };
        let old = config_tx.borrow().clone();
        if let Some((loaded, new)) = reloads.apply(&old, changed, &metrics, &mut selected).await {
            let _ = specs_tx.send(Specs::of(&loaded));
            base = loaded;
            health.set_pending(selected.pending(&base));
            let _ = config_tx.send(Arc::new(new));
        }
    }

    let grace = config_tx.borrow().shutdown_grace;
    info!(
        event = event::SHUTDOWN,
        grace_seconds = grace.as_secs_f64(),
        "shutting down: no new slots fire"
    );
    notify(&[sd_notify::NotifyState::Stopping]);
    stop.cancel();
    refresh_stop.cancel();
    let _ = scheduler_task.await;
    if lost {
        // The lease is (or is about to be) another replica's: it follows the backups in flight
        // from its takeover on, so this one stops logging them now.
        tracker_stop.cancel();
    }
    // In-flight StartExecution calls finish; waits between retries are cut short.
    stop_retries.cancel();
    if !launcher.drain(grace).await {
        warn!(
            event = event::SHUTDOWN,
            "grace period over with StartExecution calls in flight; their slots are caught up at the next start"
        );
    }
    tracker_stop.cancel();
    let _ = tracker_task.await;
    // Nothing fires or is followed here any more: hand the lease over, so a standby takes over
    // at its next attempt (and each backup's lines come from one replica).
    lease_stop.cancel();
    if let Some(t) = lease_task {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(targets: &[(&str, &str)]) -> Config {
        let mut text = String::from(
            "state_machine_arn = \"arn:aws:states:us-east-1:123456789012:stateMachine:b\"\n",
        );
        for (i, (name, schedule)) in targets.iter().enumerate() {
            text.push_str(&format!(
                "[[backup]]\nname = \"{name}\"\nresource_arn = \"arn:aws:ec2:us-east-1:123456789012:instance/i-{i:08x}\"\nschedule = \"{schedule}\"\n"
            ));
        }
        config::parse(&text, "t.toml").unwrap()
    }

    #[test]
    fn reload_diff_names_added_removed_and_changed_targets() {
        let old = config(&[("a", "0 3 * * *"), ("b", "0 3 * * *"), ("c", "0 3 * * *")]);
        let new = config(&[("a", "0 3 * * *"), ("b", "0 4 * * *"), ("d", "0 3 * * *")]);
        let (added, removed, changed) = diff_targets(&old, &new);
        assert_eq!(added, vec!["d"]);
        assert_eq!(removed, vec!["c"]);
        // `d` takes `c`'s place (and instance id); `b` changed its schedule.
        assert_eq!(changed, vec!["b"]);

        // The same targets in the same order (the usual reload): only `b` changed.
        let again = config(&[("a", "0 3 * * *"), ("b", "0 5 * * *"), ("c", "0 3 * * *")]);
        assert_eq!(diff_targets(&old, &again), (vec![], vec![], vec!["b"]));
        assert_eq!(diff_targets(&old, &old), (vec![], vec![], vec![]));
    }

    #[test]
    fn a_change_to_any_rule_of_a_target_is_a_change() {
        let text = |monthly: u32| {
            format!(
                "state_machine_arn = \"arn:aws:states:us-east-1:123456789012:stateMachine:b\"\n[[backup]]\nname = \"db\"\nresource_arn = \"arn:aws:ec2:us-east-1:123456789012:instance/i-00000001\"\n[[backup.rule]]\nname = \"daily\"\nschedule = \"0 3 * * *\"\n[[backup.rule]]\nname = \"monthly\"\nschedule = \"0 3 1 * *\"\ndelete_after_days = {monthly}\n[[backup.rule]]\nname = \"yearly\"\nschedule = \"0 3 1 1 *\"\n[[backup]]\nname = \"web\"\nresource_arn = \"arn:aws:ec2:us-east-1:123456789012:instance/i-00000002\"\nschedule = \"0 4 * * *\"\n"
            )
        };
        let old = config::parse(&text(365), "t.toml").unwrap();
        let new = config::parse(&text(400), "t.toml").unwrap();
        // The middle rule changed: the target is changed, whichever rule comes last.
        assert_eq!(diff_targets(&old, &new), (vec![], vec![], vec!["db"]));
        // Without `web`: removed, and `db` still changed.
        let fewer = text(400);
        let fewer = &fewer[..fewer.find("[[backup]]\nname = \"web\"").unwrap()];
        let fewer = config::parse(fewer, "t.toml").unwrap();
        assert_eq!(
            diff_targets(&old, &fewer),
            (vec![], vec!["web"], vec!["db"])
        );
    }
}
