//! Event names (the `event` field); part of the interface: operators alert on them.

/// A config was loaded at start.
pub const CONFIG_LOADED: &str = "config_loaded";
/// A reload was applied.
pub const CONFIG_RELOADED: &str = "config_reloaded";
/// A reload was refused; the old config keeps running.
pub const CONFIG_RELOAD_FAILED: &str = "config_reload_failed";
/// `--watch`: the config file cannot be read (once until it can); the old config keeps running.
pub const CONFIG_FILE_UNREADABLE: &str = "config_file_unreadable";
/// Start-up is over: timers registered, restart recovery done, reloads and `--watch` live.
pub const READY: &str = "ready";
/// A config key the default stack refuses (raw commands, a pinned document version, a
/// retention out of its bounds): said once at start, per key.
pub const STACK_REFUSES: &str = "stack_refuses";
/// A slot fired.
pub const SLOT_FIRED: &str = "slot_fired";
/// A slot was not started, with a reason.
pub const SLOT_SKIPPED: &str = "slot_skipped";
/// A slot was folded into an overlapping backup of the same instance (the overlap rule).
pub const SLOT_MERGED: &str = "slot_merged";
/// A slot waits for a shorter-retention backup of its instance to end.
pub const SLOT_WAITING: &str = "slot_waiting";
/// Dry run: what would have started.
pub const DRY_RUN_START: &str = "dry_run_start";
/// StartExecution succeeded.
pub const EXECUTION_STARTED: &str = "execution_started";
/// The slot's execution existed already (a retry, a restart or another replica started it).
pub const EXECUTION_ALREADY_STARTED: &str = "execution_already_started";
/// StartExecution failed and will be retried.
pub const EXECUTION_START_RETRY: &str = "execution_start_retry";
/// StartExecution failed for good.
pub const EXECUTION_START_FAILED: &str = "execution_start_failed";
/// The execution ended FAILED, TIMED_OUT or ABORTED.
pub const EXECUTION_FAILED: &str = "execution_failed";
/// A name about to be started was taken by an execution with another input.
pub const EXECUTION_INPUT_MISMATCH: &str = "execution_input_mismatch";
/// The backup job exists.
pub const BACKUP_JOB_CREATED: &str = "backup_job_created";
/// The job changed state.
pub const BACKUP_JOB_STATE: &str = "backup_job_state";
/// The job's progress moved.
pub const BACKUP_JOB_PROGRESS: &str = "backup_job_progress";
/// A pre or post hook ended (one line per phase, read from the execution's history).
pub const HOOK_FINISHED: &str = "hook_finished";
/// One summary line at each backup's end.
pub const BACKUP_FINISHED: &str = "backup_finished";
/// A copy job of a completed backup was created (issue 12).
pub const COPY_JOB_CREATED: &str = "copy_job_created";
/// The daemon started the execution that copies a COMPLETED backup.
pub const COPY_EXECUTION_STARTED: &str = "copy_execution_started";
/// A copy ended: COMPLETED, FAILED, PARTIAL, or never started (ERROR unless COMPLETED).
pub const COPY_FINISHED: &str = "copy_finished";
/// Start-up found targets with no execution in the lookback: new, nothing caught up.
pub const FIRST_START: &str = "first_start";
/// Restart recovery picked up a backup in flight.
pub const TRACKING_RESUMED: &str = "tracking_resumed";
/// A tracking call failed (it is retried at the next poll).
pub const AWS_CALL_FAILED: &str = "aws_call_failed";
/// No AWS credentials could be found at start (one short line saying what to set).
pub const AWS_CREDENTIALS_MISSING: &str = "aws_credentials_missing";
/// SIGTERM/SIGINT received.
pub const SHUTDOWN: &str = "shutdown";
/// `[ha]`: config valid, waiting for the lease (no AWS call but the lease's).
pub const STANDBY: &str = "standby";
/// `[ha]`: this replica took the lease (`since_previous_leader_ms`: how long the fleet may
/// have gone without a firing leader).
pub const LEADERSHIP_ACQUIRED: &str = "leadership_acquired";
/// `[ha]`: this replica stopped holding the lease (`reason`).
pub const LEADERSHIP_LOST: &str = "leadership_lost";
/// A tag selection's refresh changed its instances (counts and the first names).
pub const SELECTION_CHANGED: &str = "selection_changed";
/// A tag selection's refresh failed (once per failure streak); the last set stays.
pub const SELECTION_REFRESH_FAILED: &str = "selection_refresh_failed";
/// A tag selection's refresh works again after a failure streak.
pub const SELECTION_REFRESH_RECOVERED: &str = "selection_refresh_recovered";
/// The last successes of targets not seen before were read from AWS Backup (the seed of
/// the last-success gauges, at start and after a reload or refresh that adds targets).
pub const COVERAGE_SEEDED: &str = "coverage_seeded";
/// The seed's AWS Backup reads failed; retried with backoff.
pub const COVERAGE_SEED_FAILED: &str = "coverage_seed_failed";
/// A restore test's execution started (once per slot).
pub const RESTORE_TEST_STARTED: &str = "restore_test_started";
/// A restore test found running at a (re)start: followed, not started again.
pub const RESTORE_TEST_RESUMED: &str = "restore_test_resumed";
/// A restore test slot that could not start (no recovery point, an API error): a failed test.
pub const RESTORE_TEST_NOT_STARTED: &str = "restore_test_not_started";
/// A missed slot (before this start) with no recovery point yet: not run, not a failure.
pub const RESTORE_TEST_SKIPPED: &str = "restore_test_skipped";
/// The restore machine started the restore job.
pub const RESTORE_JOB_CREATED: &str = "restore_job_created";
/// A restore (test or on demand) ended: the verdict and every step's result.
pub const RESTORE_FINISHED: &str = "restore_finished";
/// A restore call failed and is tried again.
pub const RESTORE_API_RETRY: &str = "restore_api_retry";
/// The sweeper looked for restored instances.
pub const RESTORE_SWEEP: &str = "restore_sweep";
/// The sweeper started the termination of an expired restored instance.
pub const RESTORE_SWEEP_STARTED: &str = "restore_sweep_started";
/// A sweep execution ended.
pub const RESTORE_SWEPT: &str = "restore_swept";
