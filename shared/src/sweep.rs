//! Organization-scale sweeps, the domain side: a daily sweep is many units, one per (job,
//! account, region), each run on its own (a Step Functions Distributed Map child, or a task of
//! the CLI's `--organization --parallel N`), and one summary per job that names every unit
//! that failed or was not reached.
//!
//! Pure: [`plan`] lists the units, [`summarize`] adds up what came back, [`notification`] says
//! it. Running a unit is [`crate::handler`]'s job; reaching S3 and Step Functions is
//! [`crate::aws`]'s.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, Region};
use crate::notify::{Notification, Severity};

/// The three daily sweeps, in the order they run: the exposure sweep writes the share ledger
/// the deprecation sweep reads, and the reaper decides what the retirements left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Job {
    Exposure,
    Deprecation,
    Reaper,
}

impl Job {
    pub const ALL: [Job; 3] = [Job::Exposure, Job::Deprecation, Job::Reaper];

    pub fn as_str(self) -> &'static str {
        match self {
            Job::Exposure => "exposure",
            Job::Deprecation => "deprecation",
            Job::Reaper => "reaper",
        }
    }

    pub fn parse(raw: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|job| job.as_str() == raw)
    }

    /// What the job is called in notifications.
    pub fn title(self) -> &'static str {
        match self {
            Job::Exposure => "exposure sweep",
            Job::Deprecation => "deprecation sweep",
            Job::Reaper => "snapshot reaper sweep",
        }
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One unit of a sweep: one job in one account and region, in one run (the Step Functions
/// execution's name, or the CLI's run id).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Unit {
    pub job: Job,
    pub account: AccountId,
    pub region: Region,
    pub run: String,
}

impl Unit {
    /// How a unit is named to people: `deprecation 111122223333 eu-west-1`.
    pub fn name(&self) -> String {
        format!("{} {} {}", self.job, self.account, self.region)
    }

    /// The key of the unit's claim: a retried unit of the same run finds it.
    pub fn claim_key(&self) -> String {
        format!("unit:{}:{}:{}:{}", self.run, self.job, self.account, self.region)
    }
}

/// Every unit of `job` in `run`: each account in each region, accounts in the order given.
pub fn plan(job: Job, run: &str, accounts: &[AccountId], regions: &[Region]) -> Vec<Unit> {
    accounts
        .iter()
        .flat_map(|account| {
            regions.iter().map(move |region| Unit {
                job,
                account: account.clone(),
                region: region.clone(),
                run: run.to_owned(),
            })
        })
        .collect()
}

/// The figures one unit came to, the same four for every job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    /// What the job looks for: exposures found, images due to retire, orphaned snapshots.
    pub findings: u64,
    /// What it changed: images deregistered, snapshots deleted (0 in report mode).
    pub acted: u64,
    /// Actions left for the next run when the time budget ran out.
    pub left: u64,
    /// Lookups or actions that failed inside the unit (the unit itself succeeded).
    pub errors: u64,
}

/// What a unit that ran came to: its figures, a one-line summary, and the worst severity it
/// found (an exposure sweep's CRITICAL for a public image).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnitReport {
    pub unit: Unit,
    pub figures: Figures,
    pub severity: Severity,
    pub summary: String,
    /// One line per finding worth naming, at most [`DETAILS_PER_UNIT`].
    #[serde(default)]
    pub details: Vec<String>,
}

/// How many finding lines a unit reports (a Map child's answer must stay small).
pub const DETAILS_PER_UNIT: usize = 25;
/// How many finding lines a job's summary names; the rest are in each unit's report.
pub const DETAILS_PER_SUMMARY: usize = 60;

/// At most [`DETAILS_PER_UNIT`] of `lines`, the last saying how many more there were.
pub fn capped(mut lines: Vec<String>) -> Vec<String> {
    if lines.len() > DETAILS_PER_UNIT {
        let more = lines.len() - (DETAILS_PER_UNIT - 1);
        lines.truncate(DETAILS_PER_UNIT - 1);
        lines.push(format!("… and {more} more"));
    }
    lines
}

/// A unit that did not complete, and why (a member role that cannot be assumed, an AWS error
/// after the retries, a Lambda timeout).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailedUnit {
    pub unit: Unit,
    pub cause: String,
}

/// One job's summary: what was planned, what ran, what failed and what was never reached.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobSummary {
    pub job: Job,
    pub run: String,
    pub planned: usize,
    pub done: Vec<UnitReport>,
    pub failed: Vec<FailedUnit>,
    pub not_reached: Vec<Unit>,
    pub totals: Figures,
}

/// Adds up the units that came back against the plan: a planned unit with neither a report
/// nor a failure was not reached. A unit reported twice (a retry after a lost response)
/// counts once, its report winning over a failure.
pub fn summarize(
    job: Job,
    run: &str,
    planned: &[Unit],
    done: Vec<UnitReport>,
    failed: Vec<FailedUnit>,
) -> JobSummary {
    let mut reports: BTreeMap<Unit, UnitReport> = BTreeMap::new();
    for report in done {
        reports.entry(report.unit.clone()).or_insert(report);
    }
    let mut failures: BTreeMap<Unit, FailedUnit> = BTreeMap::new();
    for failure in failed.into_iter().filter(|f| !reports.contains_key(&f.unit)) {
        failures.entry(failure.unit.clone()).or_insert(failure);
    }
    let seen: BTreeSet<&Unit> = reports.keys().chain(failures.keys()).collect();
    let not_reached = planned.iter().filter(|u| !seen.contains(u)).cloned().collect();
    let done: Vec<UnitReport> = reports.into_values().collect();
    let totals = done.iter().fold(Figures::default(), |t, r| Figures {
        findings: t.findings + r.figures.findings,
        acted: t.acted + r.figures.acted,
        left: t.left + r.figures.left,
        errors: t.errors + r.figures.errors,
    });
    let failed = failures.into_values().collect();
    JobSummary {
        job,
        run: run.to_owned(),
        planned: planned.len(),
        done,
        failed,
        not_reached,
        totals,
    }
}

impl JobSummary {
    /// Whether every planned unit ran to the end.
    pub fn complete(&self) -> bool {
        self.failed.is_empty() && self.not_reached.is_empty()
    }

    /// The accounts with the most findings (then errors), at most `n`, with their figures.
    pub fn worst_accounts(&self, n: usize) -> Vec<(AccountId, Figures)> {
        let mut by_account: BTreeMap<&AccountId, Figures> = BTreeMap::new();
        for report in &self.done {
            let f = by_account.entry(&report.unit.account).or_default();
            f.findings += report.figures.findings;
            f.acted += report.figures.acted;
            f.left += report.figures.left;
            f.errors += report.figures.errors;
        }
        let mut ranked: Vec<(AccountId, Figures)> =
            by_account.into_iter().map(|(a, f)| (a.clone(), f)).collect();
        ranked.sort_by(|(a, x), (b, y)| {
            (y.findings, y.errors).cmp(&(x.findings, x.errors)).then_with(|| a.cmp(b))
        });
        ranked.retain(|(_, f)| f.findings + f.errors > 0);
        ranked.truncate(n);
        ranked
    }

    /// The worst severity: a unit's own, or WARNING when a unit failed or was not reached.
    pub fn severity(&self) -> Severity {
        let found = self.done.iter().map(|r| r.severity).max().unwrap_or(Severity::Info);
        if self.complete() {
            found
        } else {
            found.max(Severity::Warning)
        }
    }
}

/// How many accounts the summary names among the worst.
pub const WORST_ACCOUNTS: usize = 5;

/// The one notification of a job's run: counts, the worst accounts, and every unit that failed
/// or was not reached, by name and cause. `detail` links to where each unit's full report is.
pub fn notification(summary: &JobSummary, detail: Option<&str>) -> Notification {
    let t = &summary.totals;
    let missing = summary.failed.len() + summary.not_reached.len();
    let coverage = if missing == 0 {
        format!("all {} units", summary.planned)
    } else {
        format!("{} of {} units ({missing} not covered)", summary.done.len(), summary.planned)
    };
    let subject = format!(
        "{}: {} finding(s), {} acted on, {coverage}",
        summary.job.title(),
        t.findings,
        t.acted
    );
    let mut n = Notification::new(summary.severity(), &format!("{}-summary", summary.job), subject)
        .field("Run", summary.run.clone())
        .field(
            "Units",
            format!(
                "{} done, {} failed, {} not reached",
                summary.done.len(),
                summary.failed.len(),
                summary.not_reached.len()
            ),
        )
        .field("Findings", t.findings.to_string())
        .field("Acted on", t.acted.to_string())
        .field("Left for the next run", t.left.to_string())
        .field("Errors inside units", t.errors.to_string())
        .text(summary_text(summary));
    if let Some(url) = detail {
        n = n.link("Every unit's report", url);
    }
    n.details = serde_json::json!({
        "run": summary.run, "job": summary.job, "planned": summary.planned,
        "failed": summary.failed, "not_reached": summary.not_reached, "totals": summary.totals,
    });
    n
}

fn summary_text(summary: &JobSummary) -> String {
    let mut text = String::new();
    let worst = summary.worst_accounts(WORST_ACCOUNTS);
    if !worst.is_empty() {
        text.push_str("Accounts with the most findings:\n");
        for (account, f) in &worst {
            text.push_str(&format!(
                "- {account}: {} finding(s), {} acted on, {} error(s)\n",
                f.findings, f.acted, f.errors
            ));
        }
    }
    let details: Vec<String> = summary
        .done
        .iter()
        .flat_map(|r| {
            r.details.iter().map(move |d| format!("- {} {}: {d}", r.unit.account, r.unit.region))
        })
        .collect();
    if !details.is_empty() {
        text.push_str("\nWhat the units found:\n");
        for line in details.iter().take(DETAILS_PER_SUMMARY) {
            text.push_str(line);
            text.push('\n');
        }
        if details.len() > DETAILS_PER_SUMMARY {
            let more = details.len() - DETAILS_PER_SUMMARY;
            text.push_str(&format!("… and {more} more, in each unit's report\n"));
        }
    }
    if !summary.failed.is_empty() {
        text.push_str("\nUnits that failed (nothing after the failure was done there):\n");
        for f in &summary.failed {
            text.push_str(&format!("- {}: {}\n", f.unit.name(), f.cause));
        }
    }
    if !summary.not_reached.is_empty() {
        text.push_str("\nUnits not reached (the run stopped before them):\n");
        for u in &summary.not_reached {
            text.push_str(&format!("- {}\n", u.name()));
        }
    }
    if summary.complete() && worst.is_empty() {
        text.push_str("Every unit ran; nothing was found.\n");
    }
    text
}

/// The units a Distributed Map Run's result files speak of: the rows of its `SUCCEEDED`,
/// `FAILED` and `PENDING` files (each a JSON array, as `ResultWriter` writes them: `Input` and
/// `Output` are JSON strings, a failed row has `Error` and `Cause`). A succeeded row's output is
/// the unit's report; a pending one never started (not reached); any other status is a failed
/// unit with its cause. A row whose input is
/// not a unit is skipped (it names no unit to report).
pub fn map_run_results(rows: &[serde_json::Value]) -> (Vec<UnitReport>, Vec<FailedUnit>) {
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    for row in rows {
        let input: Option<serde_json::Value> =
            row["Input"].as_str().and_then(|i| serde_json::from_str(i).ok());
        let Some(Ok(unit)) = input
            .as_ref()
            .and_then(|i| i.get("unit").map(|u| serde_json::from_value::<Unit>(u.clone())))
        else {
            continue;
        };
        let status = row["Status"].as_str().unwrap_or("UNKNOWN");
        if status == "PENDING" {
            // Never started: left out, so the summary counts it as not reached.
            continue;
        }
        let output =
            row["Output"].as_str().and_then(|o| serde_json::from_str::<UnitReport>(o).ok());
        match (status, output) {
            ("SUCCEEDED", Some(report)) => done.push(report),
            ("SUCCEEDED", None) => failed
                .push(FailedUnit { unit, cause: "succeeded, but its report is unreadable".into() }),
            _ => failed.push(FailedUnit { unit, cause: failure_cause(status, row) }),
        }
    }
    (done, failed)
}

/// `FAILED: Lambda.Unknown: <the function's error message>`: a Lambda error's `Cause` is its
/// JSON error object, whose message says what went wrong.
fn failure_cause(status: &str, row: &serde_json::Value) -> String {
    let error = row["Error"].as_str().unwrap_or("no error name");
    let cause = row["Cause"].as_str().unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(cause)
        .ok()
        .and_then(|c| c["errorMessage"].as_str().map(str::to_owned))
        .unwrap_or_else(|| cause.to_owned());
    if message.is_empty() {
        format!("{status}: {error}")
    } else {
        format!("{status}: {error}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(n: u64) -> AccountId {
        AccountId::parse(&format!("{n:012}")).unwrap()
    }

    fn regions() -> Vec<Region> {
        ["us-east-1", "eu-west-1"].iter().map(|r| Region::parse(r).unwrap()).collect()
    }

    fn report(unit: &Unit, findings: u64, errors: u64) -> UnitReport {
        UnitReport {
            unit: unit.clone(),
            figures: Figures { findings, acted: 0, left: 0, errors },
            severity: if findings > 0 { Severity::Warning } else { Severity::Info },
            summary: String::new(),
            details: (0..findings).map(|n| format!("finding {n}")).collect(),
        }
    }

    #[test]
    fn the_plan_is_every_account_in_every_region() {
        let units = plan(Job::Reaper, "run-1", &[account(1), account(2)], &regions());
        let names: Vec<String> = units.iter().map(Unit::name).collect();
        assert_eq!(
            names,
            [
                "reaper 000000000001 us-east-1",
                "reaper 000000000001 eu-west-1",
                "reaper 000000000002 us-east-1",
                "reaper 000000000002 eu-west-1"
            ]
        );
        assert_eq!(units[3].claim_key(), "unit:run-1:reaper:000000000002:eu-west-1");
    }

    #[test]
    fn every_planned_unit_is_done_failed_or_not_reached_and_named() {
        let units = plan(Job::Exposure, "run-1", &[account(1), account(2), account(3)], &regions());
        let done = vec![report(&units[0], 2, 0), report(&units[1], 0, 1), report(&units[2], 5, 0)];
        let failed = vec![FailedUnit {
            unit: units[4].clone(),
            cause: "cannot assume arn:aws:iam::000000000003:role/AmiWardenMember".into(),
        }];
        let s = summarize(Job::Exposure, "run-1", &units, done, failed);
        assert_eq!((s.done.len(), s.failed.len(), s.not_reached.len()), (3, 1, 2));
        assert_eq!(s.totals.findings, 7);
        assert!(!s.complete());
        let n = notification(&s, Some("https://example/detail"));
        assert_eq!(n.severity, Severity::Warning);
        assert!(n.subject.contains("3 of 6 units (3 not covered)"), "{}", n.subject);
        assert!(n.text.contains("- exposure 000000000003 us-east-1: cannot assume"), "{}", n.text);
        assert!(n.text.contains("- exposure 000000000003 eu-west-1\n"), "{}", n.text);
        assert!(n.text.contains("- exposure 000000000002 eu-west-1\n"), "{}", n.text);
        assert!(
            n.text.contains("What the units found:\n- 000000000001 us-east-1: finding 0\n"),
            "{}",
            n.text
        );
        let worst: Vec<String> = s.worst_accounts(5).iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(worst, ["000000000002", "000000000001"], "most findings first");
    }

    #[test]
    fn a_retried_unit_counts_once_and_its_report_wins_over_its_earlier_failure() {
        let units = plan(Job::Deprecation, "run-1", &[account(1)], &regions()[..1]);
        let failed = vec![FailedUnit { unit: units[0].clone(), cause: "Lambda timed out".into() }];
        let done = vec![report(&units[0], 1, 0), report(&units[0], 1, 0)];
        let s = summarize(Job::Deprecation, "run-1", &units, done, failed);
        assert!(s.complete());
        assert_eq!(s.totals.findings, 1);
        assert_eq!(notification(&s, None).severity, Severity::Warning, "the finding's own");
    }

    #[test]
    fn map_run_result_rows_become_reports_and_failures_with_the_functions_message() {
        let units = plan(Job::Exposure, "exec-1", &[account(1)], &regions());
        let ok = report(&units[0], 1, 0);
        let input = |u: &Unit| serde_json::json!({"unit": u}).to_string();
        let rows = vec![
            serde_json::json!({
                "ExecutionArn": "arn:aws:states:us-east-1:123456789012:execution:s:1",
                "Input": input(&units[0]), "InputDetails": {"Included": true},
                "Name": "1", "Output": serde_json::to_string(&ok).unwrap(),
                "OutputDetails": {"Included": true}, "RedriveCount": 0,
                "StartDate": "2026-12-07T06:00:00.000Z", "StopDate": "2026-12-07T06:00:02.000Z",
                "Status": "SUCCEEDED"
            }),
            serde_json::json!({
                "ExecutionArn": "arn:aws:states:us-east-1:123456789012:execution:s:2",
                "Input": input(&units[1]), "InputDetails": {"Included": true}, "Name": "2",
                "Status": "FAILED", "Error": "Lambda.Unknown",
                "Cause": "{\"errorMessage\":\"cannot assume arn:aws:iam::000000000001:role/AmiWardenMember: AccessDenied\",\"errorType\":\"&alloc::boxed::Box<dyn core::error::Error + core::marker::Send + core::marker::Sync>\"}"
            }),
            serde_json::json!({"Input": "{\"not\": \"a unit\"}", "Status": "FAILED"}),
            serde_json::json!({"Input": input(&units[0]), "Status": "PENDING"}),
        ];
        let (done, failed) = map_run_results(&rows);
        assert_eq!(done, vec![ok]);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].unit, units[1]);
        assert_eq!(
            failed[0].cause,
            "FAILED: Lambda.Unknown: cannot assume arn:aws:iam::000000000001:role/AmiWardenMember: AccessDenied"
        );
    }

    #[test]
    fn a_clean_run_says_so() {
        let units = plan(Job::Reaper, "run-1", &[account(1)], &regions());
        let done = units.iter().map(|u| report(u, 0, 0)).collect();
        let n = notification(&summarize(Job::Reaper, "run-1", &units, done, vec![]), None);
        assert_eq!(n.severity, Severity::Info);
        assert!(n.subject.ends_with("all 2 units"), "{}", n.subject);
        assert!(n.text.contains("Every unit ran; nothing was found."), "{}", n.text);
    }
}
