//! `order-api healthcheck`: asks a running API whether it is ready, for container health
//! checks. The runtime image carries no curl, and one GET needs no HTTP client crate.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(3);
/// The status line is all we read; the body is short anyway.
const MAX_RESPONSE: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer from {0} within {TIMEOUT:?}")]
    Timeout(SocketAddr),
    #[error("cannot reach {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("not ready: {0}")]
    NotReady(String),
}

/// GETs `/readyz` on the API listening at `listen_addr` (a wildcard address is reached
/// through loopback) and succeeds on a 200.
pub async fn probe(listen_addr: SocketAddr) -> Result<(), ProbeError> {
    let addr = reachable(listen_addr);
    let status_line = tokio::time::timeout(TIMEOUT, status_line(addr))
        .await
        .map_err(|_| ProbeError::Timeout(addr))?
        .map_err(|source| ProbeError::Io { addr, source })?;
    let ok = status_line
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code == "200");
    if ok {
        Ok(())
    } else {
        Err(ProbeError::NotReady(status_line))
    }
}

fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, v4.port()))
        }
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, v6.port()))
        }
        other => other,
    }
}

async fn status_line(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    stream.take(MAX_RESPONSE).read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}
