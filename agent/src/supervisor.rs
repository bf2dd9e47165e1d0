//! Tell the service manager how the daemon is doing (sd_notify): ready, status, watchdog, reloads, stopping.
//!
//! Every call is a no-op when `NOTIFY_SOCKET` is not set (the daemon runs outside systemd, or in a
//! unit that is not `Type=notify`); a failed send is logged, never fatal.
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;

/// The daemon has attached its programs, bound its listener, opened the audit store and loaded
/// its policy: `systemctl start` returns now.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A one-line summary shown by `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// A reload (SIGHUP) has begun; [`reloaded`] ends it.
pub fn reloading() {
    // systemd ≥ 253 wants the time with RELOADING=1 (Type=notify-reload); older ones ignore it.
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Shutdown has begun: connections are draining.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// When the unit sets `WatchdogSec=`, pings systemd at half that interval until shutdown, so a
/// daemon whose runtime stalls is restarted.
pub fn spawn_watchdog(mut shutdown: watch::Receiver<bool>) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let interval = Duration::from_micros(usec / 2);
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog enabled"
    );
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticker.tick() => send(&[NotifyState::Watchdog]),
            }
        }
    });
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::warn!(%error, "cannot notify the service manager");
    }
}
