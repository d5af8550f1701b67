//! `slack-notifier` Lambda, its state and handler: subscribed to AMI Warden's SNS topic, posts each notification to a
//! Slack incoming webhook as a Block Kit message.
//!
//! The webhook URL comes from the Secrets Manager secret named by `SLACK_WEBHOOK_SECRET`
//! (its ARN or name; the value is the URL or JSON with a `url` key), fetched on first use and
//! kept for the life of the container. Notifications below `SLACK_MIN_SEVERITY` are skipped.
//! Messages that are not AMI Warden payloads (CloudWatch alarms on the same topic) are posted
//! as plain alerts. If Slack keeps failing, the invocation fails so SNS and Lambda retry it.
//! The URL never appears in a log line or an error.

mod webhook;

use aws_lambda_events::sns::{SnsEvent, SnsMessage};
use serde_json::{json, Value};
use tokio::sync::OnceCell;
use warden::config::Config;
use warden::notify::{slack, Notification, Payload, Severity, PAYLOAD_VERSION};

use webhook::{RetryPolicy, Webhook, WebhookUrl};

/// The notifier's state, built once per container.
pub struct State {
    secrets: aws_sdk_secretsmanager::Client,
    secret_id: String,
    min_severity: Severity,
    webhook: OnceCell<Webhook>,
}

/// What the handler fails with: the same type as `lambda_runtime::Error`.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

impl State {
    /// Reads the configuration; the secret is fetched on first use.
    pub async fn from_env() -> Result<Self, Error> {
        let config = Config::from_env()?;
        let secret_id = config.slack_webhook_secret.clone().ok_or(
            "SLACK_WEBHOOK_SECRET is not set: name the Secrets Manager secret holding the webhook URL",
        )?;
        let sdk = warden::aws::load_sdk_config().await;
        Ok(State {
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
            secret_id,
            min_severity: config.slack_min_severity,
            webhook: OnceCell::new(),
        })
    }
}

impl State {
    /// The webhook, fetching its URL from Secrets Manager on first use.
    async fn webhook(&self) -> Result<&Webhook, Error> {
        self.webhook
            .get_or_try_init(|| async {
                let output = self
                    .secrets
                    .get_secret_value()
                    .secret_id(&self.secret_id)
                    .send()
                    .await
                    .map_err(|e| {
                        format!("reading secret {}: {}", self.secret_id, webhook::error_chain(&e))
                    })?;
                let value = output
                    .secret_string()
                    .ok_or_else(|| format!("secret {} has no string value", self.secret_id))?;
                let url = WebhookUrl::from_secret(value)
                    .map_err(|e| format!("secret {}: {e}", self.secret_id))?;
                let webhook = Webhook::new(url, RetryPolicy::default())
                    .map_err(|e| format!("loading the TLS root certificates: {e}"))?;
                tracing::info!(secret = %self.secret_id, "Slack webhook loaded");
                Ok::<_, Error>(webhook)
            })
            .await
    }
}

/// What a message on the topic becomes: AMI Warden's payload, or a plain alert built from
/// whatever else was published (a CloudWatch alarm, a hand-sent test).
fn notification_of(message: &SnsMessage) -> Notification {
    if let Ok(payload) = serde_json::from_str::<Payload>(&message.message) {
        if payload.version == PAYLOAD_VERSION {
            return payload.notification;
        }
    }
    let attribute = |name: &str| message.message_attributes.get(name).map(|a| a.value.clone());
    let parsed: Option<Value> = serde_json::from_str(&message.message).ok();
    if let Some(alarm) = parsed.as_ref().filter(|v| v.get("AlarmName").is_some()) {
        let state = alarm["NewStateValue"].as_str().unwrap_or("UNKNOWN");
        let severity = if state == "OK" { Severity::Resolved } else { Severity::Warning };
        let name = alarm["AlarmName"].as_str().unwrap_or("alarm");
        return Notification::new(severity, "alarm", format!("{name} is {state}"))
            .text(alarm["NewStateReason"].as_str().unwrap_or_default())
            .field("Alarm", name)
            .field("Region", alarm["Region"].as_str().unwrap_or_default())
            .field("Account", alarm["AWSAccountId"].as_str().unwrap_or_default())
            .field("Changed at", alarm["StateChangeTime"].as_str().unwrap_or_default());
    }
    let severity =
        attribute("severity").as_deref().and_then(Severity::parse).unwrap_or(Severity::Info);
    let kind = attribute("kind").unwrap_or_else(|| "message".into());
    let subject =
        message.subject.clone().unwrap_or_else(|| "message on the AMI Warden topic".into());
    Notification::new(severity, &kind, subject)
        .text(message.message.chars().take(2900).collect::<String>())
}

/// Posts each notification of an SNS event to Slack; `Err` when Slack keeps failing, so that
/// SNS and Lambda retry it.
pub async fn handle(state: &State, payload: Value) -> Result<Value, Error> {
    let sns: SnsEvent = match serde_json::from_value(payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, metric = "ignored_events", "not an SNS event; ignored");
            return Ok(json!({"outcome": "ignored", "reason": "not an SNS event"}));
        }
    };
    let mut results = Vec::new();
    for record in &sns.records {
        let notification = notification_of(&record.sns);
        let message_id = &record.sns.message_id;
        if notification.severity < state.min_severity {
            tracing::info!(message_id, severity = %notification.severity, kind = notification.kind, "below SLACK_MIN_SEVERITY; not posted");
            results.push(json!({"message_id": message_id, "outcome": "skipped"}));
            continue;
        }
        let webhook = state.webhook().await.inspect_err(|e| {
            tracing::error!(error = %e, "Slack webhook unavailable; the message will be retried")
        })?;
        match webhook.post(&slack::message(&notification)).await {
            Ok(delivered) => {
                tracing::info!(message_id, severity = %notification.severity, kind = notification.kind, attempts = delivered.attempts, "posted to Slack");
                results.push(json!({"message_id": message_id, "outcome": "posted", "attempts": delivered.attempts}));
            }
            Err(err) => {
                tracing::error!(message_id, error = %err, "Slack post failed; the message will be retried");
                return Err(err.into());
            }
        }
    }
    Ok(json!({"outcome": "done", "records": results}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sns(message: &str, attributes: Value) -> SnsMessage {
        let record = json!({
            "Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
            "Subject": "hello", "Timestamp": "2026-11-25T10:00:00.000Z", "SignatureVersion": "1",
            "Signature": "x", "SigningCertUrl": "https://x", "UnsubscribeUrl": "https://x",
            "Message": message, "MessageAttributes": attributes
        });
        serde_json::from_value(record).unwrap()
    }

    #[test]
    fn warden_payloads_come_back_as_they_were_sent() {
        let n = Notification::new(Severity::Critical, "image-public", "ami-1 is public")
            .field("Image", "ami-1");
        let message =
            serde_json::to_string(&Payload { version: PAYLOAD_VERSION, notification: n.clone() })
                .unwrap();
        assert_eq!(notification_of(&sns(&message, json!({}))), n);
    }

    #[test]
    fn cloudwatch_alarms_and_plain_messages_are_still_posted() {
        let alarm = json!({"AlarmName": "ami-warden-errors", "NewStateValue": "ALARM", "NewStateReason": "1 error",
            "Region": "US East (N. Virginia)", "AWSAccountId": "123456789012", "StateChangeTime": "2026-11-25T10:00:00Z"});
        let n = notification_of(&sns(&alarm.to_string(), json!({})));
        assert_eq!((n.severity, n.kind.as_str()), (Severity::Warning, "alarm"));
        let plain = notification_of(&sns(
            "just text",
            json!({"severity": {"Type": "String", "Value": "CRITICAL"}}),
        ));
        assert_eq!(plain.severity, Severity::Critical);
        assert_eq!(plain.subject, "hello");
    }
}
