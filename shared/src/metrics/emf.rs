//! CloudWatch's embedded metric format (EMF): one JSON object per log line, from which
//! CloudWatch Logs extracts metrics. [`Document`] builds one and checks it against the
//! specification ("Specification: Embedded metric format", Amazon CloudWatch User Guide); it
//! writes nothing (that is [`super::Sink`]'s job) and knows no metric of AMI Warden's.
//!
//! A document's root holds the metadata `_aws` (a timestamp and one metric directive: the
//! namespace, the dimension sets, each metric's name and unit), then every dimension's value
//! (a string), every metric's value (a number, or an array of at most 100), and any other field
//! (kept in the log, searchable with Logs Insights, never a metric):
//!
//! ```json
//! {"_aws": {"Timestamp": 1767225600000, "CloudWatchMetrics": [{"Namespace": "AmiWarden",
//!   "Dimensions": [["Function", "Severity"], ["Function"]],
//!   "Metrics": [{"Name": "ExposuresFound", "Unit": "Count"}]}]},
//!  "Function": "exposure-guard", "Severity": "CRITICAL", "ExposuresFound": 1}
//! ```

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use thiserror::Error;

/// Metrics one directive takes at most.
pub const MAX_METRICS: usize = 100;
/// Dimensions one dimension set takes at most.
pub const MAX_DIMENSIONS: usize = 30;
/// Values one metric takes at most in one document.
pub const MAX_VALUES: usize = 100;

/// The units AMI Warden's metrics are in (CloudWatch's names for them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Gigabytes,
    /// A figure CloudWatch has no unit for (dollars).
    None,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Gigabytes => "Gigabytes",
            Self::None => "None",
        }
    }
}

/// Why a document breaks the specification; CloudWatch would drop it, or extract no metric.
#[derive(Debug, Error, PartialEq)]
pub enum EmfError {
    #[error("an EMF document takes at most {MAX_METRICS} metrics; this one has {0}")]
    TooManyMetrics(usize),
    #[error("a dimension set takes at most {MAX_DIMENSIONS} dimensions; this one has {0}")]
    TooManyDimensions(usize),
    #[error("metric {name} has {count} values; an EMF document takes at most {MAX_VALUES}")]
    TooManyValues { name: String, count: usize },
    #[error("metric {0} has a value that is not a finite number")]
    NotFinite(String),
    #[error("{0:?} is given twice at the document's root: each metric, dimension and field needs a name of its own")]
    NameTaken(String),
    #[error("{0:?} cannot be a name: names are 1 to 255 characters and `_aws` is the metadata's")]
    BadName(String),
    #[error("dimension {name} = {value:?}: a dimension's value must be 1 to 1024 ASCII characters, not only whitespace, with no control character")]
    BadDimensionValue { name: String, value: String },
    #[error("a dimension set names {0}, which the document gives no value")]
    UnknownDimension(String),
    #[error("a document with no metric makes no metric")]
    NoMetrics,
}

/// One EMF document under construction. Metrics come out in the order first given; a metric
/// given twice gets both values (an array), as EMF allows.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    namespace: String,
    at: DateTime<Utc>,
    dimensions: Vec<(String, String)>,
    dimension_sets: Vec<Vec<String>>,
    metrics: Vec<(String, Unit, Vec<f64>)>,
    fields: Vec<(String, Value)>,
}

impl Document {
    /// An empty document of `namespace`, its metrics taken at `at`.
    pub fn new(namespace: &str, at: DateTime<Utc>) -> Self {
        Self {
            namespace: namespace.to_owned(),
            at,
            dimensions: Vec::new(),
            dimension_sets: Vec::new(),
            metrics: Vec::new(),
            fields: Vec::new(),
        }
    }

    /// Gives dimension `name` its `value`. Without [`Self::dimension_set`], the metrics are
    /// kept under one set of every dimension given.
    pub fn dimension(mut self, name: &str, value: &str) -> Self {
        self.dimensions.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Also keeps each metric under the dimensions `names` (each set is a metric of its own,
    /// paid for as one).
    pub fn dimension_set(mut self, names: &[&str]) -> Self {
        self.dimension_sets.push(names.iter().map(|n| (*n).to_owned()).collect());
        self
    }

    /// Adds `value` to metric `name` in `unit`.
    pub fn metric(mut self, name: &str, unit: Unit, value: f64) -> Self {
        match self.metrics.iter_mut().find(|(n, _, _)| n == name) {
            Some((_, _, values)) => values.push(value),
            None => self.metrics.push((name.to_owned(), unit, vec![value])),
        }
        self
    }

    /// A field of the log line that is no metric (an account, a region, a run).
    pub fn field(mut self, name: &str, value: Value) -> Self {
        self.fields.push((name.to_owned(), value));
        self
    }

    /// The document as one JSON object, or why CloudWatch would not take it.
    pub fn to_json(&self) -> Result<Value, EmfError> {
        self.check()?;
        let mut root = Map::new();
        let sets = if self.dimension_sets.is_empty() {
            vec![self.dimensions.iter().map(|(n, _)| n.clone()).collect()]
        } else {
            self.dimension_sets.clone()
        };
        let definitions: Vec<Value> = self
            .metrics
            .iter()
            .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
            .collect();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": self.at.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": sets,
                    "Metrics": definitions,
                }],
            }),
        );
        for (name, value) in &self.dimensions {
            root.insert(name.clone(), Value::String(value.clone()));
        }
        for (name, _, values) in &self.metrics {
            let value = match values.as_slice() {
                [one] => number(*one),
                many => Value::Array(many.iter().copied().map(number).collect()),
            };
            root.insert(name.clone(), value);
        }
        for (name, value) in &self.fields {
            root.insert(name.clone(), value.clone());
        }
        Ok(Value::Object(root))
    }

    fn check(&self) -> Result<(), EmfError> {
        if self.metrics.is_empty() {
            return Err(EmfError::NoMetrics);
        }
        if self.metrics.len() > MAX_METRICS {
            return Err(EmfError::TooManyMetrics(self.metrics.len()));
        }
        let names = self
            .dimensions
            .iter()
            .map(|(n, _)| n)
            .chain(self.metrics.iter().map(|(n, _, _)| n))
            .chain(self.fields.iter().map(|(n, _)| n));
        let mut seen = std::collections::BTreeSet::new();
        for name in names {
            if name.is_empty() || name.chars().count() > 255 || name == "_aws" {
                return Err(EmfError::BadName(name.clone()));
            }
            if !seen.insert(name) {
                return Err(EmfError::NameTaken(name.clone()));
            }
        }
        for (name, value) in &self.dimensions {
            let usable = !value.trim().is_empty()
                && value.len() <= 1024
                && value.chars().all(|c| c.is_ascii() && !c.is_ascii_control());
            if !usable {
                return Err(EmfError::BadDimensionValue {
                    name: name.clone(),
                    value: value.clone(),
                });
            }
        }
        for set in &self.dimension_sets {
            if set.len() > MAX_DIMENSIONS {
                return Err(EmfError::TooManyDimensions(set.len()));
            }
            if let Some(unknown) =
                set.iter().find(|n| !self.dimensions.iter().any(|(d, _)| d == *n))
            {
                return Err(EmfError::UnknownDimension(unknown.clone()));
            }
        }
        if self.dimension_sets.is_empty() && self.dimensions.len() > MAX_DIMENSIONS {
            return Err(EmfError::TooManyDimensions(self.dimensions.len()));
        }
        for (name, _, values) in &self.metrics {
            if values.len() > MAX_VALUES {
                return Err(EmfError::TooManyValues { name: name.clone(), count: values.len() });
            }
            if values.iter().any(|v| !v.is_finite()) {
                return Err(EmfError::NotFinite(name.clone()));
            }
        }
        Ok(())
    }
}

/// A whole number as an integer (`3`, not `3.0`), anything else as it is.
fn number(value: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact
    if value.fract() == 0.0 && value.abs() < EXACT {
        json!(value as i64)
    } else {
        json!(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_document_has_the_metadata_then_dimensions_metrics_and_fields_at_its_root() {
        let doc = Document::new("AmiWarden", at())
            .dimension("Function", "exposure-guard")
            .dimension("Severity", "CRITICAL")
            .dimension_set(&["Function", "Severity"])
            .dimension_set(&["Function"])
            .metric("ExposuresFound", Unit::Count, 2.0)
            .metric("GiBReclaimed", Unit::Gigabytes, 1.5)
            .field("Account", json!("123456789012"));
        let expected = json!({
            "_aws": {"Timestamp": 1_767_225_600_000_i64, "CloudWatchMetrics": [{
                "Namespace": "AmiWarden",
                "Dimensions": [["Function", "Severity"], ["Function"]],
                "Metrics": [{"Name": "ExposuresFound", "Unit": "Count"},
                            {"Name": "GiBReclaimed", "Unit": "Gigabytes"}]}]},
            "Function": "exposure-guard", "Severity": "CRITICAL",
            "ExposuresFound": 2, "GiBReclaimed": 1.5, "Account": "123456789012"
        });
        assert_eq!(doc.to_json(), Ok(expected));
    }

    #[test]
    fn without_a_dimension_set_every_dimension_makes_one() {
        let doc = Document::new("AmiWarden", at())
            .dimension("Function", "f")
            .dimension("Job", "exposure")
            .metric("UnitsSwept", Unit::Count, 1.0);
        let json = doc.to_json().unwrap();
        assert_eq!(
            json["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function", "Job"]])
        );
    }

    #[test]
    fn a_metric_given_twice_keeps_both_values_as_an_array() {
        let doc = Document::new("AmiWarden", at()).metric("AwsRequests", Unit::Count, 3.0).metric(
            "AwsRequests",
            Unit::Count,
            4.0,
        );
        let json = doc.to_json().unwrap();
        assert_eq!(json["AwsRequests"], json!([3, 4]));
        assert_eq!(json["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn the_specifications_limits_are_refused_not_written() {
        let mut many = Document::new("AmiWarden", at());
        for i in 0..=MAX_METRICS {
            many = many.metric(&format!("M{i}"), Unit::Count, 1.0);
        }
        assert_eq!(many.to_json(), Err(EmfError::TooManyMetrics(101)));

        let mut wide = Document::new("AmiWarden", at()).metric("M", Unit::Count, 1.0);
        for i in 0..=MAX_DIMENSIONS {
            wide = wide.dimension(&format!("D{i}"), "v");
        }
        assert_eq!(wide.to_json(), Err(EmfError::TooManyDimensions(31)));

        let mut long = Document::new("AmiWarden", at());
        for _ in 0..=MAX_VALUES {
            long = long.metric("M", Unit::Count, 1.0);
        }
        assert!(matches!(long.to_json(), Err(EmfError::TooManyValues { count: 101, .. })));
    }

    #[test]
    fn a_name_is_used_once_at_the_root_and_never_as_the_metadata() {
        let clash = Document::new("AmiWarden", at()).dimension("Function", "f").metric(
            "Function",
            Unit::Count,
            1.0,
        );
        assert_eq!(clash.to_json(), Err(EmfError::NameTaken("Function".into())));
        let reserved = Document::new("AmiWarden", at()).metric("_aws", Unit::Count, 1.0);
        assert_eq!(reserved.to_json(), Err(EmfError::BadName("_aws".into())));
    }

    #[test]
    fn dimension_values_must_be_printable_ascii_and_sets_name_only_given_dimensions() {
        let empty = Document::new("AmiWarden", at()).dimension("Function", " ").metric(
            "M",
            Unit::Count,
            1.0,
        );
        assert!(matches!(empty.to_json(), Err(EmfError::BadDimensionValue { .. })));
        let unicode = Document::new("AmiWarden", at()).dimension("Function", "é").metric(
            "M",
            Unit::Count,
            1.0,
        );
        assert!(matches!(unicode.to_json(), Err(EmfError::BadDimensionValue { .. })));
        let unknown = Document::new("AmiWarden", at())
            .dimension("Function", "f")
            .dimension_set(&["Function", "Severity"])
            .metric("M", Unit::Count, 1.0);
        assert_eq!(unknown.to_json(), Err(EmfError::UnknownDimension("Severity".into())));
    }

    #[test]
    fn values_must_be_finite_and_a_document_needs_a_metric() {
        let nan = Document::new("AmiWarden", at()).metric("M", Unit::None, f64::NAN);
        assert_eq!(nan.to_json(), Err(EmfError::NotFinite("M".into())));
        assert_eq!(Document::new("AmiWarden", at()).to_json(), Err(EmfError::NoMetrics));
    }
}
