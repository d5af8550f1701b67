//! CloudTrail's event history on the local stack.
//!
//! moto records no CloudTrail events; the local extension (`dev/moto_ext/cloudtrail.py`) serves
//! `LookupEvents` from the records handed to it here: the records the scenario runner built for
//! the real calls it made, exactly what AWS would hold for them.

use anyhow::Result;
use serde_json::Value;

/// Adds the CloudTrail records of `events` (EventBridge envelopes; their `detail`) to the local
/// stack's event history. Returns how many were new.
pub async fn record(events: &[Value]) -> Result<usize> {
    let records: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e.get("detail-type").and_then(Value::as_str) == Some("AWS API Call via CloudTrail")
        })
        .filter_map(|e| e.get("detail"))
        .collect();
    let added =
        crate::stack::post_extension("/moto-ext/cloudtrail/records", &serde_json::json!(records))
            .await?;
    Ok(added["added"].as_u64().unwrap_or(0) as usize)
}
