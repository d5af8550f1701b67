//! The one typed configuration, read from environment variables once at start.
//!
//! Every Lambda and the CLI use the same variable names (see the table in the README). Invalid
//! values fail at start with a message naming the variable and what it accepts; nothing here is
//! re-read per event. This module does not talk to AWS.

use std::collections::BTreeSet;

use thiserror::Error;

/// What a run may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Decide and report only (the default).
    Report,
    /// Also deregister and delete.
    Enforce,
}

impl Mode {
    /// `report` or `enforce`, as `MODE` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Report => "report",
            Self::Enforce => "enforce",
        }
    }
}

/// The member accounts a central deployment also acts in (organization mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Members {
    /// Only the deployment's own account (the default).
    None,
    /// These accounts.
    Accounts(Vec<crate::ids::AccountId>),
    /// Every active account of the organization (Organizations ListAccounts).
    Organization,
}

impl Members {
    /// Reads `MEMBER_ACCOUNTS`' value: empty, `organization`, or comma-separated account ids.
    pub fn parse(raw: Option<&str>) -> Result<Self, ConfigError> {
        let raw = raw.map(str::trim).unwrap_or_default();
        if raw.is_empty() {
            return Ok(Self::None);
        }
        if raw == "organization" {
            return Ok(Self::Organization);
        }
        let expected = "`organization` or a comma-separated list of 12-digit account ids";
        unique_items(raw, "MEMBER_ACCOUNTS", expected, crate::ids::AccountId::parse)
            .map(Self::Accounts)
    }
}

/// The comma-separated items of `raw`, each read with `parse`, in order, without repeats (empty
/// items skipped); the first that does not parse is `variable`'s error.
fn unique_items<T: PartialEq>(
    raw: &str,
    variable: &'static str,
    expected: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, ConfigError> {
    let mut items = Vec::new();
    for raw_item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let item = parse(raw_item).ok_or(ConfigError {
            variable,
            value: raw_item.into(),
            expected: expected.into(),
        })?;
        if !items.contains(&item) {
            items.push(item);
        }
    }
    Ok(items)
}

/// The member role's name when `MEMBER_ROLE_NAME` is not set (infra/organization.yaml's default).
pub const DEFAULT_MEMBER_ROLE: &str = "AmiWardenMember";

/// A configuration value that could not be accepted.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{variable}={value:?} is invalid: {expected}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub expected: String,
}

/// All settings, with the defaults of the brief.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub mode: Mode,
    pub deprecate_after_days: u32,
    pub grace_days: u32,
    pub keep_latest: u32,
    pub warn_days: u32,
    pub in_use_days: u32,
    pub min_age_days: u32,
    /// Days between the exposure sweep's full reads of every image's launch permissions
    /// (`EXPOSURE_FULL_READ_DAYS`, default 7; 0 or 1: every sweep reads them all).
    pub exposure_full_read_days: u32,
    /// Dollars per GB-month of EBS snapshot storage, for savings estimates.
    pub snapshot_price_per_gb_month: f64,
    pub exempt_tag_key: String,
    /// The tag naming an image's family (else: the name without its trailing date/version).
    pub family_tag_key: String,
    pub remediate_public: bool,
    /// `PROTECT_NEWEST`: deregistration protection on each family's newest `KEEP_LATEST`
    /// images (enforce mode only; report mode lists what it would do).
    pub protect_newest: bool,
    /// `RETIRE_SHARED_UNUSED`: an image shared with other accounts may be retired when a
    /// finished usage report of at most 7 days shows no use there (default false: kept).
    pub retire_shared_unused: bool,
    /// `APPROVED_BASES`: the bases every launched image should descend from (the launch
    /// guard); empty: only quarantine is checked.
    pub approved_bases: Vec<crate::provenance::Approved>,
    /// Also revert shares outside the allow-list (only with `remediate_public`).
    pub remediate_shares: bool,
    /// Also import the exposure guard's alerts and the exposure sweep's results into Security
    /// Hub as findings (`SECURITY_HUB_FINDINGS`, default false).
    pub security_hub_findings: bool,
    /// The lowest severity the Slack notifier posts.
    pub slack_min_severity: crate::notify::Severity,
    /// The topic a chat channel of Amazon Q Developer in chat applications reads
    /// (`CHAT_TOPIC_ARN`): each notification also goes there in its custom format. Unset: none.
    pub chat_topic_arn: Option<String>,
    /// The lowest severity published to the chat topic (`CHAT_MIN_SEVERITY`, default INFO).
    pub chat_min_severity: crate::notify::Severity,
    pub allowed_account_ids: BTreeSet<String>,
    pub allowed_org_arns: BTreeSet<String>,
    pub allowed_ou_arns: BTreeSet<String>,
    pub lineage_table: String,
    pub topic_arn: Option<String>,
    /// The S3 bucket organization sweeps keep their runs in (plans, results, summaries).
    pub sweep_bucket: Option<String>,
    pub slack_webhook_secret: Option<String>,
    /// Organization mode: the member accounts the sweeps also cover.
    pub members: Members,
    /// The role each member account grants the central deployment.
    pub member_role_name: String,
    /// Whether that role may act (`infra/organization.yaml` deployed with `AllowEnforce=true`):
    /// only then do enforce mode and remediation apply in member accounts (`MEMBER_ENFORCE`).
    pub member_enforce: bool,
    /// The regions the scheduled sweeps cover (`SWEEP_REGIONS`); empty: the function's own.
    pub sweep_regions: Vec<crate::ids::Region>,
    /// How EC2 requests are paced (`EC2_PACE`: AWS's token buckets by default); read by
    /// [`crate::aws::Clients::from_env`], checked here.
    pub ec2_pace: crate::aws::pace::Pace,
}

/// The table name used when `LINEAGE_TABLE` is not set (the local stack's name).
pub const DEFAULT_LINEAGE_TABLE: &str = "ami-warden-lineage";

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (a variable name → its value, if set). Empty values
    /// count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(lookup);
        // Read in a fixed order, so that of several invalid values the same one is reported.
        let mode = vars.mode()?;
        let remediate_public = vars.boolean("REMEDIATE_PUBLIC")?;
        let remediate_shares = vars.boolean("REMEDIATE_SHARES")?;
        let member_enforce = vars.boolean("MEMBER_ENFORCE")?;
        let security_hub_findings = vars.boolean("SECURITY_HUB_FINDINGS")?;
        let protect_newest = vars.boolean("PROTECT_NEWEST")?;
        let retire_shared_unused = vars.boolean("RETIRE_SHARED_UNUSED")?;
        let approved_bases = vars
            .list(
                "APPROVED_BASES",
                |item| crate::provenance::Approved::parse(item).is_some(),
                "ami-…@region, ami-… or owners (an alias such as amazon, or an account id)",
            )?
            .iter()
            .filter_map(|item| crate::provenance::Approved::parse(item))
            .collect();
        let slack_min_severity = vars.min_severity("SLACK_MIN_SEVERITY")?;
        let chat_topic_arn = vars.topic_arn("CHAT_TOPIC_ARN")?;
        let chat_min_severity = vars.min_severity("CHAT_MIN_SEVERITY")?;
        let keep_latest = vars.days("KEEP_LATEST", 3)?;
        let snapshot_price_per_gb_month = vars.snapshot_price()?;
        Ok(Self {
            mode,
            deprecate_after_days: vars.days("DEPRECATE_AFTER_DAYS", 90)?,
            grace_days: vars.days("GRACE_DAYS", 14)?,
            keep_latest,
            warn_days: vars.days("WARN_DAYS", 14)?,
            in_use_days: vars.days("IN_USE_DAYS", 30)?,
            min_age_days: vars.days("MIN_AGE_DAYS", 1)?,
            exposure_full_read_days: vars.days("EXPOSURE_FULL_READ_DAYS", 7)?,
            snapshot_price_per_gb_month,
            exempt_tag_key: vars.text_or("EXEMPT_TAG_KEY", "ami-warden:exempt"),
            family_tag_key: vars.text_or("FAMILY_TAG_KEY", "ami-warden:family"),
            remediate_public,
            protect_newest,
            retire_shared_unused,
            approved_bases,
            remediate_shares,
            security_hub_findings,
            slack_min_severity,
            chat_topic_arn,
            chat_min_severity,
            allowed_account_ids: vars.list(
                "ALLOWED_ACCOUNT_IDS",
                |s| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()),
                "12-digit account ids",
            )?,
            allowed_org_arns: vars.list(
                "ALLOWED_ORG_ARNS",
                |s| s.starts_with("arn:aws") && s.contains(":organization/"),
                "organization ARNs (arn:aws:organizations::…:organization/o-…)",
            )?,
            allowed_ou_arns: vars.list(
                "ALLOWED_OU_ARNS",
                |s| s.starts_with("arn:aws") && s.contains(":ou/"),
                "OU ARNs (arn:aws:organizations::…:ou/o-…/ou-…)",
            )?,
            lineage_table: vars.text_or("LINEAGE_TABLE", DEFAULT_LINEAGE_TABLE),
            topic_arn: vars.get("TOPIC_ARN"),
            sweep_bucket: vars.get("SWEEP_BUCKET"),
            slack_webhook_secret: vars.get("SLACK_WEBHOOK_SECRET"),
            members: Members::parse(vars.get("MEMBER_ACCOUNTS").as_deref())?,
            member_role_name: vars.member_role_name()?,
            member_enforce,
            sweep_regions: unique_items(
                &vars.get("SWEEP_REGIONS").unwrap_or_default(),
                "SWEEP_REGIONS",
                "a comma-separated list of region names",
                crate::ids::Region::parse,
            )?,
            ec2_pace: vars.ec2_pace()?,
        })
    }

    /// The regions a scheduled sweep covers: `SWEEP_REGIONS`, else the function's own region.
    pub fn regions_to_sweep(
        &self,
        home: Option<&crate::ids::Region>,
    ) -> Result<Vec<crate::ids::Region>, String> {
        match (self.sweep_regions.is_empty(), home) {
            (false, _) => Ok(self.sweep_regions.clone()),
            (true, Some(home)) => Ok(vec![home.clone()]),
            (true, None) => Err("no region to sweep: set SWEEP_REGIONS or AWS_REGION".into()),
        }
    }

    /// The settings that apply in member accounts: these, except that nothing is changed there
    /// (report mode, no remediation) unless `member_enforce` says the member role may act. A
    /// read-only member role would refuse every change, and fail each member event.
    pub fn in_members(&self) -> Config {
        if self.member_enforce {
            return self.clone();
        }
        self.report_only()
    }

    /// These settings with nothing changed anywhere: report mode, no remediation.
    pub fn report_only(&self) -> Config {
        Config {
            mode: Mode::Report,
            remediate_public: false,
            remediate_shares: false,
            ..self.clone()
        }
    }
}

/// The environment as [`Config::from_lookup`] reads it: one method per kind of value, each
/// returning the value or the error that names the variable and what it accepts.
struct Vars<F>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    /// The trimmed value of `name`; empty counts as unset.
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn text_or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.into())
    }

    fn ec2_pace(&self) -> Result<crate::aws::pace::Pace, ConfigError> {
        let value = self.get("EC2_PACE");
        crate::aws::pace::Pace::parse(value.as_deref()).map_err(|expected| ConfigError {
            variable: "EC2_PACE",
            value: value.unwrap_or_default(),
            expected,
        })
    }

    fn days(&self, name: &'static str, default: u32) -> Result<u32, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse::<u32>().ok().filter(|d| *d <= 36_500).ok_or(ConfigError {
                variable: name,
                value: v,
                expected: "a whole number of days from 0 to 36500".into(),
            }),
        }
    }

    fn mode(&self) -> Result<Mode, ConfigError> {
        match self.get("MODE").as_deref() {
            None | Some("report") => Ok(Mode::Report),
            Some("enforce") => Ok(Mode::Enforce),
            Some(other) => Err(ConfigError {
                variable: "MODE",
                value: other.into(),
                expected: "`report` or `enforce`".into(),
            }),
        }
    }

    fn boolean(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ConfigError {
                variable: name,
                value: other.into(),
                expected: "`true` or `false`".into(),
            }),
        }
    }

    /// A lowest severity to pass on (`INFO` when unset).
    fn min_severity(&self, name: &'static str) -> Result<crate::notify::Severity, ConfigError> {
        match self.get(name) {
            None => Ok(crate::notify::Severity::Info),
            Some(v) => crate::notify::Severity::parse(&v).ok_or(ConfigError {
                variable: name,
                value: v,
                expected: "INFO, RESOLVED, WARNING or CRITICAL".into(),
            }),
        }
    }

    /// A standard SNS topic's ARN, `arn:<partition>:sns:<region>:<account>:<name>`, when set:
    /// a name, a URL or a FIFO topic (publishing there needs a message group id) would only
    /// fail at the first publish, after the alert it was meant for.
    fn topic_arn(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        let parts: Vec<&str> = v.split(':').collect();
        let valid = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "sns"
            && crate::ids::Region::parse(parts[3]).is_some()
            && crate::ids::AccountId::parse(parts[4]).is_some()
            && !parts[5].is_empty()
            && parts[5].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            return Ok(Some(v));
        }
        Err(ConfigError {
            variable: name,
            value: v,
            expected: "a standard SNS topic's ARN (arn:aws:sns:REGION:ACCOUNT:NAME, not .fifo)"
                .into(),
        })
    }

    fn snapshot_price(&self) -> Result<f64, ConfigError> {
        match self.get("SNAPSHOT_PRICE_PER_GB_MONTH") {
            None => Ok(0.05),
            Some(v) => {
                v.parse::<f64>().ok().filter(|p| p.is_finite() && (0.0..=10.0).contains(p)).ok_or(
                    ConfigError {
                        variable: "SNAPSHOT_PRICE_PER_GB_MONTH",
                        value: v,
                        expected: "dollars per GB-month, a number from 0 to 10 (e.g. 0.05)".into(),
                    },
                )
            }
        }
    }

    /// The comma-separated items of `name` as a set (empty items skipped); the first item
    /// `valid` rejects is the error, `what` saying what the items should be.
    fn list(
        &self,
        name: &'static str,
        valid: fn(&str) -> bool,
        what: &str,
    ) -> Result<BTreeSet<String>, ConfigError> {
        let mut set = BTreeSet::new();
        for item in self.get(name).unwrap_or_default().split(',').map(str::trim) {
            if item.is_empty() {
                continue;
            }
            if !valid(item) {
                return Err(ConfigError {
                    variable: name,
                    value: item.into(),
                    expected: format!("a comma-separated list of {what}"),
                });
            }
            set.insert(item.to_owned());
        }
        Ok(set)
    }

    fn member_role_name(&self) -> Result<String, ConfigError> {
        match self.get("MEMBER_ROLE_NAME") {
            None => Ok(DEFAULT_MEMBER_ROLE.into()),
            Some(v)
                if v.len() <= 64
                    && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)) =>
            {
                Ok(v)
            }
            Some(v) => Err(ConfigError {
                variable: "MEMBER_ROLE_NAME",
                value: v,
                expected: "an IAM role name (letters, digits and +=,.@_-, at most 64)".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn the_sweeps_cover_the_listed_regions_else_the_functions_own() {
        let home = crate::ids::Region::parse("eu-west-1").unwrap();
        let names = |c: &Config| {
            c.regions_to_sweep(Some(&home))
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&config(&[]).unwrap()), ["eu-west-1"]);
        assert_eq!(
            names(&config(&[("SWEEP_REGIONS", " us-east-1, eu-central-1,us-east-1 ")]).unwrap()),
            ["us-east-1", "eu-central-1"]
        );
        assert!(config(&[("SWEEP_REGIONS", "us-east-1,Mars")]).is_err());
        assert!(config(&[]).unwrap().regions_to_sweep(None).is_err());
    }

    #[test]
    fn member_accounts_are_only_reported_on_unless_their_role_may_act() {
        let c = config(&[
            ("MODE", "enforce"),
            ("REMEDIATE_PUBLIC", "true"),
            ("REMEDIATE_SHARES", "true"),
        ])
        .unwrap();
        let members = c.in_members();
        assert_eq!(
            (members.mode, members.remediate_public, members.remediate_shares),
            (Mode::Report, false, false)
        );
        assert_eq!(
            Config { mode: c.mode, remediate_public: true, remediate_shares: true, ..members },
            c,
            "nothing else differs"
        );
        let c = config(&[
            ("MODE", "enforce"),
            ("REMEDIATE_PUBLIC", "true"),
            ("MEMBER_ENFORCE", "true"),
        ])
        .unwrap();
        assert_eq!(c.in_members(), c);
        assert!(config(&[("MEMBER_ENFORCE", "yes")]).is_err());
        let err = config(&[("EC2_PACE", "fast")]).unwrap_err();
        assert_eq!(err.variable, "EC2_PACE");
        assert_eq!(
            config(&[("EC2_PACE", "2")]).unwrap().ec2_pace,
            crate::aws::pace::Pace::Aws(2.0)
        );
    }

    #[test]
    fn defaults_are_the_briefs() {
        let c = config(&[]).unwrap();
        assert_eq!(c.mode, Mode::Report);
        assert_eq!(
            (c.deprecate_after_days, c.grace_days, c.keep_latest, c.warn_days),
            (90, 14, 3, 14)
        );
        assert_eq!((c.in_use_days, c.min_age_days), (30, 1));
        assert_eq!(c.exempt_tag_key, "ami-warden:exempt");
        assert!(!c.remediate_public && !c.remediate_shares);
        assert_eq!(c.slack_min_severity, crate::notify::Severity::Info);
        assert_eq!(c.lineage_table, DEFAULT_LINEAGE_TABLE);
        assert!(c.topic_arn.is_none());
    }

    #[test]
    fn invalid_values_name_the_variable_and_what_is_allowed() {
        let err = config(&[("MODE", "yolo")]).unwrap_err();
        assert_eq!(err.variable, "MODE");
        assert!(err.to_string().contains("`report` or `enforce`"), "{err}");
        let err = config(&[("GRACE_DAYS", "-1")]).unwrap_err();
        assert_eq!(err.variable, "GRACE_DAYS");
        let err = config(&[("ALLOWED_ACCOUNT_IDS", "123456789012, 42")]).unwrap_err();
        assert_eq!((err.variable, err.value.as_str()), ("ALLOWED_ACCOUNT_IDS", "42"));
        assert!(config(&[("REMEDIATE_PUBLIC", "yes")]).is_err());
        let err = config(&[("SLACK_MIN_SEVERITY", "loud")]).unwrap_err();
        assert_eq!(err.variable, "SLACK_MIN_SEVERITY");
        let err = config(&[("SNAPSHOT_PRICE_PER_GB_MONTH", "cheap")]).unwrap_err();
        assert_eq!(err.variable, "SNAPSHOT_PRICE_PER_GB_MONTH");
    }

    #[test]
    fn chat_is_off_unless_a_topic_arn_is_given_and_passes_everything_by_default() {
        let c = config(&[]).unwrap();
        assert_eq!((c.chat_topic_arn, c.chat_min_severity), (None, crate::notify::Severity::Info));
        let arn = "arn:aws:sns:eu-west-1:123456789012:ami-warden-chat";
        let c = config(&[("CHAT_TOPIC_ARN", arn), ("CHAT_MIN_SEVERITY", "warning")]).unwrap();
        assert_eq!(c.chat_topic_arn.as_deref(), Some(arn));
        assert_eq!(c.chat_min_severity, crate::notify::Severity::Warning);
        let fifo = "arn:aws-us-gov:sns:us-gov-west-1:123456789012:alerts.fifo";
        assert!(
            config(&[("CHAT_TOPIC_ARN", fifo)]).is_err(),
            "a FIFO topic: publishing would need a message group id"
        );
    }

    #[test]
    fn a_chat_topic_that_is_not_an_sns_topic_arn_is_refused_at_start() {
        for bad in [
            "ami-warden-chat",
            "https://sns.eu-west-1.amazonaws.com/x",
            "arn:aws:sqs:eu-west-1:123456789012:q",
            "arn:aws:sns:eu-west-1:42:chat",
        ] {
            let err = config(&[("CHAT_TOPIC_ARN", bad)]).unwrap_err();
            assert_eq!((err.variable, err.value.as_str()), ("CHAT_TOPIC_ARN", bad));
            assert!(err.to_string().contains("SNS topic's ARN (arn:aws:sns:"), "{err}");
        }
        let err = config(&[("CHAT_MIN_SEVERITY", "loud")]).unwrap_err();
        assert_eq!(err.variable, "CHAT_MIN_SEVERITY");
    }

    #[test]
    fn approved_bases_are_read_and_a_bad_one_is_named() {
        assert!(config(&[]).unwrap().approved_bases.is_empty());
        let c = config(&[("APPROVED_BASES", "ami-0123456789abcdef0@us-east-1, amazon")]).unwrap();
        assert_eq!(c.approved_bases.len(), 2);
        let err = config(&[("APPROVED_BASES", "ami-0123456789abcdef0@nowhere")]).unwrap_err();
        assert_eq!(err.variable, "APPROVED_BASES");
    }

    #[test]
    fn retire_shared_unused_is_off_unless_set_true() {
        assert!(!config(&[]).unwrap().retire_shared_unused);
        assert!(config(&[("RETIRE_SHARED_UNUSED", "true")]).unwrap().retire_shared_unused);
        assert_eq!(
            config(&[("RETIRE_SHARED_UNUSED", "1x")]).unwrap_err().variable,
            "RETIRE_SHARED_UNUSED"
        );
    }

    #[test]
    fn protect_newest_is_off_unless_set_true() {
        assert!(!config(&[]).unwrap().protect_newest);
        assert!(config(&[("PROTECT_NEWEST", "true")]).unwrap().protect_newest);
        let err = config(&[("PROTECT_NEWEST", "yes")]).unwrap_err();
        assert_eq!(err.variable, "PROTECT_NEWEST");
    }

    #[test]
    fn lists_are_trimmed_and_empty_items_skipped() {
        let c = config(&[
            ("ALLOWED_ACCOUNT_IDS", " 111122223333 ,,444455556666 "),
            ("MODE", "enforce"),
        ])
        .unwrap();
        assert_eq!(c.allowed_account_ids.len(), 2);
        assert_eq!(c.mode, Mode::Enforce);
    }
}
