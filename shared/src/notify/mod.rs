//! Notifications: what every function tells people, in one shape, through one SNS topic.
//!
//! A [`Notification`] carries a severity, a kind, a one-line subject, a plain-text body for
//! email, and labelled fields and links for structured subscribers (the Slack notifier renders
//! them as Block Kit, see [`slack`]). [`sns_message`] turns it into the `MessageStructure=json`
//! document SNS expects: email subscribers get the text, Lambda, SQS and HTTPS subscribers get
//! the JSON [`Payload`]. The `severity` and `kind` message attributes let subscribers filter.
//!
//! A second, optional topic carries the same notifications to chat channels through Amazon Q
//! Developer in chat applications, in its custom notification format ([`chat`]).
//!
//! This module builds messages; it does not send them. The SNS adapter is
//! [`crate::aws::sns::SnsNotifier`].

pub mod chat;
pub mod slack;

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How urgent a notification is. Ordered: `Info < Resolved < Warning < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// For the record: reports, upcoming deadlines, sweeps that found nothing.
    Info,
    /// An earlier exposure has ended.
    Resolved,
    /// Needs a look: a share outside the allow-list, a planned deregistration.
    Warning,
    /// Act now: an image or snapshot is public, block public access is off.
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Self::Info, Self::Resolved, Self::Warning, Self::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Resolved => "RESOLVED",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
        }
    }

    /// Parses `INFO`, `RESOLVED`, `WARNING` or `CRITICAL` (any case).
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(raw.trim()))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One labelled fact shown to people (Slack fields, the email's key lines).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub label: String,
    pub value: String,
}

/// A link shown as a button in Slack and a line in email.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub label: String,
    pub url: String,
}

/// Something to tell the security channel and the on-call mailbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub severity: Severity,
    /// A stable, filterable kebab-case name, e.g. `image-public`, `exposure-sweep`.
    pub kind: String,
    /// One line; SNS truncates nothing, [`sns_subject`] makes it fit.
    pub subject: String,
    /// The readable body: what, where, who, from where, what was done.
    pub text: String,
    pub fields: Vec<Field>,
    pub links: Vec<Link>,
    /// Machine-readable details for programmatic subscribers (ids, grantees, decisions).
    pub details: serde_json::Value,
}

impl Notification {
    pub fn new(severity: Severity, kind: &str, subject: impl Into<String>) -> Self {
        Self {
            severity,
            kind: kind.to_owned(),
            subject: subject.into(),
            text: String::new(),
            fields: Vec::new(),
            links: Vec::new(),
            details: serde_json::Value::Null,
        }
    }

    pub fn field(mut self, label: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        if !value.is_empty() {
            self.fields.push(Field { label: label.to_owned(), value });
        }
        self
    }

    pub fn link(mut self, label: &str, url: impl Into<String>) -> Self {
        self.links.push(Link { label: label.to_owned(), url: url.into() });
        self
    }

    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = text.into();
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// The email body: the text, then the fields and links as `label: value` lines.
    pub fn email_body(&self) -> String {
        let mut body = format!("[{}] {}\n\n", self.severity, self.subject);
        if !self.text.is_empty() {
            body.push_str(self.text.trim_end());
            body.push_str("\n\n");
        }
        let width = self.fields.iter().map(|f| f.label.len()).max().unwrap_or(0);
        for f in &self.fields {
            body.push_str(&format!(
                "{:width$}  {}\n",
                format!("{}:", f.label),
                f.value,
                width = width + 1
            ));
        }
        for l in &self.links {
            body.push_str(&format!("\n{}: {}", l.label, l.url));
        }
        body.push_str("\n\n-- AMI Warden\n");
        body
    }
}

/// What structured subscribers (Lambda, SQS, HTTPS) receive: the notification, versioned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// The payload format version; readers reject versions they do not know.
    pub version: u32,
    #[serde(flatten)]
    pub notification: Notification,
}

pub const PAYLOAD_VERSION: u32 = 1;

/// SNS subjects: at most 100 characters, ASCII printable, no line breaks.
pub const SUBJECT_LIMIT: usize = 100;

/// The subject as SNS accepts it: control characters and non-ASCII replaced, whitespace
/// collapsed, cut to [`SUBJECT_LIMIT`] characters with an ellipsis (`...`).
pub fn sns_subject(subject: &str, severity: Severity) -> String {
    let full = format!("[{severity}] {subject}");
    let mut clean = String::with_capacity(full.len());
    for c in full.chars() {
        let c = if c.is_ascii_graphic() {
            c
        } else if c.is_whitespace() {
            ' '
        } else {
            '?'
        };
        if c == ' ' && clean.ends_with(' ') {
            continue;
        }
        clean.push(c);
    }
    let clean = clean.trim().to_owned();
    if clean.len() <= SUBJECT_LIMIT {
        return clean;
    }
    let mut cut = clean[..SUBJECT_LIMIT - 3].trim_end().to_owned();
    cut.push_str("...");
    cut
}

/// The `Message` for `Publish` with `MessageStructure=json`: one entry per protocol.
pub fn sns_message(notification: &Notification) -> String {
    let body = notification.email_body();
    let payload = Payload { version: PAYLOAD_VERSION, notification: notification.clone() };
    let structured = serde_json::to_string(&payload).unwrap_or_else(|_| "{}".into());
    serde_json::json!({
        "default": body,
        "email": body,
        "lambda": structured,
        "sqs": structured,
        "https": structured,
        "http": structured,
        "email-json": structured,
    })
    .to_string()
}

/// The message attributes subscribers can filter on.
pub fn sns_attributes(notification: &Notification) -> [(&'static str, String); 2] {
    [("severity", notification.severity.as_str().to_owned()), ("kind", notification.kind.clone())]
}

/// Publishing failed (after the SDK's bounded retries).
#[derive(Debug, Error)]
#[error("publishing {kind} notification to {topic} failed: {message}")]
pub struct NotifyError {
    pub kind: String,
    pub topic: String,
    pub message: String,
}

/// Where notifications go: the SNS topic in production.
#[allow(async_fn_in_trait)]
pub trait Notifier {
    /// Sends one notification; returns the message id.
    async fn publish(&self, notification: &Notification) -> Result<String, NotifyError>;
}

/// The EC2 console page of an image, for links.
pub fn console_image_url(region: &str, image_id: &str) -> String {
    format!("https://{region}.console.aws.amazon.com/ec2/home?region={region}#ImageDetails:imageId={image_id}")
}

/// The EC2 console page of a snapshot.
pub fn console_snapshot_url(region: &str, snapshot_id: &str) -> String {
    format!("https://{region}.console.aws.amazon.com/ec2/home?region={region}#SnapshotDetails:snapshotId={snapshot_id}")
}

/// The EC2 console's data protection settings (image block public access).
pub fn console_settings_url(region: &str) -> String {
    format!("https://{region}.console.aws.amazon.com/ec2/home?region={region}#Settings:tab=dataProtectionAndSecurity")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_from_info_to_critical() {
        assert!(Severity::Info < Severity::Resolved);
        assert!(Severity::Resolved < Severity::Warning);
        assert!(Severity::Warning < Severity::Critical);
        assert_eq!(Severity::parse("warning"), Some(Severity::Warning));
        assert_eq!(Severity::parse("loud"), None);
    }

    #[test]
    fn subjects_fit_sns_limits_whatever_the_input() {
        let long = format!("ami-0123 made public by {}\nwith ünïcödé\tand tabs", "x".repeat(200));
        let subject = sns_subject(&long, Severity::Critical);
        assert!(subject.len() <= SUBJECT_LIMIT, "{}", subject.len());
        assert!(subject.starts_with("[CRITICAL] ami-0123 made public by"));
        assert!(subject.ends_with("..."));
        assert!(subject.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{subject}");
        let short = sns_subject("ami-1 is\npublic", Severity::Info);
        assert_eq!(short, "[INFO] ami-1 is public");
    }

    #[test]
    fn the_sns_message_gives_email_text_and_structured_json_to_the_rest() {
        let n = Notification::new(Severity::Critical, "image-public", "ami-1 is public")
            .text("Someone made it public.")
            .field("Image", "ami-1")
            .field("Empty", "")
            .link("Console", "https://example.com");
        let message: serde_json::Value = serde_json::from_str(&sns_message(&n)).unwrap();
        let email = message["email"].as_str().unwrap();
        assert!(
            email.contains("Someone made it public.") && email.contains("Image:  ami-1"),
            "{email}"
        );
        assert!(!email.contains("Empty"));
        assert_eq!(message["default"], message["email"]);
        let payload: Payload = serde_json::from_str(message["lambda"].as_str().unwrap()).unwrap();
        assert_eq!(payload.version, PAYLOAD_VERSION);
        assert_eq!(payload.notification, n);
        assert_eq!(message["sqs"], message["lambda"]);
    }
}
