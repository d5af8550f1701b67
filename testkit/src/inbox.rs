//! An SNS topic with an SQS queue subscribed to it, on the local stack: what a programmatic
//! subscriber of AMI Warden's topic receives.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

/// One message as the queue received it: the SNS envelope, unwrapped.
#[derive(Clone, Debug)]
pub struct Received {
    pub subject: Option<String>,
    /// The `Message` SNS delivered to the SQS protocol, parsed as JSON when it is JSON.
    pub message: Value,
    pub severity: Option<String>,
    pub kind: Option<String>,
}

pub struct Inbox {
    pub topic_arn: String,
    pub queue_url: String,
    sqs: aws_sdk_sqs::Client,
}

impl Inbox {
    /// A new topic `<name>` and queue `<name>-inbox`, subscribed.
    pub async fn create(sdk: &SdkConfig, name: &str) -> Result<Self> {
        let sns = aws_sdk_sns::Client::new(sdk);
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let topic_arn = sns
            .create_topic()
            .name(name)
            .send()
            .await
            .context("CreateTopic")?
            .topic_arn()
            .context("no topic arn")?
            .to_owned();
        let (queue_url, queue_arn) = create_queue(&sqs, &format!("{name}-inbox")).await?;
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send()
            .await
            .context("Subscribe")?;
        Ok(Self { topic_arn, queue_url, sqs })
    }

    /// An existing queue, to read from.
    pub fn open(sdk: &SdkConfig, queue_url: &str) -> Self {
        Self {
            topic_arn: String::new(),
            queue_url: queue_url.to_owned(),
            sqs: aws_sdk_sqs::Client::new(sdk),
        }
    }

    /// Waits until `count` messages arrived (or `timeout`), deleting what it reads.
    pub async fn receive(&self, count: usize, timeout: Duration) -> Result<Vec<Received>> {
        let start = Instant::now();
        let mut got = Vec::new();
        while got.len() < count && start.elapsed() < timeout {
            for body in take_messages(&self.sqs, &self.queue_url).await? {
                let envelope: Value = serde_json::from_str(&body).context("SNS envelope")?;
                let raw = envelope["Message"].as_str().unwrap_or_default();
                let attr = |name: &str| {
                    envelope["MessageAttributes"][name]["Value"].as_str().map(str::to_owned)
                };
                got.push(Received {
                    subject: envelope["Subject"].as_str().map(str::to_owned),
                    message: serde_json::from_str(raw)
                        .unwrap_or_else(|_| Value::String(raw.to_owned())),
                    severity: attr("severity"),
                    kind: attr("kind"),
                });
            }
        }
        Ok(got)
    }
}

/// A new SQS queue `name`: its URL and its ARN.
pub(crate) async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
) -> Result<(String, String)> {
    let created = sqs.create_queue().queue_name(name).send().await.context("CreateQueue")?;
    let queue_url = created.queue_url().context("no url")?.to_owned();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .context("GetQueueAttributes")?;
    let queue_arn = attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .context("no queue arn")?
        .clone();
    Ok((queue_url, queue_arn))
}

/// The bodies of what one ReceiveMessage of the queue gets (up to 10, waiting a second), each
/// message deleted once read.
pub(crate) async fn take_messages(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<Vec<String>> {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .context("ReceiveMessage")?;
    let mut bodies = Vec::new();
    for m in out.messages() {
        bodies.push(m.body().unwrap_or("{}").to_owned());
        if let Some(handle) = m.receipt_handle() {
            let delete = sqs.delete_message().queue_url(queue_url).receipt_handle(handle);
            delete.send().await.context("DeleteMessage")?;
        }
    }
    Ok(bodies)
}
