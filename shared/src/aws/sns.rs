//! [`Notifier`] over SNS: one topic, `MessageStructure=json` (email gets the text, Lambda /
//! SQS / HTTPS subscribers the JSON payload), `severity` and `kind` message attributes, and a
//! subject SNS accepts.

use aws_sdk_sns::types::MessageAttributeValue;

use super::Clients;
use crate::notify::{
    sns_attributes, sns_message, sns_subject, Notification, Notifier, NotifyError,
};

/// Publishes to one topic, in the topic's own region.
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(clients: &Clients, topic_arn: impl Into<String>) -> Self {
        let topic_arn = topic_arn.into();
        // arn:aws:sns:<region>:<account>:<name>
        let region = topic_arn.split(':').nth(3).filter(|r| !r.is_empty()).map(str::to_owned);
        Self { client: clients.sns(region.as_deref()), topic_arn }
    }

    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }
}

impl Notifier for SnsNotifier {
    async fn publish(&self, notification: &Notification) -> Result<String, NotifyError> {
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(sns_subject(&notification.subject, notification.severity))
            .message_structure("json")
            .message(sns_message(notification));
        for (name, value) in sns_attributes(notification) {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| NotifyError {
                    kind: notification.kind.clone(),
                    topic: self.topic_arn.clone(),
                    message: e.to_string(),
                })?;
            request = request.message_attributes(name, attribute);
        }
        let output = request.send().await.map_err(|e| NotifyError {
            kind: notification.kind.clone(),
            topic: self.topic_arn.clone(),
            message: super::describe(&e),
        })?;
        Ok(output.message_id().unwrap_or_default().to_owned())
    }
}
