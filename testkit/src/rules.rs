//! The template's EventBridge rules on the local stack: a rule with the pattern template.yaml
//! gives one of a function's events, delivering to an SQS queue, so that a test sees which
//! events EventBridge would hand the function (moto matches the pattern).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use aws_config::SdkConfig;
use aws_sdk_eventbridge::types::{PutEventsRequestEntry, Target};
use serde_json::Value;

/// The pattern of the EventBridge event `event` of the template's resource `resource`, as
/// JSON, each `!Sub` string filled in from `vars` (`AWS::StackName`, `AWS::Region`, …).
pub fn event_pattern(resource: &str, event: &str, vars: &[(&str, &str)]) -> Value {
    let template = crate::iam::template();
    let pattern =
        &template["Resources"][resource]["Properties"]["Events"][event]["Properties"]["Pattern"];
    assert!(!pattern.is_null(), "no pattern for {resource}'s {event} in template.yaml");
    to_json(pattern, vars)
}

fn to_json(v: &serde_yaml::Value, vars: &[(&str, &str)]) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Tagged(t) if t.tag == "Sub" => {
            let mut text = t.value.as_str().expect("a !Sub of one string").to_owned();
            for (name, value) in vars {
                text = text.replace(&format!("${{{name}}}"), value);
            }
            assert!(!text.contains("${"), "a variable left in {text}");
            Value::String(text)
        }
        Y::Tagged(t) => panic!("!{} in an event pattern", t.tag),
        Y::Sequence(items) => Value::Array(items.iter().map(|i| to_json(i, vars)).collect()),
        Y::Mapping(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().expect("a string key").to_owned(), to_json(v, vars)))
                .collect(),
        ),
        other => serde_json::to_value(other).expect("a plain YAML value"),
    }
}

/// A rule on the default event bus with a pattern, delivering to its own queue.
pub struct Rule {
    events: aws_sdk_eventbridge::Client,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl Rule {
    /// Rule `name` with `pattern`, and queue `<name>-delivered` as its target.
    pub async fn create(sdk: &SdkConfig, name: &str, pattern: &Value) -> Result<Self> {
        let (events, sqs) = (aws_sdk_eventbridge::Client::new(sdk), aws_sdk_sqs::Client::new(sdk));
        let (queue_url, queue_arn) =
            crate::inbox::create_queue(&sqs, &format!("{name}-delivered")).await?;
        events.put_rule().name(name).event_pattern(pattern.to_string()).send().await?;
        let target = Target::builder().id("queue").arn(queue_arn).build()?;
        events.put_targets().rule(name).targets(target).send().await?;
        Ok(Self { events, sqs, queue_url })
    }

    /// Puts `event` (an event as EventBridge delivers it) on the default bus.
    pub async fn put(&self, event: &Value) -> Result<()> {
        let text = |field: &str| event[field].as_str().map(str::to_owned);
        let resources = event["resources"].as_array().into_iter().flatten();
        let entry = PutEventsRequestEntry::builder()
            .set_source(text("source"))
            .set_detail_type(text("detail-type"))
            .detail(event["detail"].to_string())
            .set_resources(Some(resources.filter_map(|r| r.as_str().map(str::to_owned)).collect()))
            .build();
        let out = self.events.put_events().entries(entry).send().await?;
        if out.failed_entry_count() > 0 {
            bail!("PutEvents refused the event: {:?}", out.entries());
        }
        Ok(())
    }

    /// The events delivered within `wait` (taken off the queue).
    pub async fn delivered(&self, wait: Duration) -> Result<Vec<Value>> {
        let deadline = Instant::now() + wait;
        let mut events = Vec::new();
        while Instant::now() < deadline {
            for body in crate::inbox::take_messages(&self.sqs, &self.queue_url).await? {
                events.push(serde_json::from_str(&body)?);
            }
        }
        Ok(events)
    }
}
