//! OS signals as domain events: SIGHUP → [`Signal::Reload`], SIGTERM/SIGINT → [`Signal::Shutdown`].
//! A second SIGTERM/SIGINT while shutting down exits at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// What the daemon was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Re-read and validate the config; swap it in if valid.
    Reload,
    /// Stop firing, finish in-flight starts, exit 0.
    Shutdown,
}

/// Exit code of a second SIGTERM/SIGINT during shutdown (128 + SIGTERM).
pub const FORCED_EXIT: i32 = 143;

/// Installs the handlers; events arrive on the returned channel.
pub fn listen() -> std::io::Result<mpsc::UnboundedReceiver<Signal>> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stopping = false;
        loop {
            let s = tokio::select! {
                Some(()) = hup.recv() => Signal::Reload,
                Some(()) = term.recv() => Signal::Shutdown,
                Some(()) = int.recv() => Signal::Shutdown,
                else => break,
            };
            if s == Signal::Shutdown {
                if stopping {
                    eprintln!("second shutdown signal: exiting now");
                    std::process::exit(FORCED_EXIT);
                }
                stopping = true;
            }
            if tx.send(s).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
