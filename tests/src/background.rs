//! A one-thread tokio runtime that serves a test listener in the background and stops when dropped.

use std::future::Future;
use std::net::TcpListener as StdTcpListener;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// Owns the runtime a test server runs on; dropping it stops the server.
#[derive(Debug)]
pub struct BackgroundRuntime(Option<Runtime>);

impl BackgroundRuntime {
    /// Serves `listener` with `serve` on a runtime of its own; `what` names the server in panics.
    pub fn serve<Serve, Served>(what: &str, listener: StdTcpListener, serve: Serve) -> Self
    where
        Serve: FnOnce(TcpListener) -> Served,
        Served: Future<Output = ()> + Send + 'static,
    {
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("making {what}'s listener non-blocking: {e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("building {what}'s runtime: {e}"));
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener)
                .unwrap_or_else(|e| panic!("registering {what}'s listener with tokio: {e}"))
        };
        runtime.spawn(serve(listener));
        Self(Some(runtime))
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            // Blocking shutdown is not allowed inside another runtime (async self-tests).
            if tokio::runtime::Handle::try_current().is_ok() {
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(Duration::from_secs(2));
            }
        }
    }
}
