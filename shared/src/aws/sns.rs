//! [`Notifier`] over SNS: one topic, `MessageStructure=json` (email gets the text, Lambda /
//! SQS / HTTPS subscribers the JSON payload), `severity` and `kind` message attributes, and a
//! subject SNS accepts.
//!
//! Optionally a chat topic too (`CHAT_TOPIC_ARN`): each notification at or above
//! `CHAT_MIN_SEVERITY` is also published there as an Amazon Q Developer in chat applications
//! custom notification ([`crate::notify::chat`]), after the notification topic accepted it.
//! The chat copy is a convenience beside the topic every other subscriber reads: when it fails,
//! the failure is logged as an error (field `metric = "chat_publish_failures"`), not returned, so a
//! chat outage neither fails the event's handling nor makes its retry e-mail the alert twice.

use aws_sdk_sns::types::MessageAttributeValue;

use super::Clients;
use crate::config::Config;
use crate::notify::{
    chat, sns_attributes, sns_message, sns_subject, Notification, Notifier, NotifyError, Severity,
};

/// Publishes to one topic, in the topic's own region, and optionally to a chat topic.
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
    chat: Option<ChatTopic>,
}

/// Where chat channels read from, and the lowest severity sent there.
struct ChatTopic {
    client: aws_sdk_sns::Client,
    arn: String,
    min_severity: Severity,
}

/// An SNS client in the region of the topic `arn` (`arn:aws:sns:<region>:<account>:<name>`).
fn client_for(clients: &Clients, arn: &str) -> aws_sdk_sns::Client {
    let region = arn.split(':').nth(3).filter(|r| !r.is_empty());
    clients.sns(region)
}

impl SnsNotifier {
    pub fn new(clients: &Clients, topic_arn: impl Into<String>) -> Self {
        let topic_arn = topic_arn.into();
        Self { client: client_for(clients, &topic_arn), topic_arn, chat: None }
    }

    /// The notifier the configuration asks for: `TOPIC_ARN`, plus `CHAT_TOPIC_ARN` when set;
    /// `None` without a topic.
    pub fn from_config(clients: &Clients, config: &Config) -> Option<Self> {
        let notifier = Self::new(clients, config.topic_arn.as_ref()?);
        Some(match &config.chat_topic_arn {
            Some(chat) => notifier.with_chat(clients, chat, config.chat_min_severity),
            None => notifier,
        })
    }

    /// Also publishes notifications of at least `min_severity` to the chat topic `arn`.
    pub fn with_chat(
        self,
        clients: &Clients,
        arn: impl Into<String>,
        min_severity: Severity,
    ) -> Self {
        let arn = arn.into();
        let chat = ChatTopic { client: client_for(clients, &arn), arn, min_severity };
        Self { chat: Some(chat), ..self }
    }

    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    /// The chat topic, if notifications go to chat too.
    pub fn chat_topic_arn(&self) -> Option<&str> {
        self.chat.as_ref().map(|c| c.arn.as_str())
    }

    /// Publishes the chat copy when there is a chat topic and the severity is high enough;
    /// a failure is logged, never returned (see the module's documentation).
    async fn publish_chat(&self, notification: &Notification) {
        let Some(chat) = self.chat.as_ref().filter(|c| notification.severity >= c.min_severity)
        else {
            return;
        };
        let message = chat::message(notification).to_string();
        match publish(&chat.client, &chat.arn, notification, |r| r.message(message)).await {
            Ok(message_id) => {
                tracing::debug!(kind = notification.kind, message_id, "posted to chat")
            }
            Err(e) => {
                tracing::error!(kind = notification.kind, topic = chat.arn, error = %e.message,
                metric = "chat_publish_failures", "not posted to chat; the notification topic has it")
            }
        }
    }
}

type Publish = aws_sdk_sns::operation::publish::builders::PublishFluentBuilder;

/// Publishes to `topic` with the `severity` and `kind` attributes; `body` sets the message.
async fn publish(
    client: &aws_sdk_sns::Client,
    topic: &str,
    notification: &Notification,
    body: impl FnOnce(Publish) -> Publish,
) -> Result<String, NotifyError> {
    let failed = |message: String| NotifyError {
        kind: notification.kind.clone(),
        topic: topic.to_owned(),
        message,
    };
    let mut request = body(client.publish().topic_arn(topic));
    for (name, value) in sns_attributes(notification) {
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|e| failed(e.to_string()))?;
        request = request.message_attributes(name, attribute);
    }
    let output = request.send().await.map_err(|e| failed(super::describe(&e)))?;
    Ok(output.message_id().unwrap_or_default().to_owned())
}

impl Notifier for SnsNotifier {
    async fn publish(&self, notification: &Notification) -> Result<String, NotifyError> {
        let message_id = publish(&self.client, &self.topic_arn, notification, |r| {
            r.subject(sns_subject(&notification.subject, notification.severity))
                .message_structure("json")
                .message(sns_message(notification))
        })
        .await?;
        self.publish_chat(notification).await;
        Ok(message_id)
    }
}
