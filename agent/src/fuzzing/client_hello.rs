//! Fuzz target: the ClientHello classifier over the bytes a redirected connection sends first.
use crate::proxy::client_hello::{classify, Classified, MAX_CLIENT_HELLO};

/// Classifies `data` and checks the verdict is one the proxy can act on as bytes arrive: a
/// decisive verdict on a prefix never changes when more bytes come.
pub fn client_hello(data: &[u8]) {
    let whole = classify(data);
    match &whole {
        Classified::ClientHello { server_name, alpn } => {
            if let Some(name) = server_name {
                assert!(
                    !name.is_empty() && name.len() <= 253,
                    "server name {name:?}"
                );
                assert_eq!(
                    name,
                    &name.to_ascii_lowercase(),
                    "server name not lowercase"
                );
            }
            assert!(alpn.iter().all(|protocol| !protocol.is_empty()));
        }
        Classified::NeedMore => assert!(data.len() < MAX_CLIENT_HELLO, "NeedMore past the budget"),
        Classified::NotTls | Classified::Malformed(_) => {}
    }
    for prefix_len in [data.len() / 2, data.len().saturating_sub(1)] {
        let prefix = classify(&data[..prefix_len]);
        if prefix != Classified::NeedMore {
            assert_eq!(
                prefix, whole,
                "verdict on {prefix_len} bytes changed with more bytes"
            );
        }
    }
}
