//! `slack-notifier` Lambda: subscribed to AMI Warden's SNS topic, posts each notification to a
//! Slack incoming webhook as a Block Kit message.
//!
//! The webhook URL comes from the Secrets Manager secret named by `SLACK_WEBHOOK_SECRET`
//! (its ARN or name; the value is the URL or JSON with a `url` key), fetched on first use and
//! kept for the life of the container. Notifications below `SLACK_MIN_SEVERITY` are skipped.
//! Messages that are not AMI Warden payloads (CloudWatch alarms on the same topic) are posted
//! as plain alerts. If Slack keeps failing, the invocation fails so SNS and Lambda retry it.
//! The URL never appears in a log line or an error.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use slack_notifier::{handle, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    warden::logging::init_lambda();
    let state = &State::from_env().await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| handle(state, event.payload)))
        .await
}
