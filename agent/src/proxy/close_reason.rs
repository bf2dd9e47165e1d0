//! The reason recorded for an intercepted connection's end: a client closing it is no error.
use std::error::Error;
use std::io;

/// The client closed the connection: cleanly, or (as most TLS clients do) without a
/// `close_notify` alert, which the TLS layer reports as an unexpected end of file.
pub const CLOSED_BY_CLIENT: &str = "closed by the client";
/// The client closed (or reset) it while Warden was still sending it something.
pub const CLOSED_WHILE_WRITING: &str = "closed by the client while Warden was writing to it";
/// Warden closed it while shutting down, after its exchanges finished (or were cut).
pub const CLOSED_AT_SHUTDOWN: &str = "closed at shutdown";

/// The reason for a connection whose HTTP server ended with `result`.
pub fn closed(result: Result<(), &(dyn Error + 'static)>, shutting_down: bool) -> String {
    let error = match result {
        Ok(()) if shutting_down => return CLOSED_AT_SHUTDOWN.to_string(),
        Ok(()) => return CLOSED_BY_CLIENT.to_string(),
        Err(error) => error,
    };
    let hyper = find::<hyper::Error>(error);
    if hyper.is_some_and(hyper::Error::is_incomplete_message) {
        return "closed by the client before its request was complete".to_string();
    }
    let gone = matches!(
        find::<io::Error>(error).map(io::Error::kind),
        Some(io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset)
    );
    // Saying goodbye (TLS close_notify, shutdown) to a client that already left: an SDK that
    // stops reading at `[DONE]` and exits does this, its exchange complete.
    if gone && hyper.is_some_and(hyper::Error::is_shutdown) {
        return CLOSED_BY_CLIENT.to_string();
    }
    match find::<io::Error>(error).map(io::Error::kind) {
        Some(io::ErrorKind::UnexpectedEof) => CLOSED_BY_CLIENT.to_string(),
        _ if gone => CLOSED_WHILE_WRITING.to_string(),
        _ => chain(error),
    }
}

/// The first error of type `E` in `error`'s source chain (itself included).
fn find<'a, E: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a E> {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<E>() {
            return Some(found);
        }
        next = current.source();
    }
    None
}

/// `connection error: broken pipe`: each error in the chain, so the cause is not lost.
fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let part = source.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = source.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a source, like hyper's `connection error` around an I/O error.
    #[derive(Debug, thiserror::Error)]
    #[error("connection error")]
    struct Wrapped(#[source] io::Error);

    fn wrapped(kind: io::ErrorKind, message: &str) -> Wrapped {
        Wrapped(io::Error::new(kind, message.to_string()))
    }

    #[test]
    fn a_client_that_closes_without_close_notify_closed_the_connection() {
        let eof = wrapped(
            io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify",
        );
        assert_eq!(closed(Err(&eof), false), CLOSED_BY_CLIENT);
        assert_eq!(closed(Ok(()), false), CLOSED_BY_CLIENT);
        assert_eq!(closed(Ok(()), true), CLOSED_AT_SHUTDOWN);
    }

    #[test]
    fn a_client_gone_mid_write_and_other_errors_say_what_happened() {
        let reset = wrapped(io::ErrorKind::ConnectionReset, "connection reset by peer");
        assert_eq!(closed(Err(&reset), false), CLOSED_WHILE_WRITING);
        let broken = wrapped(io::ErrorKind::BrokenPipe, "broken pipe");
        assert_eq!(closed(Err(&broken), false), CLOSED_WHILE_WRITING);
        let other = wrapped(io::ErrorKind::InvalidData, "corrupt message");
        assert_eq!(
            closed(Err(&other), false),
            "connection error: corrupt message"
        );
    }
}
