//! The systemd notification protocol (READY, RELOADING, STOPPING, WATCHDOG).

use tracing::warn;

/// Sends `states` to systemd; outside systemd there is no NOTIFY_SOCKET and this does nothing.
pub(super) fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "systemd notify failed");
    }
}
