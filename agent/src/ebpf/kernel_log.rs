//! The programs' own diagnostics (aya-log): the level they log at, and the reader that forwards them.
/// The most verbose level the programs' diagnostics would be logged at, so that the programs do not
/// write records that the log filter would drop (aya-log's levels are `log`'s: 0 off … 5 trace).
pub(super) fn kernel_log_level() -> u8 {
    use tracing::Level;
    let target_enabled = |level| match level {
        Level::TRACE => tracing::enabled!(target: "warden_ebpf::programs", Level::TRACE),
        Level::DEBUG => tracing::enabled!(target: "warden_ebpf::programs", Level::DEBUG),
        Level::INFO => tracing::enabled!(target: "warden_ebpf::programs", Level::INFO),
        Level::WARN => tracing::enabled!(target: "warden_ebpf::programs", Level::WARN),
        _ => tracing::enabled!(target: "warden_ebpf::programs", Level::ERROR),
    };
    [
        (Level::TRACE, 5),
        (Level::DEBUG, 4),
        (Level::INFO, 3),
        (Level::WARN, 2),
        (Level::ERROR, 1),
    ]
    .into_iter()
    .find(|&(level, _)| target_enabled(level))
    .map_or(0, |(_, value)| value)
}

/// aya-log's records arrive on a ring buffer; forward them to `log` (bridged into tracing).
pub(super) fn spawn_kernel_log_reader(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    // SAFETY: the logger owns the ring buffer's fd, and the AsyncFd owns the logger while registered.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    };
    let Ok(mut fd) = registered else {
        tracing::warn!("eBPF diagnostics: cannot poll the log ring buffer");
        return;
    };
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}
