//! AMI Warden's metrics: what the functions count, in the CloudWatch namespace `AmiWarden`, and
//! where the counts go.
//!
//! A handler counts into the [`Metrics`] its [`Invocation`](crate::handler::Invocation)
//! carries, reading the reports it already has; the dispatcher flushes them when the
//! invocation is done. In a Lambda they go to stdout as embedded metric format lines ([`emf`]),
//! which CloudWatch Logs turns into metrics: no API call, no permission beyond writing logs.
//! The CLI and the benchmarks run the same handlers with metrics off, so their output stays
//! theirs; tests keep the lines in memory.
//!
//! Every metric has one dimension, `Function` (the Lambda's name); a few are also split by one
//! more dimension of few values ([`Split`]: `Severity`, `Job`). Accounts and regions are
//! fields of the lines, never dimensions: a metric per account and region would cost more than
//! the rest of AMI Warden (docs/metrics.md). Not here: what a report amounts to (the handlers,
//! [`crate::handler`]), the dashboard and the alarms (`template.yaml`).

pub mod emf;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::Value;

pub use emf::{Document, EmfError, Unit};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "AmiWarden";
/// The dimension every metric has: the function's name.
pub const FUNCTION: &str = "Function";
/// The dimension exposures are split by: `CRITICAL` or `WARNING`.
pub const SEVERITY: &str = "Severity";
/// The dimension sweep units are split by: `exposure`, `deprecation` or `reaper`.
pub const JOB: &str = "Job";
/// The `Function` of lines written outside a Lambda (no `AWS_LAMBDA_FUNCTION_NAME`).
pub const SERVICE: &str = "ami-warden";

/// A metric, kept under the dimension `Function`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: Unit,
}

/// A metric split by one more dimension `by`, and kept under `Function` alone too (the total).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    pub metric: Metric,
    pub by: &'static str,
}

const fn count(name: &'static str) -> Metric {
    Metric { name, unit: Unit::Count }
}

const fn split(name: &'static str, by: &'static str) -> Split {
    Split { metric: count(name), by }
}

/// Exposures the guard alerted on as they happened (a share made public or outside the
/// allow-list, block public access turned off), by severity.
pub const EXPOSURES_FOUND: Split = split("ExposuresFound", SEVERITY);
/// Images and snapshots an exposure sweep found exposed, by severity: what is open now.
pub const EXPOSURES_OPEN: Split = split("ExposuresOpen", SEVERITY);
/// Public or unlisted grants the guard removed (`REMEDIATE_PUBLIC`).
pub const REMEDIATIONS: Metric = count("Remediations");
/// Deprecation deadlines set on images (enforce mode; report mode sets none).
pub const DEADLINES_STAMPED: Metric = count("DeadlinesStamped");
/// Images deregistered past their deadline and grace.
pub const IMAGES_RETIRED: Metric = count("ImagesRetired");
/// Orphaned snapshots deleted (into the Recycle Bin).
pub const SNAPSHOTS_DELETED: Metric = count("SnapshotsDeleted");
/// The size of the snapshots deleted.
pub const GIB_RECLAIMED: Metric = Metric { name: "GiBReclaimed", unit: Unit::Gigabytes };
/// What the snapshots deleted cost a month (`SNAPSHOT_PRICE_PER_GB_MONTH`), in dollars.
pub const DOLLARS_PER_MONTH_SAVED: Metric =
    Metric { name: "DollarsPerMonthSaved", unit: Unit::None };
/// Sweep units that ran, by job (one account and region each).
pub const UNITS_SWEPT: Split = split("UnitsSwept", JOB);
/// Sweep units that failed, by job.
pub const UNITS_FAILED: Split = split("UnitsFailed", JOB);
/// Sweep units planned that never reported, by job (a run stopped or timed out).
pub const UNITS_NOT_REACHED: Split = split("UnitsNotReached", JOB);
/// Images recorded as lineage nodes.
pub const LINEAGE_NODES_RECORDED: Metric = count("LineageNodesRecorded");
/// Parent→child edges recorded.
pub const LINEAGE_EDGES_RECORDED: Metric = count("LineageEdgesRecorded");
/// Events ignored because they were not what an EventBridge rule delivers (not JSON, not a
/// CloudTrail record, or a known call whose fields are missing or malformed).
pub const EVENTS_IGNORED_MALFORMED: Metric = count("EventsIgnoredMalformed");
/// AWS requests sent (every attempt, retries included).
pub const AWS_REQUESTS: Metric = count("AwsRequests");
/// AWS answers that were throttling errors.
pub const AWS_THROTTLES: Metric = count("AwsThrottles");

/// Every metric kept under `Function` alone.
pub const METRICS: [Metric; 11] = [
    REMEDIATIONS,
    DEADLINES_STAMPED,
    IMAGES_RETIRED,
    SNAPSHOTS_DELETED,
    GIB_RECLAIMED,
    DOLLARS_PER_MONTH_SAVED,
    LINEAGE_NODES_RECORDED,
    LINEAGE_EDGES_RECORDED,
    EVENTS_IGNORED_MALFORMED,
    AWS_REQUESTS,
    AWS_THROTTLES,
];

/// Every split metric.
pub const SPLITS: [Split; 5] =
    [EXPOSURES_FOUND, EXPOSURES_OPEN, UNITS_SWEPT, UNITS_FAILED, UNITS_NOT_REACHED];

/// Where flushed metrics go.
#[derive(Clone, Debug, Default)]
pub enum Sink {
    /// Nowhere (the CLI, the benchmarks): their output is theirs.
    #[default]
    Off,
    /// One EMF line each on stdout, as function `function` (a Lambda).
    Stdout { function: String },
    /// Kept, as function `function` (tests).
    Memory { function: String, lines: Arc<Mutex<Vec<Value>>> },
}

/// The dimension a group of counts is split by, and its value; `None`: `Function` only.
type Group = Option<(&'static str, String)>;

/// The counts one invocation made, by group, each metric once, in the order first counted;
/// and the fields of its lines.
#[derive(Debug, Default)]
struct Tally {
    groups: BTreeMap<Group, Vec<(Metric, f64)>>,
    fields: Vec<(String, Value)>,
}

impl Tally {
    fn add(&mut self, group: Group, metric: Metric, value: f64) {
        let counts = self.groups.entry(group).or_default();
        match counts.iter_mut().find(|(m, _)| *m == metric) {
            Some((_, total)) => *total += value,
            None => counts.push((metric, value)),
        }
    }
}

/// One invocation's metrics: counted by the handlers, flushed by the dispatcher. Clones share
/// the counts. An invocation at a time: a Lambda's process handles one at once.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    sink: Sink,
    tally: Arc<Mutex<Tally>>,
}

impl Metrics {
    /// Counted, never written.
    pub fn off() -> Self {
        Self::default()
    }

    /// A Lambda's: to stdout, as the function `AWS_LAMBDA_FUNCTION_NAME` names.
    pub fn lambda() -> Self {
        let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .ok()
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| SERVICE.to_owned());
        Self::to(Sink::Stdout { function })
    }

    /// Kept in memory as function `function`; [`Self::written`] reads them.
    pub fn in_memory(function: &str) -> Self {
        Self::to(Sink::Memory { function: function.to_owned(), lines: Arc::default() })
    }

    fn to(sink: Sink) -> Self {
        Self { sink, tally: Arc::default() }
    }

    /// Adds `value` to `metric`.
    pub fn add(&self, metric: Metric, value: f64) {
        self.tally().add(None, metric, value);
    }

    /// Adds `value` to `split` where its dimension is `by` (and to its total).
    pub fn add_split(&self, split: Split, by: &str, value: f64) {
        self.tally().add(Some((split.by, by.to_owned())), split.metric, value);
    }

    /// A field every line of the invocation carries (an account, a region): searchable in the
    /// logs, never a dimension. Given again, the last value stands.
    pub fn field(&self, name: &str, value: impl Into<Value>) {
        let mut tally = self.tally();
        tally.fields.retain(|(n, _)| n != name);
        tally.fields.push((name.to_owned(), value.into()));
    }

    /// Writes what was counted, one document per group, and starts afresh. Returns the
    /// documents written (none when off).
    pub fn flush(&self) -> Vec<Value> {
        let tally = std::mem::take(&mut *self.tally());
        let function = match &self.sink {
            Sink::Off => return Vec::new(),
            Sink::Stdout { function } | Sink::Memory { function, .. } => function,
        };
        let documents: Vec<Value> = tally
            .groups
            .iter()
            .filter_map(|(group, counts)| {
                let document = document(function, group, counts, &tally.fields);
                document
                    .to_json()
                    .inspect_err(|e| tracing::error!(error = %e, "metrics not written"))
                    .ok()
            })
            .collect();
        self.write(&documents);
        documents
    }

    /// The lines kept so far (a [`Self::in_memory`] sink's; none otherwise).
    pub fn written(&self) -> Vec<Value> {
        match &self.sink {
            Sink::Memory { lines, .. } => lines.lock().map(|l| l.clone()).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn write(&self, documents: &[Value]) {
        match &self.sink {
            Sink::Off => {}
            Sink::Stdout { .. } => {
                // One write per line under the lock: a log line of the same process cannot
                // land inside it, and CloudWatch reads each line as one log event.
                let mut out = std::io::stdout().lock();
                for document in documents {
                    if let Err(e) = writeln!(out, "{document}").and_then(|()| out.flush()) {
                        tracing::error!(error = %e, "metrics not written to stdout");
                    }
                }
            }
            Sink::Memory { lines, .. } => {
                lines.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(documents)
            }
        }
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The document of one group: `Function` (and the split's dimension, kept under both sets).
fn document(
    function: &str,
    group: &Group,
    counts: &[(Metric, f64)],
    fields: &[(String, Value)],
) -> Document {
    let mut document = Document::new(NAMESPACE, Utc::now()).dimension(FUNCTION, function);
    if let Some((by, value)) = group {
        document =
            document.dimension(by, value).dimension_set(&[FUNCTION, by]).dimension_set(&[FUNCTION]);
    }
    for (metric, value) in counts {
        document = document.metric(metric.name, metric.unit, *value);
    }
    for (name, value) in fields {
        document = document.field(name, value.clone());
    }
    document
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn counts_add_up_and_are_written_once_per_group_then_start_afresh() {
        let metrics = Metrics::in_memory("exposure-guard");
        metrics.add(AWS_REQUESTS, 2.0);
        metrics.add(AWS_REQUESTS, 3.0);
        metrics.add(REMEDIATIONS, 1.0);
        metrics.add_split(EXPOSURES_FOUND, "CRITICAL", 1.0);
        metrics.add_split(EXPOSURES_FOUND, "WARNING", 2.0);
        let lines = metrics.flush();
        assert_eq!(lines.len(), 3, "{lines:?}");
        let base = &lines[0];
        assert_eq!(
            (base["AwsRequests"].clone(), base["Remediations"].clone()),
            (json!(5), json!(1))
        );
        assert_eq!(base["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Function"]]));
        let critical = lines.iter().find(|l| l["Severity"] == "CRITICAL").unwrap();
        assert_eq!(critical["ExposuresFound"], json!(1));
        assert_eq!(
            critical["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function", "Severity"], ["Function"]])
        );
        assert_eq!(metrics.written(), lines);
        assert!(metrics.flush().is_empty(), "flushed counts are gone");
    }

    #[test]
    fn fields_go_on_every_line_and_never_become_dimensions() {
        let metrics = Metrics::in_memory("snapshot-reaper");
        metrics.field("Account", "123456789012");
        metrics.add(SNAPSHOTS_DELETED, 1.0);
        metrics.add_split(UNITS_SWEPT, "reaper", 1.0);
        for line in metrics.flush() {
            assert_eq!(line["Account"], "123456789012");
            let sets = line["_aws"]["CloudWatchMetrics"][0]["Dimensions"].to_string();
            assert!(!sets.contains("Account"), "{sets}");
        }
    }

    #[test]
    fn metrics_off_are_counted_but_never_written() {
        let metrics = Metrics::off();
        metrics.add(AWS_REQUESTS, 1.0);
        assert!(metrics.flush().is_empty());
        assert!(metrics.written().is_empty());
    }

    #[test]
    fn every_metric_has_a_name_of_its_own_and_fits_one_document() {
        let names: Vec<&str> =
            METRICS.iter().map(|m| m.name).chain(SPLITS.iter().map(|s| s.metric.name)).collect();
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert!(names.len() <= emf::MAX_METRICS);
        assert!(names.iter().all(|n| n.chars().next().is_some_and(char::is_uppercase)));
        let all = Metrics::in_memory("f");
        for metric in METRICS {
            all.add(metric, 1.0);
        }
        assert_eq!(
            all.flush()[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().len(),
            11
        );
    }
}
