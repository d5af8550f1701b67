//! Logging for the Lambda functions: `tracing` as one JSON object per line (what CloudWatch
//! Logs Insights reads), level from `RUST_LOG`, no timestamps (Lambda adds its own).
//!
//! Every line carries the spans it was logged in: the runtime's invocation span (its
//! `requestId`) and the handler's event span (`envelope_id`, `event_id`), so no log call adds
//! those by hand.

/// Installs the JSON subscriber. Call once, first thing in `main`.
pub fn init_lambda() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_current_span(false)
        .with_span_list(true)
        .with_target(false)
        .without_time()
        .init();
}
