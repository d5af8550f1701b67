//! A notification as a Slack Block Kit message (incoming-webhook body).
//!
//! Pure: builds the JSON the slack-notifier function posts, within Slack's limits (header 150
//! characters, section text 3,000, ten fields of 2,000 each) and with `&`, `<`, `>` escaped so
//! nothing from an event (an image name, a user agent) can inject links or mentions. Sending
//! it, and the webhook secret, are the function's business, not this module's.

use serde_json::{json, Value};

use super::{Notification, Severity};

const HEADER_LIMIT: usize = 150;
const TEXT_LIMIT: usize = 3000;
const FIELD_LIMIT: usize = 2000;
const MAX_FIELDS: usize = 10;
const MAX_BUTTONS: usize = 5;

fn emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => ":rotating_light:",
        Severity::Warning => ":warning:",
        Severity::Resolved => ":white_check_mark:",
        Severity::Info => ":information_source:",
    }
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The webhook body for a notification.
pub fn message(n: &Notification) -> Value {
    let header = cut(&format!("{} {} {}", emoji(n.severity), n.severity, n.subject), HEADER_LIMIT);
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}}),
    ];
    if !n.text.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&escape(&n.text), TEXT_LIMIT)}}));
    }
    // Slack shows at most ten fields per section: the rest go into further sections.
    for chunk in n.fields.chunks(MAX_FIELDS) {
        let fields: Vec<Value> = chunk
            .iter()
            .map(|f| {
                let text = format!("*{}*\n{}", escape(&f.label), escape(&f.value));
                json!({"type": "mrkdwn", "text": cut(&text, FIELD_LIMIT)})
            })
            .collect();
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    let buttons: Vec<Value> = n
        .links
        .iter()
        .filter(|l| l.url.starts_with("https://"))
        .take(MAX_BUTTONS)
        .map(|l| json!({"type": "button", "text": {"type": "plain_text", "text": cut(&l.label, 75)}, "url": l.url}))
        .collect();
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": format!("AMI Warden · `{}` · {}", escape(&n.kind), n.severity)}
    ]}));
    json!({
        // The fallback shown in notifications and by clients that cannot render blocks.
        "text": cut(&format!("[{}] {}", n.severity, escape(&n.subject)), TEXT_LIMIT),
        "blocks": blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Notification {
        Notification::new(Severity::Critical, "image-public", "ami-0abc is public")
            .text("Made public by <@U123> & friends")
            .field("Image", "ami-0abc (golden <base>)")
            .field("Region", "eu-west-1")
            .link("Open in the EC2 console", "https://eu-west-1.console.aws.amazon.com/ec2/home")
            .link("Not a web link", "javascript:alert(1)")
    }

    #[test]
    fn a_critical_alert_has_header_fields_button_and_context() {
        let m = message(&alert());
        let blocks = m["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["text"], ":rotating_light: CRITICAL ami-0abc is public");
        assert_eq!(blocks[1]["text"]["text"], "Made public by &lt;@U123&gt; &amp; friends");
        assert_eq!(blocks[2]["fields"][0]["text"], "*Image*\nami-0abc (golden &lt;base&gt;)");
        let buttons = blocks[3]["elements"].as_array().unwrap();
        assert_eq!(buttons.len(), 1, "only https links become buttons");
        assert_eq!(blocks[4]["type"], "context");
        assert_eq!(m["text"], "[CRITICAL] ami-0abc is public");
    }

    #[test]
    fn long_values_and_many_fields_stay_within_slack_limits() {
        let mut n = alert();
        n.subject = "s".repeat(400);
        n.text = "t".repeat(10_000);
        for i in 0..25 {
            n = n.field(&format!("f{i}"), "v".repeat(5000));
        }
        let m = message(&n);
        let blocks = m["blocks"].as_array().unwrap();
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= HEADER_LIMIT);
        assert!(blocks[1]["text"]["text"].as_str().unwrap().chars().count() <= TEXT_LIMIT);
        for b in blocks.iter().filter(|b| b.get("fields").is_some()) {
            let fields = b["fields"].as_array().unwrap();
            assert!(fields.len() <= MAX_FIELDS);
            assert!(fields
                .iter()
                .all(|f| f["text"].as_str().unwrap().chars().count() <= FIELD_LIMIT));
        }
    }
}
