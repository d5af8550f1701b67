//! A notification as an Amazon Q Developer in chat applications (formerly AWS Chatbot) custom
//! notification: the JSON a chat topic carries to a Slack channel or a Microsoft Teams channel.
//!
//! Pure: builds the documented event format (`version` `1.0`, `source` `custom`, `content` with
//! title, description, next steps and keywords, `metadata` with summary, event type, related
//! resources and a thread id). Amazon Q renders it in the channel, so no webhook secret is
//! involved. Publishing it, and deciding which severities go to chat, is the SNS adapter's
//! business ([`crate::aws::sns::SnsNotifier`]), not this module's.
//!
//! AWS documents the fields but, as far as this project could find, no length limits; the
//! limits below are this module's own, chosen to fit what Slack shows in one block (3,000
//! characters of text, a 150-character header) so a long sweep summary is cut here, saying
//! so, rather than dropped by the channel. Angle brackets from an event (an image name, a
//! user agent) become `‹ ›`, so nothing can turn into a link or a mention in the channel.

use serde_json::{json, Map, Value};

use super::{Notification, Severity};
use crate::ids::{ImageId, SnapshotId};

/// The format version Amazon Q accepts.
pub const VERSION: &str = "1.0";
/// The `source` of every custom notification.
pub const SOURCE: &str = "custom";

/// The longest title, in characters (Slack's header block).
pub const TITLE_LIMIT: usize = 150;
/// The longest description, in characters (Slack's section text).
pub const DESCRIPTION_LIMIT: usize = 3000;
/// The longest summary (the channel's preview line), in characters.
pub const SUMMARY_LIMIT: usize = 150;
/// At most this many next steps, each at most [`STEP_LIMIT`] characters.
pub const MAX_NEXT_STEPS: usize = 5;
pub const STEP_LIMIT: usize = 300;
/// At most this many related resources (image and snapshot ids).
pub const MAX_RELATED: usize = 10;

/// The custom notification for `n`.
pub fn message(n: &Notification) -> Value {
    let related = related_resources(n);
    let mut content = json!({
        "textType": "client-markdown",
        "title": cut(&format!("{} {}: {}", emoji(n.severity), n.severity, clean(&n.subject)), TITLE_LIMIT),
        "description": description(n),
        "keywords": keywords(n),
    });
    let steps = next_steps(n);
    if !steps.is_empty() {
        content["nextSteps"] = json!(steps);
    }
    let mut metadata = json!({
        "summary": cut(&format!("{}: {}", n.severity, clean(&n.subject)), SUMMARY_LIMIT),
        "eventType": n.kind,
        "relatedResources": related,
        "additionalContext": context(n),
    });
    if let Some(thread) = thread_id(n) {
        metadata["threadId"] = json!(thread);
    }
    let mut out = json!({"version": VERSION, "source": SOURCE});
    if let Some(id) = n.details.get("event_id").and_then(Value::as_str) {
        out["id"] = json!(id);
    }
    out["content"] = content;
    out["metadata"] = metadata;
    out
}

/// Unicode rather than Slack's `:shortcodes:`, which Teams would show as text.
fn emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "🚨",
        Severity::Warning => "⚠️",
        Severity::Resolved => "✅",
        Severity::Info => "ℹ️",
    }
}

/// Angle brackets out of event data: in Slack's markup `<…>` is a link or a mention.
fn clean(text: &str) -> String {
    text.replace('<', "‹").replace('>', "›")
}

/// `text` cut to `limit` characters, ending with `…` when cut.
fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The text, then each field as a `Label: value` line unless the text already says it (the
/// guard's alerts end with `Live state: …` and `Action taken: …`), cut to
/// [`DESCRIPTION_LIMIT`] with a note that says where the rest is.
fn description(n: &Notification) -> String {
    let mut full = clean(n.text.trim_end());
    let lines: Vec<String> = n
        .fields
        .iter()
        .map(|f| format!("{}: {}", clean(&f.label), clean(&f.value)))
        .filter(|line| !full.contains(line.as_str()))
        .collect();
    if !lines.is_empty() {
        full.push_str("\n\n");
        full.push_str(&lines.join("\n"));
    }
    let full = full.trim().to_owned();
    let total = full.chars().count();
    if total <= DESCRIPTION_LIMIT {
        return full;
    }
    let note = "\n… (cut: the full text is in the email and the notification topic's JSON payload)";
    let keep = DESCRIPTION_LIMIT - note.chars().count();
    let mut out: String = full.chars().take(keep).collect();
    out.push_str(note);
    out
}

/// The notification's links, as `label: url` lines the channel makes clickable.
fn next_steps(n: &Notification) -> Vec<String> {
    n.links
        .iter()
        .filter(|l| l.url.starts_with("https://"))
        .take(MAX_NEXT_STEPS)
        .map(|l| cut(&format!("{}: {}", clean(&l.label), l.url), STEP_LIMIT))
        .collect()
}

/// Severity, kind, then the account and the region when the notification names them.
fn keywords(n: &Notification) -> Vec<String> {
    let mut words = vec![n.severity.to_string(), n.kind.clone()];
    words.extend(account(n));
    words.extend(region(n));
    words
}

/// Machine-readable context for custom actions: only strings, only what is known.
fn context(n: &Notification) -> Value {
    let mut map = Map::new();
    map.insert("severity".into(), json!(n.severity.as_str()));
    map.insert("kind".into(), json!(n.kind));
    if let Some(account) = account(n) {
        map.insert("account".into(), json!(account));
    }
    if let Some(region) = region(n) {
        map.insert("region".into(), json!(region));
    }
    Value::Object(map)
}

fn field<'a>(n: &'a Notification, label: &str) -> Option<&'a str> {
    n.fields.iter().find(|f| f.label == label).map(|f| f.value.as_str())
}

/// The `Account` field, else `details.account`.
fn account(n: &Notification) -> Option<String> {
    field(n, "Account")
        .or_else(|| n.details.get("account").and_then(Value::as_str))
        .filter(|a| crate::ids::AccountId::parse(a).is_some())
        .map(str::to_owned)
}

/// The `Region` field, else `details.region`.
fn region(n: &Notification) -> Option<String> {
    field(n, "Region")
        .or_else(|| n.details.get("region").and_then(Value::as_str))
        .filter(|r| crate::ids::Region::parse(r).is_some())
        .map(str::to_owned)
}

/// The image or snapshot the notification is about: the first word of its `Image` or
/// `Snapshot` field (summaries of many images have neither).
fn subject_resource(n: &Notification) -> Option<String> {
    let first = |label| field(n, label).and_then(|v| v.split_whitespace().next());
    first("Image")
        .filter(|id| ImageId::parse(id).is_some())
        .or_else(|| first("Snapshot").filter(|id| SnapshotId::parse(id).is_some()))
        .map(str::to_owned)
}

/// Alerts about one image or snapshot share a thread (its exposure, then its resolution);
/// summaries start their own.
fn thread_id(n: &Notification) -> Option<String> {
    subject_resource(n).map(|id| format!("ami-warden-{id}"))
}

/// Every image and snapshot id in the fields and the text, the subject first, without
/// repeats, at most [`MAX_RELATED`].
fn related_resources(n: &Notification) -> Vec<String> {
    let mut ids: Vec<String> = subject_resource(n).into_iter().collect();
    let texts = n.fields.iter().map(|f| f.value.as_str()).chain([n.text.as_str()]);
    let words = texts.flat_map(|t| t.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')));
    for word in words {
        if ids.len() >= MAX_RELATED {
            break;
        }
        let is_id = ImageId::parse(word).is_some() || SnapshotId::parse(word).is_some();
        if is_id && !ids.iter().any(|id| id == word) {
            ids.push(word.to_owned());
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image made public, as the exposure guard words it (abridged).
    fn image_public() -> Notification {
        Notification::new(Severity::Critical, "image-public", "image ami-0abc (golden <base>) made public in eu-west-1")
            .text("image-admin made image ami-0abc public in eu-west-1, account 123456789012.\nAction taken: removed the grant to everyone.")
            .field("Action taken", "removed the grant to everyone")
            .field("Image", "ami-0abc (golden <base>)")
            .field("Region", "eu-west-1")
            .field("Account", "123456789012")
            .field("Actor", "arn:aws:sts::123456789012:assumed-role/admin/image-admin")
            .link("Open in the EC2 console", "https://eu-west-1.console.aws.amazon.com/ec2/home#ImageDetails:imageId=ami-0abc")
            .link("Not a web link", "javascript:alert(1)")
            .details(json!({"event_id": "ev-1", "region": "eu-west-1", "account": "123456789012"}))
    }

    /// A shared snapshot backing two images.
    fn snapshot_shared() -> Notification {
        Notification::new(
            Severity::Warning,
            "snapshot-shared",
            "snapshot snap-0def shared with 999988887777 in us-east-1",
        )
        .text("admin shared snapshot snap-0def with account 999988887777.")
        .field("Snapshot", "snap-0def")
        .field("Region", "us-east-1")
        .field("Backs images", "ami-1, ami-2")
    }

    /// A sweep summary: many images, no one resource, no account.
    fn sweep_summary() -> Notification {
        Notification::new(Severity::Info, "deprecation-upcoming", "3 image(s) in us-east-1 reach their deprecation deadline soon")
            .text("These images in us-east-1 reach their deprecation deadline soon:\n  ami-1 web-1\n  ami-2 web-2\n  ami-3 web-3\n")
            .field("Region", "us-east-1")
            .field("Images", "3")
    }

    #[test]
    fn every_message_is_a_version_1_0_custom_notification_in_client_markdown() {
        for n in [image_public(), snapshot_shared(), sweep_summary()] {
            let m = message(&n);
            assert_eq!(
                (m["version"].as_str(), m["source"].as_str()),
                (Some("1.0"), Some("custom"))
            );
            assert_eq!(m["content"]["textType"], "client-markdown");
            assert_eq!(m["metadata"]["eventType"], n.kind.as_str());
            assert!(m["content"]["description"].as_str().is_some_and(|d| !d.is_empty()));
            let context = m["metadata"]["additionalContext"].as_object().unwrap();
            assert!(context.values().all(Value::is_string), "{context:?}");
        }
    }

    #[test]
    fn an_image_alert_has_its_severity_in_the_title_and_its_image_in_resources_and_thread() {
        let m = message(&image_public());
        assert_eq!(m["id"], "ev-1");
        let title = m["content"]["title"].as_str().unwrap();
        assert!(
            title.starts_with("🚨 CRITICAL: image ami-0abc (golden ‹base›) made public"),
            "{title}"
        );
        assert_eq!(
            m["content"]["keywords"],
            json!(["CRITICAL", "image-public", "123456789012", "eu-west-1"])
        );
        assert_eq!(m["metadata"]["relatedResources"], json!(["ami-0abc"]));
        assert_eq!(m["metadata"]["threadId"], "ami-warden-ami-0abc");
        assert_eq!(
            m["metadata"]["summary"],
            "CRITICAL: image ami-0abc (golden ‹base›) made public in eu-west-1"
        );
        assert_eq!(
            m["metadata"]["additionalContext"],
            json!({"severity": "CRITICAL", "kind": "image-public", "account": "123456789012", "region": "eu-west-1"})
        );
    }

    #[test]
    fn the_description_tells_each_fact_once() {
        let m = message(&image_public());
        let description = m["content"]["description"].as_str().unwrap();
        assert_eq!(
            description.matches("Action taken: removed the grant").count(),
            1,
            "{description}"
        );
        assert!(
            description.contains("\n\nImage: ami-0abc (golden ‹base›)\nRegion: eu-west-1\n"),
            "{description}"
        );
    }

    #[test]
    fn only_web_links_become_next_steps() {
        let m = message(&image_public());
        let steps = m["content"]["nextSteps"].as_array().unwrap();
        assert_eq!(steps.len(), 1);
        assert!(steps[0].as_str().unwrap().starts_with("Open in the EC2 console: https://"));
        assert!(message(&sweep_summary())["content"].get("nextSteps").is_none());
    }

    #[test]
    fn nothing_from_an_event_can_become_a_link_or_a_mention() {
        let mut n = image_public();
        n.text = "made public by <@U123> and <!channel>, see <https://evil.example|docs>".into();
        let m = message(&n).to_string();
        assert!(!m.contains('<') && !m.contains('>'), "{m}");
    }

    #[test]
    fn a_snapshot_alert_threads_on_the_snapshot_and_names_the_images_it_backs() {
        let m = message(&snapshot_shared());
        assert_eq!(m["metadata"]["threadId"], "ami-warden-snap-0def");
        assert_eq!(m["metadata"]["relatedResources"], json!(["snap-0def", "ami-1", "ami-2"]));
        assert!(m["content"]["title"].as_str().unwrap().starts_with("⚠️ WARNING: "));
        assert!(m.get("id").is_none(), "no event id, no id");
    }

    #[test]
    fn a_summary_of_many_images_lists_them_but_starts_no_thread_of_one() {
        let m = message(&sweep_summary());
        assert!(m["metadata"].get("threadId").is_none());
        assert_eq!(m["metadata"]["relatedResources"], json!(["ami-1", "ami-2", "ami-3"]));
        assert_eq!(m["content"]["keywords"], json!(["INFO", "deprecation-upcoming", "us-east-1"]));
        let description = m["content"]["description"].as_str().unwrap();
        assert!(description.ends_with("Region: us-east-1\nImages: 3"), "{description}");
    }

    #[test]
    fn long_notifications_are_cut_within_the_limits_and_say_so() {
        let mut n = image_public().text(format!("ami-9 {}", "x".repeat(20_000)));
        n.subject = "s".repeat(1000);
        for i in 0..40 {
            n = n.link(&format!("link {i}"), format!("https://example.com/{}", "p".repeat(500)));
            n = n.field("More", format!("ami-{i:04} snap-{i:04}"));
        }
        let text = serde_json::to_string(&message(&n)).unwrap();
        let m: Value = serde_json::from_str(&text).expect("still valid JSON");
        let chars = |v: &Value| v.as_str().unwrap().chars().count();
        assert!(chars(&m["content"]["title"]) <= TITLE_LIMIT);
        assert!(chars(&m["metadata"]["summary"]) <= SUMMARY_LIMIT);
        let description = &m["content"]["description"];
        assert_eq!(chars(description), DESCRIPTION_LIMIT);
        assert!(description.as_str().unwrap().ends_with("JSON payload)"), "says it was cut");
        let steps = m["content"]["nextSteps"].as_array().unwrap();
        assert_eq!(steps.len(), MAX_NEXT_STEPS);
        assert!(steps.iter().all(|s| chars(s) <= STEP_LIMIT));
        let related = m["metadata"]["relatedResources"].as_array().unwrap();
        assert_eq!(related.len(), MAX_RELATED);
        assert_eq!(related[0], "ami-0abc", "the subject first");
    }

    /// What every custom notification must be, whatever the notification.
    fn assert_valid(m: &Value) {
        assert_eq!((m["version"].as_str(), m["source"].as_str()), (Some("1.0"), Some("custom")));
        for path in
            ["/content/title", "/content/description", "/metadata/summary", "/metadata/eventType"]
        {
            assert!(
                m.pointer(path).and_then(Value::as_str).is_some_and(|s| !s.is_empty()),
                "{path}: {m}"
            );
        }
        let strings = |path: &str| {
            m.pointer(path).and_then(Value::as_array).unwrap().iter().all(Value::is_string)
        };
        assert!(strings("/content/keywords") && strings("/metadata/relatedResources"), "{m}");
    }

    #[test]
    fn the_guards_and_the_sweeps_own_notifications_render_as_valid_custom_notifications() {
        let event = serde_json::from_str(include_str!(
            "../../../fixtures/events/20-disable-image-block-public-access.json"
        ))
        .unwrap();
        let crate::event::Parsed::Event(event) = crate::event::parse_value(&event) else {
            panic!("the fixture parses")
        };
        let bpa = crate::exposure::guard::block_public_access_notification(
            &event.meta,
            Ok("unblocked".into()),
        );
        let m = message(&bpa);
        assert_valid(&m);
        assert_eq!(m["id"].as_str(), Some(event.meta.event_id.as_str()));
        assert_eq!(
            m["content"]["keywords"],
            json!(["CRITICAL", "block-public-access-disabled", "111122223333", "us-east-1"])
        );
        assert!(m["content"]["nextSteps"][0]
            .as_str()
            .unwrap()
            .starts_with("Open EC2 settings: https://"));
        assert!(m["metadata"].get("threadId").is_none(), "an account setting, no image");
        let sweep = crate::exposure::sweep::sweep_notification(&[], Some("111122223333"));
        let m = message(&sweep);
        assert_valid(&m);
        assert_eq!(m["metadata"]["eventType"], "exposure-sweep");
        assert_eq!(m["metadata"]["additionalContext"]["account"], "111122223333");
    }

    #[test]
    fn every_severity_has_its_own_mark() {
        let marks: std::collections::BTreeSet<&str> =
            Severity::ALL.into_iter().map(emoji).collect();
        assert_eq!(marks.len(), Severity::ALL.len());
    }
}
