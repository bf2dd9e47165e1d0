//! A receiver on 127.0.0.1 that reads each POST whole and answers 204, keeping only a byte count:
//! for benchmarks, where the receiver shares the cores with what is measured (the tests' receivers
//! check signatures and keep every event).

use std::convert::Infallible;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::background::BackgroundRuntime;

#[derive(Debug)]
pub struct AcknowledgingReceiver {
    url: String,
    bytes: Arc<AtomicU64>,
    _runtime: BackgroundRuntime,
}

impl AcknowledgingReceiver {
    /// Listens on a free port of 127.0.0.1.
    pub fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("binding the acknowledging receiver: {e}"));
        let url = format!(
            "http://{}/warden",
            listener.local_addr().expect("local_addr")
        );
        let bytes = Arc::new(AtomicU64::new(0));
        let counted = bytes.clone();
        let runtime = BackgroundRuntime::serve(
            "acknowledging receiver",
            listener,
            move |listener| async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let counted = counted.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let counted = counted.clone();
                            async move { Ok::<_, Infallible>(acknowledge(request, &counted).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                    });
                }
            },
        );
        Self {
            url,
            bytes,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Body bytes read so far.
    pub fn bytes_received(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

async fn acknowledge(request: Request<Incoming>, counted: &AtomicU64) -> Response<Full<Bytes>> {
    let read = request
        .into_body()
        .collect()
        .await
        .map_or(0, |b| b.to_bytes().len());
    counted.fetch_add(read as u64, Ordering::Relaxed);
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}
