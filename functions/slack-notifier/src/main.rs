//! `slack-notifier` Lambda: subscribed to AMI Warden's SNS topic, posts each notification to a
//! Slack incoming webhook as a Block Kit message.
//!
//! The webhook URL comes from the Secrets Manager secret named by `SLACK_WEBHOOK_SECRET`
//! (its ARN or name; the value is the URL or JSON with a `url` key), fetched on first use and
//! kept for the life of the container. Notifications below `SLACK_MIN_SEVERITY` are skipped.
//! Messages that are not AMI Warden payloads (CloudWatch alarms on the same topic) are posted
//! as plain alerts. If Slack keeps failing, the invocation fails so SNS and Lambda retry it.
//! The URL never appears in a log line or an error. A payload that is not an SNS event is
//! acknowledged and counted (`EventsIgnoredMalformed`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use slack_notifier::{handle, State};
use warden::metrics::{Metrics, EVENTS_IGNORED_MALFORMED};

#[tokio::main]
async fn main() -> Result<(), Error> {
    warden::logging::init_lambda();
    let state = &State::from_env().await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let answer = handle(state, event.payload).await;
        // Only a payload that is no SNS event is ignored; it is counted, as the other
        // functions count theirs, on stdout where CloudWatch Logs extracts metrics.
        let ignored = matches!(&answer, Ok(a) if a["outcome"] == "ignored");
        let metrics = Metrics::lambda();
        metrics.add(EVENTS_IGNORED_MALFORMED, u8::from(ignored).into());
        metrics.flush();
        answer
    }))
    .await
}
