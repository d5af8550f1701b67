//! Cross-account usage of a shared image, from EC2's image usage reports
//! (`RETIRE_SHARED_UNUSED`).
//!
//! An image shared with other accounts is kept by default: AMI Warden cannot see their
//! instances and launch templates. With the option on, it asks EC2 instead:
//! CreateImageUsageReport starts a report over the accounts the image is shared with (all
//! accounts when it is shared with an organization or OU, or with more than
//! [`MAX_LISTED_ACCOUNTS`]), covering every launch template version ([`TEMPLATE_VERSION_DEPTH`]),
//! a later sweep reads it (DescribeImageUsageReports, DescribeImageUsageReportEntries), and the
//! image goes only when a finished report of at most [`REPORT_MAX_AGE_DAYS`] days, covering
//! every grantee it has now, shows no use. Only the reports AMI Warden started count: their
//! [`SCOPE_TAG_KEY`] tag says which accounts they cover, and they were made with the full
//! template depth (a report someone else made may look at the newest 20 versions only).
//! Anything else keeps the image, saying why. A public image is always kept: nobody can tell
//! who launches it.
//!
//! Pure: the facts come from [`super::DeprecationEc2`]; the shell starts the reports.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::event::Grantee;
use crate::ids::AccountId;

/// A report older than this is stale: a fresh one is started.
pub const REPORT_MAX_AGE_DAYS: i64 = 7;

/// The resource types every report covers (what can launch the image in another account).
pub const RESOURCE_TYPES: [&str; 2] = ["ec2:Instance", "ec2:LaunchTemplate"];

/// The launch template versions a report looks at (`version-depth`, at most 10,000; AWS's
/// default is the newest 20): every version counts as a use.
pub const TEMPLATE_VERSION_DEPTH: u32 = 10_000;

/// The tag on the reports AMI Warden starts: `all`, or the accounts it covers, comma-separated.
pub const SCOPE_TAG_KEY: &str = "ami-warden:usage-scope";

/// Above this many accounts a report covers every account (the scope tag's value must fit in
/// EC2's 256 characters).
pub const MAX_LISTED_ACCOUNTS: usize = 18;

/// The scope tag's value for a report over `accounts` (`None`: every account).
pub fn scope_tag(accounts: Option<&[AccountId]>) -> String {
    match accounts {
        None => "all".into(),
        Some(list) => list.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(","),
    }
}

/// `ImageUsageReport.State`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportState {
    Available,
    Pending,
    /// The report could not be made (its `StateReason`).
    Error(String),
}

impl ReportState {
    pub fn parse(state: &str, reason: Option<&str>) -> Self {
        match state {
            "available" => Self::Available,
            "pending" => Self::Pending,
            other => Self::Error(reason.map_or_else(|| format!("state {other}"), str::to_owned)),
        }
    }
}

/// One image usage report, as DescribeImageUsageReports lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    pub id: String,
    pub state: ReportState,
    pub created: Option<DateTime<Utc>>,
    /// The accounts it covers, as EC2 lists them; empty: every account.
    pub accounts: Vec<String>,
    /// The resource types it covers (`ec2:Instance`, `ec2:LaunchTemplate`, …).
    pub resource_types: Vec<String>,
    /// Its [`SCOPE_TAG_KEY`] tag: only a report AMI Warden started has one.
    pub scope_tag: Option<String>,
}

/// One entry of a report: an account whose resources of one type reference the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageEntry {
    pub account: String,
    pub resource_type: String,
    pub count: i64,
}

/// The accounts a report must cover for `grantees`: `Ok(None)` for every account (an
/// organization or OU is shared with), `Ok(Some(ids))` for those accounts, `Err` when no
/// report can tell (a public image).
pub fn scope(grantees: &[Grantee]) -> Result<Option<Vec<AccountId>>, String> {
    let mut accounts = Vec::new();
    let mut everyone = false;
    for grantee in grantees {
        match grantee {
            Grantee::Public => return Err("public: nobody can tell who launches it".into()),
            Grantee::Account(id) => match AccountId::parse(id) {
                Some(account) => accounts.push(account),
                None => return Err(format!("shared with {id}, not an account id")),
            },
            Grantee::Organization(_) | Grantee::OrganizationalUnit(_) => everyone = true,
            // A grant of a kind not known here: nobody can say what a report must cover.
            Grantee::Group(g) => return Err(format!("shared with group {g}")),
            Grantee::Unreadable(g) => {
                return Err(format!("shared by a grant not understood ({g})"))
            }
        }
    }
    accounts.sort();
    accounts.dedup();
    Ok((!everyone && accounts.len() <= MAX_LISTED_ACCOUNTS).then_some(accounts))
}

/// Whether `report` is one AMI Warden started whose scope tag covers the accounts of `scope`,
/// over both resource types.
fn covers(report: &UsageReport, scope: &Option<Vec<AccountId>>) -> bool {
    let Some(tag) = report.scope_tag.as_deref() else { return false };
    let accounts = match scope {
        _ if tag == "all" => true,
        None => false,
        Some(needed) => needed.iter().all(|a| tag.split(',').any(|t| t == a.as_str())),
    };
    accounts && RESOURCE_TYPES.iter().all(|t| report.resource_types.iter().any(|r| r == t))
}

/// What to do about a shared image's usage, before any entry is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Read this finished report's entries.
    Read(UsageReport),
    /// A covering report is being made: wait for it.
    Wait(UsageReport),
    /// No covering report of the last [`REPORT_MAX_AGE_DAYS`] days: start one over `accounts`
    /// (`None`: every account).
    Start { accounts: Option<Vec<AccountId>>, why: String },
}

/// Chooses among the image's `reports`: the newest fresh, finished, covering one; else a
/// pending one to wait for; else start one.
pub fn next(reports: &[UsageReport], scope: &Option<Vec<AccountId>>, now: DateTime<Utc>) -> Next {
    let oldest = now - Duration::days(REPORT_MAX_AGE_DAYS);
    let mut fresh: Vec<&UsageReport> = reports
        .iter()
        .filter(|r| r.created.is_some_and(|c| c >= oldest && c <= now) && covers(r, scope))
        .collect();
    fresh.sort_by_key(|r| std::cmp::Reverse(r.created));
    if let Some(done) = fresh.iter().find(|r| r.state == ReportState::Available) {
        return Next::Read((*done).clone());
    }
    if let Some(pending) = fresh.iter().find(|r| r.state == ReportState::Pending) {
        return Next::Wait((*pending).clone());
    }
    let why = match fresh.first() {
        Some(UsageReport { id, state: ReportState::Error(reason), .. }) => {
            format!("usage report {id} failed ({reason})")
        }
        _ => format!("no usage report of the last {REPORT_MAX_AGE_DAYS} days covers its grantees"),
    };
    Next::Start { accounts: scope.clone(), why }
}

/// The uses a finished report's `entries` show, a line each (`444455556666: 2 ec2:Instance`);
/// empty when nothing references the image.
pub fn uses(entries: &[UsageEntry]) -> Vec<String> {
    let mut uses: Vec<String> = entries
        .iter()
        .filter(|e| e.count > 0)
        .map(|e| format!("{}: {} {}", e.account, e.count, e.resource_type))
        .collect();
    uses.sort();
    uses
}

/// The date a report shows, for messages.
pub fn day(report: &UsageReport) -> String {
    report.created.map_or_else(|| "?".into(), |c| c.format("%Y-%m-%d").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32) -> DateTime<Utc> {
        format!("2026-12-{day:02}T12:00:00Z").parse().unwrap()
    }

    fn report(id: &str, state: ReportState, day: u32, accounts: &[&str]) -> UsageReport {
        UsageReport {
            id: id.into(),
            state,
            created: Some(at(day)),
            accounts: accounts.iter().map(|a| a.to_string()).collect(),
            resource_types: RESOURCE_TYPES.iter().map(|t| t.to_string()).collect(),
            scope_tag: Some(if accounts.is_empty() { "all".into() } else { accounts.join(",") }),
        }
    }

    fn accounts(ids: &[&str]) -> Option<Vec<AccountId>> {
        Some(ids.iter().map(|a| AccountId::parse(a).unwrap()).collect())
    }

    #[test]
    fn a_public_image_has_no_scope_and_an_organization_needs_every_account() {
        assert!(scope(&[Grantee::Account("444455556666".into()), Grantee::Public]).is_err());
        let org = Grantee::Organization("arn:aws:organizations::1:organization/o-1".into());
        assert_eq!(scope(&[Grantee::Account("444455556666".into()), org]), Ok(None));
        let two =
            [Grantee::Account("777788889999".into()), Grantee::Account("444455556666".into())];
        assert_eq!(scope(&two), Ok(accounts(&["444455556666", "777788889999"])));
    }

    #[test]
    fn the_newest_fresh_finished_covering_report_is_read() {
        let scope = accounts(&["444455556666"]);
        let reports = [
            report("old", ReportState::Available, 1, &[]),
            report("other-account", ReportState::Available, 6, &["777788889999"]),
            report("fresh", ReportState::Available, 5, &["444455556666"]),
            report("older-fresh", ReportState::Available, 4, &[]),
        ];
        assert_eq!(next(&reports, &scope, at(10)), Next::Read(reports[2].clone()));
    }

    #[test]
    fn a_pending_report_is_waited_for_and_a_failed_or_stale_one_replaced() {
        let scope = accounts(&["444455556666"]);
        let pending = report("p", ReportState::Pending, 9, &[]);
        assert_eq!(next(std::slice::from_ref(&pending), &scope, at(10)), Next::Wait(pending));
        let failed = report("f", ReportState::Error("throttled".into()), 9, &[]);
        let Next::Start { accounts: scope_asked, why } = next(&[failed], &scope, at(10)) else {
            panic!()
        };
        assert_eq!(scope_asked, scope);
        assert!(why.contains("f failed (throttled)"), "{why}");
        let stale = report("s", ReportState::Available, 2, &[]);
        assert!(matches!(next(&[stale], &scope, at(10)), Next::Start { .. }));
    }

    #[test]
    fn an_account_report_does_not_cover_an_organization_share_nor_one_type_both() {
        let per_account = report("a", ReportState::Available, 9, &["444455556666"]);
        assert!(matches!(next(&[per_account], &None, at(10)), Next::Start { .. }));
        let mut instances_only = report("i", ReportState::Available, 9, &[]);
        instances_only.resource_types = vec!["ec2:Instance".into()];
        assert!(matches!(next(&[instances_only], &None, at(10)), Next::Start { .. }));
    }

    #[test]
    fn a_report_amiwarden_did_not_start_is_not_trusted_and_many_accounts_mean_all() {
        let mut theirs = report("theirs", ReportState::Available, 9, &[]);
        theirs.scope_tag = None;
        assert!(matches!(next(&[theirs], &None, at(10)), Next::Start { .. }));
        let many: Vec<Grantee> =
            (0..19).map(|i| Grantee::Account(format!("{:012}", 100_000_000_000u64 + i))).collect();
        assert_eq!(scope(&many), Ok(None));
        assert_eq!(scope_tag(None), "all");
    }

    #[test]
    fn uses_list_only_entries_that_reference_the_image() {
        let entry = |account: &str, count| UsageEntry {
            account: account.into(),
            resource_type: "ec2:Instance".into(),
            count,
        };
        assert!(uses(&[entry("444455556666", 0)]).is_empty());
        assert_eq!(uses(&[entry("444455556666", 2)]), ["444455556666: 2 ec2:Instance"]);
    }
}
