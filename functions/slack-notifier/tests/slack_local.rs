//! The real `slack-notifier` binary under a local Lambda Runtime API, reading its webhook URL
//! from Secrets Manager on the local stack and posting to a local stand-in for Slack.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use warden::notify::{sns_message, Notification, Severity};
use warden_testkit::runtime_api::{Reply, RuntimeApi};
use warden_testkit::stack;
use warden_testkit::webhook::{Answer, WebhookServer};

const SECRET_PATH: &str = "/services/T0WARDEN/B0WARDEN/s3cr3tW3bh00kT0k3n";

async fn secret_with(url: &str, name: &str) -> String {
    let sdk = stack::sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = format!("{name}-{}", std::process::id());
    client
        .create_secret()
        .name(&name)
        .secret_string(json!({"webhook_url": url}).to_string())
        .send()
        .await
        .expect("secret created")
        .arn()
        .expect("arn")
        .to_owned()
}

fn sns_event(notification: &Notification) -> Value {
    // What SNS hands a Lambda subscriber: the `lambda` entry of the structured message.
    let structured: Value = serde_json::from_str(&sns_message(notification)).unwrap();
    json!({"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:ami-warden:1b2c",
        "Sns": {
            "Type": "Notification", "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ami-warden",
            "Subject": "[CRITICAL] image ami-0abc made public",
            "Message": structured["lambda"],
            "Timestamp": "2026-11-25T10:00:00.000Z", "SignatureVersion": "1", "Signature": "EXAMPLE",
            "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/cert.pem",
            "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
            "MessageAttributes": {
                "severity": {"Type": "String", "Value": notification.severity.as_str()},
                "kind": {"Type": "String", "Value": notification.kind}
            }
        }
    }]})
}

fn alert() -> Notification {
    Notification::new(Severity::Critical, "image-public", "image ami-0abc (web-golden) made public in us-east-1")
        .text("image-admin-session made public image ami-0abc (web-golden) in us-east-1.")
        .field("Image", "ami-0abc (web-golden)")
        .field("Region", "us-east-1")
        .field("Account", "123456789012")
        .field("Actor", "arn:aws:sts::123456789012:assumed-role/image-admin/image-admin-session")
        .field("Source IP", "203.0.113.10")
        .field("Event time", "2026-11-25T10:00:00+00:00")
        .field("Action taken", "removed the grant to everyone (group: all)")
        .link("Open in the EC2 console", "https://us-east-1.console.aws.amazon.com/ec2/home?region=us-east-1#ImageDetails:imageId=ami-0abc")
}

struct Running {
    api: RuntimeApi,
    child: tokio::process::Child,
}

async fn start(secret: &str, min_severity: &str) -> Running {
    let api = RuntimeApi::start().await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_slack-notifier"))
        .envs(api.lambda_env("slack-notifier"))
        .env("SLACK_WEBHOOK_SECRET", secret)
        .env("SLACK_MIN_SEVERITY", min_severity)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("slack-notifier starts");
    Running { api, child }
}

impl Running {
    async fn invoke(&mut self, event: Value) -> Reply {
        let id = self.api.invoke(event).await;
        let (got, reply) =
            self.api.reply(Duration::from_secs(60)).await.expect("the function answers");
        assert_eq!(got, id);
        reply
    }

    /// Everything the function logged (stdout and stderr), after stopping it.
    async fn logs(mut self) -> String {
        self.child.kill().await.ok();
        let mut out = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            s.read_to_string(&mut out).await.ok();
        }
        if let Some(mut s) = self.child.stderr.take() {
            s.read_to_string(&mut out).await.ok();
        }
        out
    }
}

#[tokio::test]
async fn posts_block_kit_retries_a_429_after_retry_after_and_never_logs_the_url() {
    let slack = WebhookServer::start(SECRET_PATH, vec![Answer::rate_limited(1)]).await;
    let secret = secret_with(&slack.url, "slack-ok").await;
    let mut f = start(&secret, "INFO").await;

    let reply = f.invoke(sns_event(&alert())).await;
    let Reply::Response(body) = &reply else { panic!("{reply:?}") };
    assert_eq!(body["records"][0]["outcome"], "posted", "{body}");
    assert_eq!(body["records"][0]["attempts"], 2, "{body}");

    let posted = slack.posted();
    assert_eq!(posted.len(), 2, "one 429, then the retry");
    assert!(
        posted[1].at.duration_since(posted[0].at) >= Duration::from_millis(950),
        "Retry-After honoured"
    );
    assert_eq!(posted[1].path, SECRET_PATH);
    let blocks = posted[1].body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(
        blocks[0]["text"]["text"],
        ":rotating_light: CRITICAL image ami-0abc (web-golden) made public in us-east-1"
    );
    let fields: Vec<&str> = blocks[2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    for expected in [
        "*Image*\nami-0abc (web-golden)",
        "*Region*\nus-east-1",
        "*Account*\n123456789012",
        "*Actor*\narn:aws:sts::123456789012:assumed-role/image-admin/image-admin-session",
        "*Source IP*\n203.0.113.10",
        "*Event time*\n2026-11-25T10:00:00+00:00",
        "*Action taken*\nremoved the grant to everyone (group: all)",
    ] {
        assert!(fields.contains(&expected), "{expected:?} missing from {fields:?}");
    }
    assert!(blocks[3]["elements"][0]["url"]
        .as_str()
        .unwrap()
        .contains("ImageDetails:imageId=ami-0abc"));

    // A second message reuses the cached URL: no second secret read is needed (the secret is
    // deleted now, so a re-read would fail).
    let sdk = stack::sdk_config().await;
    aws_sdk_secretsmanager::Client::new(&sdk)
        .delete_secret()
        .secret_id(&secret)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let reply = f.invoke(sns_event(&alert())).await;
    assert!(
        matches!(&reply, Reply::Response(b) if b["records"][0]["outcome"] == "posted"),
        "{reply:?}"
    );

    let logs = f.logs().await;
    assert!(logs.contains("posted to Slack"), "{logs}");
    assert!(
        !logs.contains("s3cr3tW3bh00kT0k3n") && !logs.contains(&slack.url),
        "the webhook URL leaked into logs:\n{logs}"
    );
}

#[tokio::test]
async fn server_errors_past_the_retry_budget_fail_the_invocation_without_the_url() {
    let slack = WebhookServer::start(SECRET_PATH, vec![Answer::status(503); 10]).await;
    let secret = secret_with(&slack.url, "slack-down").await;
    let mut f = start(&secret, "INFO").await;
    let reply = f.invoke(sns_event(&alert())).await;
    let Reply::Error(body) = &reply else { panic!("expected an invocation error, got {reply:?}") };
    let text = body.to_string();
    assert!(text.contains("4 attempts") && text.contains("HTTP 503"), "{text}");
    assert!(!text.contains("s3cr3tW3bh00kT0k3n"), "{text}");
    assert_eq!(slack.posted().len(), 4, "bounded: four attempts");
    let logs = f.logs().await;
    assert!(!logs.contains("s3cr3tW3bh00kT0k3n"), "{logs}");
}

#[tokio::test]
async fn notifications_below_the_threshold_are_not_posted() {
    let slack = WebhookServer::start(SECRET_PATH, vec![]).await;
    let secret = secret_with(&slack.url, "slack-threshold").await;
    let mut f = start(&secret, "WARNING").await;
    let info =
        Notification::new(Severity::Info, "exposure-sweep", "exposure sweep: nothing public");
    let reply = f.invoke(sns_event(&info)).await;
    assert!(
        matches!(&reply, Reply::Response(b) if b["records"][0]["outcome"] == "skipped"),
        "{reply:?}"
    );
    assert!(slack.posted().is_empty());
}

#[tokio::test]
async fn a_missing_secret_is_an_error_that_names_the_secret_not_a_url() {
    let _ = stack::sdk_config().await;
    let mut f = start("ami-warden/no-such-secret", "INFO").await;
    let reply = f.invoke(sns_event(&alert())).await;
    let Reply::Error(body) = &reply else { panic!("{reply:?}") };
    assert!(body.to_string().contains("ami-warden/no-such-secret"), "{body}");
}

/// A payload that is no SNS event is acknowledged and counted for CloudWatch as a malformed
/// event; a notification is not.
#[tokio::test]
async fn a_payload_that_is_no_sns_event_is_counted_as_malformed() {
    let slack = WebhookServer::start(SECRET_PATH, vec![]).await;
    let secret = secret_with(&slack.url, "slack-metrics").await;
    let mut f = start(&secret, "WARNING").await;
    let info = Notification::new(Severity::Info, "exposure-sweep", "nothing public");
    assert!(matches!(f.invoke(sns_event(&info)).await, Reply::Response(_)));
    let reply = f.invoke(json!({"not": "sns"})).await;
    assert!(matches!(&reply, Reply::Response(b) if b["outcome"] == "ignored"), "{reply:?}");
    let docs = warden_testkit::emf::documents(&f.logs().await);
    let me = [("Function", "slack-notifier")];
    assert_eq!(warden_testkit::emf::values(&docs, "EventsIgnoredMalformed", &me), vec![0.0, 1.0]);
}
