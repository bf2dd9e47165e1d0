//! The fake upstream's gate: streams hold back all but their first events until the test opens it,
//! which turns "was this stream forwarded as it came?" into a question without timing.
//!
//! A proxy that buffered a response could not deliver its first event while the upstream withholds
//! the rest, so a client that sees the first event before the gate opens proves the stream flowed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::FakeUpstream;
use crate::client::{ClientOutput, RunningClient};
use crate::wait;

/// A held stream goes on by itself after this long, so a test that never opens the gate can't hang.
pub const GATE_SAFETY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`FakeUpstream::assert_first_line_before_gate`] waits for the first line. Shorter than
/// [`GATE_SAFETY_TIMEOUT`]: otherwise a buffered stream would be released by the safety timeout and
/// its first event would still arrive "before the test opened the gate".
const FIRST_LINE_TIMEOUT: Duration = Duration::from_secs(15);

/// Shared by the upstream's handle and all its streams; open once, open for good.
#[derive(Debug)]
pub(super) struct Gate {
    /// Streams wait before sending the event with this index; `None`: no gate.
    after: Option<usize>,
    open: watch::Sender<bool>,
    /// Streams that reached the gate while it was still closed.
    held: AtomicUsize,
}

impl Gate {
    pub(super) fn new(after: Option<usize>) -> Self {
        Self {
            after,
            open: watch::Sender::new(false),
            held: AtomicUsize::new(0),
        }
    }

    /// A stream calls this before sending event `index` (0-based); it returns once that event may go.
    pub(super) async fn before_event(&self, index: usize) {
        if self.after != Some(index) {
            return;
        }
        let mut open = self.open.subscribe();
        if *open.borrow_and_update() {
            return;
        }
        self.held.fetch_add(1, Ordering::SeqCst);
        let _ = tokio::time::timeout(GATE_SAFETY_TIMEOUT, open.wait_for(|open| *open)).await;
    }

    fn open(&self) {
        self.open.send_replace(true);
    }

    fn is_open(&self) -> bool {
        *self.open.borrow()
    }

    fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

impl FakeUpstream {
    /// Lets every held stream (and every later one) send the rest of its events.
    pub fn open_gate(&self) {
        self.state.gate.open();
    }

    /// Streams that reached the gate while it was closed, so far.
    pub fn held_at_gate(&self) -> usize {
        self.state.gate.held()
    }

    /// The deterministic streaming check, for an upstream built with
    /// [`gate_after`](super::FakeUpstreamBuilder::gate_after): waits until `client` prints a line
    /// for which `is_first_line` holds (the client prints it on receiving the first event) while
    /// the upstream still holds the rest of the stream, then opens the gate and returns the
    /// finished client's output. Panics if the line did not come: the stream was buffered.
    pub fn assert_first_line_before_gate(
        &self,
        mut client: RunningClient,
        is_first_line: impl Fn(&str) -> bool,
    ) -> ClientOutput {
        assert!(
            self.state.gate.after.is_some(),
            "assert_first_line_before_gate needs an upstream built with gate_after"
        );
        assert!(
            !self.state.gate.is_open(),
            "the gate must still be closed when the client starts"
        );
        let first_line = client.wait_for_stdout_line(FIRST_LINE_TIMEOUT, is_first_line);
        // Whatever happened, release the stream so the client finishes and its output can be shown.
        let held = first_line.as_ref().map(|_| {
            wait::within(FIRST_LINE_TIMEOUT, || {
                (self.held_at_gate() > 0).then_some(())
            })
        });
        self.open_gate();
        let out = client.wait();
        assert!(
            first_line.is_some(),
            "the first event did not reach the client before the upstream finished: Warden \
             buffered the stream\n{out}"
        );
        assert!(
            held.flatten().is_some(),
            "the upstream never held the stream at its gate (is gate_after past the last event?)\n{out}"
        );
        out
    }
}
