//! The Recycle Bin on the local stack.
//!
//! moto has none; the local extension (`dev/moto_ext/recycle_bin.py`) keeps what a retention
//! rule selects when a snapshot is deleted or an image deregistered, and serves EC2's Recycle
//! Bin listings and snapshot restore. Its rules are added here, in the shape of an
//! `AWS::Rbin::Rule`'s properties, so a test can add exactly the rule `template.yaml` declares.

use anyhow::{bail, Context, Result};
use aws_config::SdkConfig;
use serde_json::{json, Value};

/// Adds a retention rule (the `Properties` of an `AWS::Rbin::Rule`) to the local stack's
/// `region`. Returns the rule's identifier.
pub async fn add_rule(region: &str, properties: &Value) -> Result<String> {
    let mut rule = properties.clone();
    let Some(fields) = rule.as_object_mut() else {
        bail!("a rule's properties are an object: {properties}")
    };
    fields.insert("Region".into(), json!(region));
    let answer = crate::stack::post_extension("/moto-ext/recycle-bin/rules", &rule).await?;
    answer["Identifier"]
        .as_str()
        .map(str::to_owned)
        .context("no Identifier in the local stack's answer")
}

/// Adds the snapshot reaper's rule as `template.yaml` declares it (default retention) to
/// `account`'s `region`, as a deployment there would have it.
pub async fn add_template_rule(account: &str, region: &str) -> Result<String> {
    add_template_rule_named("ReapedSnapshotsRecycleBinRule", account, region).await
}

/// Adds the deprecation enforcer's rule (retired images) as `template.yaml` declares it to
/// `account`'s `region`.
pub async fn add_template_image_rule(account: &str, region: &str) -> Result<String> {
    add_template_rule_named("RetiredImagesRecycleBinRule", account, region).await
}

async fn add_template_rule_named(logical_id: &str, account: &str, region: &str) -> Result<String> {
    let mut rule = template_properties(logical_id)?;
    rule["AccountId"] = json!(account);
    add_rule(region, &rule).await
}

/// An image retention rule that keeps the images tagged `key=value` for `days`.
pub fn image_rule(key: &str, value: &str, days: u32) -> Value {
    json!({
        "ResourceType": "EC2_IMAGE",
        "RetentionPeriod": {"RetentionPeriodValue": days, "RetentionPeriodUnit": "DAYS"},
        "ResourceTags": [{"ResourceTagKey": key, "ResourceTagValue": value}],
    })
}

/// The `Properties` of `template.yaml`'s resource `logical_id`, with each `!Ref` to a parameter
/// replaced by the parameter's default (what a deployment with default parameters gets).
pub fn template_properties(logical_id: &str) -> Result<Value> {
    let template = crate::iam::template();
    let properties = template["Resources"][logical_id]["Properties"].clone();
    if properties.is_null() {
        bail!("template.yaml has no resource {logical_id} with properties");
    }
    to_json(&properties, &template["Parameters"])
}

fn to_json(v: &serde_yaml::Value, parameters: &serde_yaml::Value) -> Result<Value> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Tagged(tagged) if tagged.tag == "Ref" => {
            let name = tagged.value.as_str().context("!Ref names a parameter")?;
            let default = &parameters[name]["Default"];
            if default.is_null() {
                bail!("!Ref {name}: not a parameter with a default");
            }
            to_json(default, parameters)?
        }
        Y::Tagged(tagged) => bail!("{} is not resolved here", tagged.tag),
        Y::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                out.insert(k.as_str().context("string keys")?.to_owned(), to_json(v, parameters)?);
            }
            Value::Object(out)
        }
        Y::Sequence(s) => {
            Value::Array(s.iter().map(|v| to_json(v, parameters)).collect::<Result<_>>()?)
        }
        other => serde_json::to_value(other)?,
    })
}

/// The snapshots in `region`'s Recycle Bin: `(snapshot id, seconds it stays there)`.
pub async fn snapshots_in_bin(sdk: &SdkConfig, region: &str) -> Result<Vec<(String, i64)>> {
    let out = crate::story::ec2(sdk, region).list_snapshots_in_recycle_bin().send().await?;
    Ok(out
        .snapshots()
        .iter()
        .map(|s| {
            let stays = match (s.recycle_bin_enter_time(), s.recycle_bin_exit_time()) {
                (Some(enter), Some(exit)) => exit.secs() - enter.secs(),
                _ => 0,
            };
            (s.snapshot_id().unwrap_or_default().to_owned(), stays)
        })
        .collect())
}

/// Restores a snapshot from `region`'s Recycle Bin.
pub async fn restore_snapshot(sdk: &SdkConfig, region: &str, snapshot: &str) -> Result<()> {
    crate::story::ec2(sdk, region)
        .restore_snapshot_from_recycle_bin()
        .snapshot_id(snapshot)
        .send()
        .await?;
    Ok(())
}
