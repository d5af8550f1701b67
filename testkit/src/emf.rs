//! The metrics a function printed, read back from its output as CloudWatch would read them:
//! every line with `_aws` is an embedded metric format document, checked against the shape
//! CloudWatch requires before anything is read from it (a test fails on a line CloudWatch would
//! drop, rather than reading a value CloudWatch would never see). A metric is found as
//! CloudWatch keys it: by name and by exactly the dimensions of one of its document's sets.

use serde_json::Value;

use warden::metrics::emf::{MAX_DIMENSIONS, MAX_METRICS, MAX_VALUES};

/// The EMF documents among `logs`' lines, each checked ([`check`]); panics naming the line
/// that CloudWatch would not take.
pub fn documents(logs: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line.get("_aws").is_some())
        .inspect(|doc| {
            if let Err(why) = check(doc) {
                panic!("not an EMF document CloudWatch would take ({why}): {doc}")
            }
        })
        .collect()
}

/// Why `doc` breaks the embedded metric format, if it does: the metadata's timestamp and
/// directives, each dimension set naming string members of the root (at most
/// [`MAX_DIMENSIONS`]), each metric (at most [`MAX_METRICS`]) a number or an array of at most
/// [`MAX_VALUES`] numbers at the root, with a unit.
pub fn check(doc: &Value) -> Result<(), String> {
    let meta = &doc["_aws"];
    meta["Timestamp"].as_i64().ok_or("_aws.Timestamp is not a whole number of milliseconds")?;
    let directives = meta["CloudWatchMetrics"].as_array().ok_or("no CloudWatchMetrics array")?;
    if directives.is_empty() {
        return Err("CloudWatchMetrics is empty".into());
    }
    for directive in directives {
        if directive["Namespace"].as_str().is_none_or(str::is_empty) {
            return Err("a directive has no Namespace".into());
        }
        let sets = directive["Dimensions"].as_array().ok_or("a directive has no Dimensions")?;
        for set in sets {
            let names = set.as_array().ok_or("a dimension set is not an array")?;
            if names.len() > MAX_DIMENSIONS {
                return Err(format!("{} dimensions in one set", names.len()));
            }
            for name in names {
                let name = name.as_str().ok_or("a dimension name is not a string")?;
                if doc[name].as_str().is_none_or(|v| v.trim().is_empty()) {
                    return Err(format!("dimension {name} has no string value at the root"));
                }
            }
        }
        let metrics = directive["Metrics"].as_array().ok_or("a directive has no Metrics")?;
        if metrics.len() > MAX_METRICS {
            return Err(format!("{} metrics in one directive", metrics.len()));
        }
        for metric in metrics {
            let name = metric["Name"].as_str().ok_or("a metric has no Name")?;
            metric["Unit"].as_str().ok_or(format!("metric {name} has no Unit"))?;
            let values = match &doc[name] {
                Value::Number(_) => 1,
                Value::Array(values) if values.iter().all(Value::is_number) => values.len(),
                _ => return Err(format!("metric {name} has no numeric value at the root")),
            };
            if values > MAX_VALUES {
                return Err(format!("metric {name} has {values} values"));
            }
        }
    }
    Ok(())
}

/// The values `docs` give metric `name` under exactly the dimensions `dims` (name, value),
/// in order; an array's values one by one.
pub fn values(docs: &[Value], name: &str, dims: &[(&str, &str)]) -> Vec<f64> {
    let mut found = Vec::new();
    for doc in docs {
        let directives = doc["_aws"]["CloudWatchMetrics"].as_array().into_iter().flatten();
        let keyed = directives.filter(|d| has_metric(d, name)).any(|d| has_set(doc, d, dims));
        if !keyed {
            continue;
        }
        match &doc[name] {
            Value::Array(values) => found.extend(values.iter().filter_map(Value::as_f64)),
            value => found.extend(value.as_f64()),
        }
    }
    found
}

/// The sum of [`values`] (what CloudWatch's `Sum` statistic would show).
pub fn sum(docs: &[Value], name: &str, dims: &[(&str, &str)]) -> f64 {
    values(docs, name, dims).iter().sum()
}

/// The unit every document declares for metric `name`; panics when two disagree.
pub fn unit(docs: &[Value], name: &str) -> Option<String> {
    let mut units = docs
        .iter()
        .flat_map(|doc| doc["_aws"]["CloudWatchMetrics"].as_array().cloned().unwrap_or_default())
        .flat_map(|d| d["Metrics"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["Name"] == name)
        .filter_map(|m| m["Unit"].as_str().map(str::to_owned))
        .collect::<Vec<_>>();
    units.dedup();
    assert!(units.len() <= 1, "metric {name} is declared in different units: {units:?}");
    units.pop()
}

fn has_metric(directive: &Value, name: &str) -> bool {
    directive["Metrics"].as_array().is_some_and(|m| m.iter().any(|m| m["Name"] == name))
}

/// Whether one of the directive's dimension sets is exactly `dims`' names, with their values.
fn has_set(doc: &Value, directive: &Value, dims: &[(&str, &str)]) -> bool {
    let sets = directive["Dimensions"].as_array().into_iter().flatten();
    sets.filter_map(Value::as_array).any(|set| {
        set.len() == dims.len()
            && dims.iter().all(|(n, v)| set.iter().any(|s| s == n) && doc[*n] == *v)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Value {
        json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "AmiWarden",
            "Dimensions": [["Function", "Severity"], ["Function"]],
            "Metrics": [{"Name": "ExposuresFound", "Unit": "Count"}]}]},
            "Function": "g", "Severity": "CRITICAL", "ExposuresFound": 2})
    }

    #[test]
    fn a_metric_is_found_under_each_of_its_sets_and_no_other() {
        let logs = format!("{{\"level\":\"INFO\"}}\n{}\nnot json\n", doc());
        let docs = documents(&logs);
        assert_eq!(docs.len(), 1);
        let both = [("Function", "g"), ("Severity", "CRITICAL")];
        assert_eq!(values(&docs, "ExposuresFound", &both), vec![2.0]);
        assert_eq!(sum(&docs, "ExposuresFound", &[("Function", "g")]), 2.0);
        assert!(values(&docs, "ExposuresFound", &[("Severity", "CRITICAL")]).is_empty());
        assert!(values(&docs, "ExposuresFound", &[("Function", "other")]).is_empty());
        assert_eq!(unit(&docs, "ExposuresFound").as_deref(), Some("Count"));
    }

    #[test]
    fn a_line_cloudwatch_would_drop_is_refused() {
        let mut missing_value = doc();
        missing_value["ExposuresFound"] = json!("two");
        assert!(check(&missing_value).is_err());
        let mut missing_dimension = doc();
        missing_dimension.as_object_mut().unwrap().remove("Severity");
        assert!(check(&missing_dimension).is_err());
        assert_eq!(check(&doc()), Ok(()));
    }
}
