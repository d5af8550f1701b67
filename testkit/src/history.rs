//! CloudTrail's event history on the local stack.
//!
//! moto records no CloudTrail events; the local extension (`dev/moto_ext/cloudtrail.py`) serves
//! `LookupEvents` from the records handed to it here: the records the scenario runner built for
//! the real calls it made, exactly what AWS would hold for them.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Adds the CloudTrail records of `events` (EventBridge envelopes; their `detail`) to the local
/// stack's event history. Returns how many were new.
pub async fn record(events: &[Value]) -> Result<usize> {
    let records: Vec<&Value> = events
        .iter()
        .filter(|e| e.get("detail-type").and_then(Value::as_str) == Some("AWS API Call via CloudTrail"))
        .filter_map(|e| e.get("detail"))
        .collect();
    let endpoint = std::env::var("AWS_ENDPOINT_URL").context("AWS_ENDPOINT_URL (the local stack) is not set")?;
    let host = endpoint.strip_prefix("http://").context("the local stack's endpoint is plain http")?.trim_end_matches('/');
    ensure!(host.starts_with("127.0.0.1:") || host.starts_with("localhost:"), "{host} is not loopback");
    let body = serde_json::to_vec(&records)?;
    let mut stream = TcpStream::connect(host).await.with_context(|| format!("connecting to {host}"))?;
    let head = format!(
        "POST /moto-ext/cloudtrail/records HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    ensure!(response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"), "the local stack refused the records: {response}");
    let json = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let added: Value = serde_json::from_str(json).context("the local stack's answer")?;
    Ok(added["added"].as_u64().unwrap_or(0) as usize)
}
