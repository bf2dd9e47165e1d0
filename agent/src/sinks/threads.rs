//! The sinks' own threads, below the proxy's CPU priority.
//!
//! Reading records, encoding batches and sending them is CPU work: on the proxy's worker threads
//! it would delay requests (at full load on a 2-core host it cost the proxy up to half its
//! throughput). On threads of their own at nice +19 the kernel gives the proxy the CPU first; when
//! the host is saturated a sink falls behind and catches up from its cursor afterwards (its backlog
//! metric shows by how much), and nothing is lost. (Nice +10 still cost the proxy a visible share.)
use tokio::runtime::Runtime;

/// How much lower than the daemon's the sinks' threads run (the nice increment).
pub const SINK_NICE_INCREMENT: i32 = 19;

/// Store reads and cursor writes at once, across all sinks; more would only add threads (and
/// allocator arenas) that wait for the same two cores.
const BLOCKING_THREADS: usize = 4;

/// A runtime for the sinks: one worker, a small blocking pool for the store reads, every thread
/// named `warden-sinks` and niced.
pub fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("warden-sinks")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()
}

/// Raises this thread's nice value (Linux keeps one per thread); any thread may lower its own
/// priority, so this only fails where the kernel forbids it, and then the sink runs as it is.
fn lower_priority() {
    // SAFETY: gettid and getpriority/setpriority on the calling thread have no preconditions.
    let failed = unsafe {
        let tid = libc::gettid() as libc::id_t;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, current + SINK_NICE_INCREMENT) != 0
    };
    if failed {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not lower a sink thread's priority; sinks compete with the proxy for CPU"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of a thread, from /proc (the kernel's view, not the libc call's).
    fn nice_of(tid: libc::pid_t) -> i64 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
            .expect("the thread's stat");
        // Field 19 is nice; fields after the parenthesized name are space-separated.
        let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
        after_name
            .split(' ')
            .nth(16)
            .expect("nice")
            .parse()
            .expect("a number")
    }

    #[test]
    fn the_sinks_threads_run_niced_and_named() {
        // SAFETY: gettid has no preconditions.
        let ours = nice_of(unsafe { libc::gettid() });
        let runtime = runtime().expect("the sinks' runtime");
        let (tid, name) = runtime.block_on(async {
            tokio::spawn(async {
                // SAFETY: as above.
                let tid = unsafe { libc::gettid() };
                (tid, std::thread::current().name().map(str::to_owned))
            })
            .await
            .expect("a task on the sinks' worker")
        });
        assert_eq!(name.as_deref(), Some("warden-sinks"));
        assert_eq!(
            nice_of(tid),
            (ours + i64::from(SINK_NICE_INCREMENT)).min(19)
        );
        runtime.shutdown_background();
    }
}
