//! The CLI side of the admin socket.
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{AdminRequest, AdminResponse};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("cannot reach the Warden daemon at {path} (is `warden run` running with this config?): {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the Warden daemon: {0}")]
    Io(#[from] std::io::Error),
    #[error("the Warden daemon sent an unreadable response: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the Warden daemon refused: {0}")]
    Refused(String),
}

/// Sends one request and returns the daemon's answer, or its refusal as an error.
pub fn call(socket: &Path, request: &AdminRequest) -> Result<AdminResponse, AdminClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| AdminClientError::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    let response: AdminResponse = serde_json::from_str(&answer)?;
    if !response.ok {
        return Err(AdminClientError::Refused(
            response.error.unwrap_or_default(),
        ));
    }
    Ok(response)
}
