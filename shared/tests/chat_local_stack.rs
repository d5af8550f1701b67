//! Chat notifications against the local stack: the exposure guard's handler, configured by
//! the environment variables the template sets, publishes through the real SNS adapter to the
//! notification topic and, as an Amazon Q Developer in chat applications custom notification,
//! to the chat topic. An SQS queue subscribed to each topic stands in for the subscribers (on
//! AWS, Amazon Q subscribes to the chat topic).

use std::time::Duration;

use serde_json::Value;
use warden::aws::{sns::SnsNotifier, Clients};
use warden::config::Config;
use warden::handler::{handle, ExposureGuard, Invocation};
use warden::ids::AccountId;
use warden::notify::{Notification, Notifier, Severity};
use warden_testkit::cloudtrail::Trail;
use warden_testkit::exposure::{self as scenario, Share};
use warden_testkit::inbox::Inbox;
use warden_testkit::stack;

const ACCOUNT: &str = "123456789012";

/// A notification topic and a chat topic, each with a queue subscribed.
struct Topics {
    clients: Clients,
    sdk: aws_config::SdkConfig,
    main: Inbox,
    chat: Inbox,
}

impl Topics {
    async fn new(name: &str) -> Self {
        let sdk = stack::sdk_config().await;
        let unique = format!("{name}-{}", std::process::id());
        let main = Inbox::create(&sdk, &format!("{unique}-notify")).await.unwrap();
        let chat = Inbox::create(&sdk, &format!("{unique}-chat")).await.unwrap();
        Self { clients: Clients::new(&sdk), sdk, main, chat }
    }

    /// The configuration a function gets from the template with `ChatNotifications=true`.
    fn config(&self, min_severity: &str, table: &str) -> Config {
        let vars = [
            ("TOPIC_ARN", self.main.topic_arn.as_str()),
            ("CHAT_TOPIC_ARN", self.chat.topic_arn.as_str()),
            ("CHAT_MIN_SEVERITY", min_severity),
            ("LINEAGE_TABLE", table),
        ];
        Config::from_lookup(|name| {
            vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
        })
        .expect("the template's values are valid")
    }
}

#[tokio::test]
async fn a_public_image_alert_reaches_the_chat_topic_as_an_amazon_q_custom_notification() {
    let t = Topics::new("chat-public").await;
    let table = stack::fresh_lineage_table(&t.sdk, "chat").await;
    let guard = ExposureGuard::new(&t.clients, &t.config("WARNING", &table)).unwrap();
    let (image, _) =
        scenario::register_image(&t.sdk, "us-east-1", "web-golden-2026-12-01").await.unwrap();
    let trail = Trail::new(ACCOUNT, "image-admin");
    let event =
        scenario::modify_launch_permission(&t.sdk, &trail, "us-east-1", &image, &[Share::All], &[])
            .await
            .unwrap();

    let invocation = Invocation::unbounded(AccountId::parse(ACCOUNT));
    handle(&guard, &event, &invocation).await.expect("the guard handles the event");

    let mail = t.main.receive(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(mail.len(), 1, "the notification topic has the alert");
    assert_eq!(mail[0].message["version"], 1, "its subscribers get the JSON payload as before");
    let chat = t.chat.receive(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(chat.len(), 1, "the chat topic has it too");
    let (m, got) = (&chat[0].message, &chat[0]);
    assert_eq!(
        (got.severity.as_deref(), got.kind.as_deref()),
        (Some("CRITICAL"), Some("image-public")),
        "filterable like the notification topic"
    );
    assert_eq!((m["version"].as_str(), m["source"].as_str()), (Some("1.0"), Some("custom")));
    assert_eq!(m["content"]["textType"], "client-markdown");
    let title = m["content"]["title"].as_str().unwrap();
    assert!(title.starts_with("🚨 CRITICAL: image ") && title.contains(&image), "{title}");
    let description = m["content"]["description"].as_str().unwrap();
    assert!(description.contains("image-admin-session made image "), "{description}");
    assert!(m["content"]["nextSteps"][0].as_str().unwrap().contains("console.aws.amazon.com"));
    assert_eq!(m["metadata"]["eventType"], "image-public");
    assert_eq!(m["metadata"]["relatedResources"][0].as_str(), Some(image.as_str()));
    assert_eq!(m["metadata"]["threadId"].as_str(), Some(format!("ami-warden-{image}").as_str()));
    assert!(m["id"].as_str().is_some_and(|id| !id.is_empty()), "the CloudTrail event id");
}

#[tokio::test]
async fn notifications_below_the_chat_minimum_reach_only_the_notification_topic() {
    let t = Topics::new("chat-quiet").await;
    let notifier = SnsNotifier::from_config(&t.clients, &t.config("WARNING", "unused")).unwrap();
    assert_eq!(notifier.chat_topic_arn(), Some(t.chat.topic_arn.as_str()));
    let info = Notification::new(Severity::Info, "exposure-sweep", "exposure sweep: nothing found");
    notifier.publish(&info).await.expect("published");

    assert_eq!(t.main.receive(1, Duration::from_secs(10)).await.unwrap().len(), 1);
    let chat = t.chat.receive(1, Duration::from_secs(3)).await.unwrap();
    let titles: Vec<&Value> = chat.iter().map(|m| &m.message["content"]["title"]).collect();
    assert!(chat.is_empty(), "INFO is below CHAT_MIN_SEVERITY=WARNING: {titles:?}");
}

#[tokio::test]
async fn a_chat_topic_that_refuses_the_message_does_not_fail_the_alert() {
    let t = Topics::new("chat-gone").await;
    let gone = format!("arn:aws:sns:us-east-1:{ACCOUNT}:no-such-chat-topic-{}", std::process::id());
    let notifier = SnsNotifier::new(&t.clients, &t.main.topic_arn).with_chat(
        &t.clients,
        &gone,
        Severity::Info,
    );
    let alert = Notification::new(Severity::Critical, "image-public", "ami-0abc is public");

    let id = notifier.publish(&alert).await.expect("the notification topic took it");

    assert!(!id.is_empty());
    let mail = t.main.receive(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(mail.len(), 1, "the alert went out; only its chat copy is missing (logged)");
}
