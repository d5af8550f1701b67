//! Security Hub findings (ASFF) for exposures: what the guard alerted on and what the daily
//! sweep found, as findings on the account's default product (`SECURITY_HUB_FINDINGS`).
//!
//! Pure: an [`Observation`] (one exposure of one resource, open or ended) is made from a guard
//! alert ([`from_alert`]) or a sweep report ([`from_sweep`], [`resolved_by_sweep`]) and
//! rendered as an ASFF finding ([`to_asff`]). A finding's `Id` is the same for the same
//! account, region, resource and kind (`public` or `shared`) whatever reported it, so a repeated
//! alert updates its finding instead of adding another. An ended exposure is imported with
//! `RecordState: ARCHIVED`; since BatchImportFindings cannot change `Workflow` once a finding
//! exists, [`publish`] then sets the workflow to RESOLVED with BatchUpdateFindings. Security Hub
//! access goes through [`FindingsSink`] (SDK adapter: [`crate::aws::securityhub`]). Not for
//! guardrail alerts (block public access, Allowed AMIs): those are about settings, not resources.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use thiserror::Error;

use super::sweep::{SnapshotExposure, SweepReport};
use super::{describe_grantees, is_public, Resource};
use crate::event::Grantee;
use crate::ids::{AccountId, ImageId, ImageRef, Region, SnapshotId};
use crate::notify::{Notification, Severity};

/// The `GeneratorId` of every finding AMI Warden imports.
pub const GENERATOR_ID: &str = "ami-warden-exposure-guard";
/// Findings per BatchImportFindings (and BatchUpdateFindings) request: the API's limit.
pub const BATCH: usize = 100;
/// ASFF finding types: the documented namespaces "Software and Configuration Checks" and
/// "Effects".
pub const TYPES: [&str; 2] =
    ["Software and Configuration Checks/AWS Security Best Practices", "Effects/Data Exposure"];

/// Which exposure a finding is about: everyone (`group: all`) or someone outside the
/// allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExposureKind {
    Public,
    Shared,
}

impl ExposureKind {
    pub fn of(grantee: &Grantee) -> Self {
        if is_public(grantee) {
            Self::Public
        } else {
            Self::Shared
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Shared => "shared",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Self::Public),
            "shared" => Some(Self::Shared),
            _ => None,
        }
    }

    /// AMI Warden's severity of a live exposure of this kind (as the guard alerts it).
    pub fn severity(self) -> Severity {
        match self {
            Self::Public => Severity::Critical,
            Self::Shared => Severity::Warning,
        }
    }
}

/// Whether the exposure is in place (an ACTIVE, NEW finding) or over (ARCHIVED, RESOLVED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Open,
    Ended,
}

/// One exposure of one resource, as AMI Warden last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub account: AccountId,
    pub resource: Resource,
    pub kind: ExposureKind,
    pub state: State,
    /// AMI Warden's severity (mapped by [`severity_label`]); `Resolved` once ended.
    pub severity: Severity,
    /// Who it is exposed to (open), or was (ended; empty when not known).
    pub grantees: Vec<Grantee>,
    /// The principal whose call caused it; `None` for the sweep.
    pub actor: Option<String>,
    /// The live state in words.
    pub live: String,
    /// What AMI Warden reverted, in words.
    pub remediated: String,
    /// When it was seen: the event's time, or the sweep's.
    pub at: DateTime<Utc>,
    /// `event` or `sweep`.
    pub source: &'static str,
}

impl Observation {
    pub fn id(&self) -> String {
        finding_id(&self.account, self.resource.region(), self.resource.id(), self.kind)
    }

    pub fn product_arn(&self) -> String {
        product_arn(self.resource.region(), &self.account)
    }
}

/// `ami-warden/<account>/<region>/<resource-id>/<kind>`.
pub fn finding_id(
    account: &AccountId,
    region: &Region,
    resource_id: &str,
    kind: ExposureKind,
) -> String {
    format!("ami-warden/{account}/{region}/{resource_id}/{}", kind.as_str())
}

/// The resource and kind a [`finding_id`] names, if it is one.
pub fn parse_finding_id(id: &str) -> Option<(AccountId, Resource, ExposureKind)> {
    let mut parts = id.split('/');
    let (prefix, account, region, resource, kind) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if prefix != "ami-warden" || parts.next().is_some() {
        return None;
    }
    let region = Region::parse(region)?;
    let resource = if resource.starts_with("ami-") {
        Resource::Image { image: ImageRef::new(region, ImageId::parse(resource)?) }
    } else {
        Resource::Snapshot { region, snapshot: SnapshotId::parse(resource)? }
    };
    Some((AccountId::parse(account)?, resource, ExposureKind::parse(kind)?))
}

/// The account's default product in a region: where an account's own findings go.
pub fn product_arn(region: &Region, account: &AccountId) -> String {
    format!("arn:{}:securityhub:{region}:{account}:product/{account}/default", region.partition())
}

/// ASFF's `Severity.Label` for AMI Warden's severity.
pub fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "CRITICAL",
        Severity::Warning => "MEDIUM",
        Severity::Info => "LOW",
        Severity::Resolved => "INFORMATIONAL",
    }
}

/// The ARN of an image or snapshot (EC2 leaves the account out of both).
pub fn resource_arn(resource: &Resource) -> String {
    let region = resource.region();
    let noun = match resource {
        Resource::Image { .. } => "image",
        Resource::Snapshot { .. } => "snapshot",
    };
    format!("arn:{}:ec2:{region}::{noun}/{}", region.partition(), resource.id())
}

fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn truncated(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    // Room for the ellipsis (three bytes), cut on a character boundary.
    let mut end = max.saturating_sub("…".len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The finding in ASFF, as BatchImportFindings takes it.
pub fn to_asff(o: &Observation) -> Value {
    let region = o.resource.region();
    let (noun, id) = match &o.resource {
        Resource::Image { .. } => ("AMI", o.resource.id()),
        Resource::Snapshot { .. } => ("EBS snapshot", o.resource.id()),
    };
    let what = match (o.kind, o.state) {
        (ExposureKind::Public, State::Open) => "is public".to_owned(),
        (ExposureKind::Shared, State::Open) => {
            format!("is shared outside the allow-list with {}", describe_grantees(&o.grantees))
        }
        (ExposureKind::Public, State::Ended) => "is no longer public".to_owned(),
        (ExposureKind::Shared, State::Ended) => {
            "is no longer shared outside the allow-list".to_owned()
        }
    };
    let title = truncated(format!("{noun} {id} {what} in {region}"), 256);
    let mut description = format!(
        "{noun} {id} in {region}, account {account}: {what}. Live state: {live}. Remediated: {rem}.",
        account = o.account,
        live = o.live,
        rem = o.remediated,
    );
    if let Some(actor) = &o.actor {
        description.push_str(&format!(" Caused by {actor}."));
    }
    let (severity, original) = (severity_label(o.severity), o.severity.to_string());
    let (workflow, record) = match o.state {
        State::Open => ("NEW", "ACTIVE"),
        State::Ended => ("RESOLVED", "ARCHIVED"),
    };
    let mut fields = BTreeMap::from([
        ("ami-warden/Kind", o.kind.as_str().to_owned()),
        ("ami-warden/Source", o.source.to_owned()),
        ("ami-warden/LiveState", truncated(o.live.clone(), 2048)),
        ("ami-warden/Remediated", truncated(o.remediated.clone(), 2048)),
    ]);
    if let Some(actor) = &o.actor {
        fields.insert("ami-warden/Actor", actor.clone());
    }
    if !o.grantees.is_empty() {
        fields.insert("ami-warden/ExposedTo", truncated(describe_grantees(&o.grantees), 2048));
    }
    json!({
        "SchemaVersion": "2018-10-08",
        "Id": o.id(),
        "ProductArn": o.product_arn(),
        "GeneratorId": GENERATOR_ID,
        "AwsAccountId": o.account,
        "Region": region,
        "Types": TYPES,
        "CreatedAt": time(&o.at),
        "UpdatedAt": time(&o.at),
        "LastObservedAt": time(&o.at),
        "Severity": {"Label": severity, "Original": original},
        // What BatchImportFindings updates severity and types through, once the finding exists.
        "FindingProviderFields": {
            "Severity": {"Label": severity, "Original": original},
            "Types": TYPES,
        },
        "Title": title,
        "Description": truncated(description, 1024),
        "Remediation": {"Recommendation": {"Text": truncated(recommendation(o), 512)}},
        "ProductFields": fields,
        "Resources": [{
            "Type": "Other",
            "Id": resource_arn(&o.resource),
            "Region": region,
            "Partition": region.partition(),
        }],
        "Workflow": {"Status": workflow},
        "RecordState": record,
    })
}

/// What to do about it, in words an operator can act on.
fn recommendation(o: &Observation) -> String {
    let region = o.resource.region();
    match (o.state, o.kind, &o.resource) {
        (State::Ended, ..) => "None needed: the exposure has ended.".into(),
        (_, ExposureKind::Public, Resource::Image { image }) => format!(
            "Remove the public launch permission (aws ec2 modify-image-attribute --image-id {} --launch-permission \"Remove=[{{Group=all}}]\" --region {region}) and turn on image block public access; or set REMEDIATE_PUBLIC=true to have AMI Warden revert it.",
            image.image_id
        ),
        (_, ExposureKind::Public, Resource::Snapshot { snapshot, .. }) => format!(
            "Remove the public create-volume permission (aws ec2 modify-snapshot-attribute --snapshot-id {snapshot} --attribute createVolumePermission --operation-type remove --group-names all --region {region}) and turn on block public access for snapshots."
        ),
        (_, ExposureKind::Shared, _) => format!(
            "Remove the share with {} unless it is intended; if it is, add it to ALLOWED_ACCOUNT_IDS, ALLOWED_ORG_ARNS or ALLOWED_OU_ARNS.",
            describe_grantees(&o.grantees)
        ),
    }
}

/// The findings a guard alert amounts to, read from the alert's machine-readable details
/// (the exposure finding, the action, the actor); none for alerts that are not about an
/// image's or snapshot's permissions, or whose account is unknown.
///
/// For each kind of exposure the event or the live state involves: open when the live state
/// (after what AMI Warden removed) still has it, ended when it does not or the resource is
/// gone. When the live state could not be read, the event is taken at its word for what it
/// added, and nothing is ended.
pub fn from_alert(n: &Notification, own_account: Option<&AccountId>) -> Vec<Observation> {
    let d = &n.details;
    let f = &d["finding"];
    let Some(resource) = resource_of(&f["resource"]) else { return Vec::new() };
    let account = d["account"].as_str().and_then(AccountId::parse).or_else(|| own_account.cloned());
    let Some(account) = account else { return Vec::new() };
    let (added, removed, live) =
        (grantees(&f["added"]), grantees(&f["removed"]), grantees(&f["live_exposure"]));
    let action = d["action"].as_str().unwrap_or_default().to_owned();
    let reverted = if action.starts_with("removed the grant") {
        grantees(&f["remediation"]["detail"])
    } else {
        Vec::new()
    };
    let live: Vec<Grantee> = live.into_iter().filter(|g| !reverted.contains(g)).collect();
    let at = d["event_time"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
    let base = Observation {
        account,
        resource,
        kind: ExposureKind::Public,
        state: State::Open,
        severity: Severity::Critical,
        grantees: Vec::new(),
        actor: d["actor"]["arn"].as_str().map(str::to_owned),
        live: field(n, "Live state"),
        remediated: if action.is_empty() { "none".into() } else { action },
        at,
        source: "event",
    };
    let kinds = |list: &[&Vec<Grantee>]| -> BTreeSet<ExposureKind> {
        list.iter().flat_map(|l| l.iter().map(ExposureKind::of)).collect()
    };
    let of_kind =
        |list: &[Grantee], k| list.iter().filter(|g| ExposureKind::of(g) == k).cloned().collect();
    let open = |kind, grantees| Observation {
        kind,
        severity: ExposureKind::severity(kind),
        grantees,
        ..base.clone()
    };
    let ended = |kind, grantees| Observation {
        kind,
        state: State::Ended,
        severity: Severity::Resolved,
        grantees,
        ..base.clone()
    };
    match f["status"]["status"].as_str() {
        Some("unknown") => {
            kinds(&[&added]).into_iter().map(|k| open(k, of_kind(&added, k))).collect()
        }
        Some("gone") => kinds(&[&added, &removed])
            .into_iter()
            .map(|k| ended(k, of_kind(&[added.clone(), removed.clone()].concat(), k)))
            .collect(),
        Some(_) => kinds(&[&added, &removed, &reverted, &live])
            .into_iter()
            .map(|k| {
                let now: Vec<Grantee> = of_kind(&live, k);
                if now.is_empty() {
                    ended(k, of_kind(&[added.clone(), removed.clone()].concat(), k))
                } else {
                    open(k, now)
                }
            })
            .collect(),
        None => Vec::new(),
    }
}

fn field(n: &Notification, label: &str) -> String {
    n.fields.iter().find(|f| f.label == label).map_or_else(|| "unknown".into(), |f| f.value.clone())
}

fn resource_of(v: &Value) -> Option<Resource> {
    match v["type"].as_str()? {
        "image" => Some(Resource::Image {
            image: ImageRef::new(
                Region::parse(v["image"]["region"].as_str()?)?,
                ImageId::parse(v["image"]["image_id"].as_str()?)?,
            ),
        }),
        "snapshot" => Some(Resource::Snapshot {
            region: Region::parse(v["region"].as_str()?)?,
            snapshot: SnapshotId::parse(v["snapshot"].as_str()?)?,
        }),
        _ => None,
    }
}

/// Grantees as [`Grantee`]'s serialization writes them.
fn grantees(v: &Value) -> Vec<Grantee> {
    let one = |g: &Value| {
        let value = g["value"].as_str().unwrap_or_default().to_owned();
        Some(match g["type"].as_str()? {
            "public" => Grantee::Public,
            "group" => Grantee::Group(value),
            "account" => Grantee::Account(value),
            "organization" => Grantee::Organization(value),
            "organizational_unit" => Grantee::OrganizationalUnit(value),
            _ => Grantee::Unreadable(value),
        })
    };
    v.as_array().map(|a| a.iter().filter_map(one).collect()).unwrap_or_default()
}

/// The open findings a sweep of `account` amounts to: one per exposed resource and kind.
pub fn from_sweep(
    account: &AccountId,
    report: &SweepReport,
    at: DateTime<Utc>,
) -> Vec<Observation> {
    let region = &report.region;
    let observe = |resource: Resource, exposure: &[Grantee], live: &str| {
        let kinds: BTreeSet<ExposureKind> = exposure.iter().map(ExposureKind::of).collect();
        kinds
            .into_iter()
            .map(|kind| Observation {
                account: account.clone(),
                resource: resource.clone(),
                kind,
                state: State::Open,
                severity: ExposureKind::severity(kind),
                grantees: exposure
                    .iter()
                    .filter(|g| ExposureKind::of(g) == kind)
                    .cloned()
                    .collect(),
                actor: None,
                live: format!("{live}exposed to {}", describe_grantees(exposure)),
                remediated: "none: the sweep reports, it does not revert".into(),
                at,
                source: "sweep",
            })
            .collect::<Vec<_>>()
    };
    let images = report.exposed_images.iter().flat_map(|i| {
        let image = ImageRef::new(region.clone(), i.image_id.clone());
        observe(Resource::Image { image }, &i.exposure, "")
    });
    let snapshots = report.exposed_snapshots.iter().flat_map(|s| {
        let blocked = match s.state {
            SnapshotExposure::Public => "",
            SnapshotExposure::PublicButBlocked => {
                "public but blocked by block-all-sharing (public again if the setting changes); "
            }
        };
        let resource =
            Resource::Snapshot { region: region.clone(), snapshot: s.snapshot_id.clone() };
        observe(resource, &s.exposure, blocked)
    });
    images.chain(snapshots).collect()
}

/// One of this generator's ACTIVE findings, as Security Hub lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenFinding {
    pub id: String,
    /// Its `UpdatedAt`; `None` when Security Hub gave none that parses.
    pub updated_at: Option<DateTime<Utc>>,
}

/// The open findings (`open`, as Security Hub lists them) a sweep of the account and region
/// no longer finds, as ended findings. Not ended on doubt: a resource whose permissions could
/// not be read, any snapshot when the snapshot listing failed, a snapshot's share with accounts
/// (the sweep reads only which snapshots are public), and a finding updated since the sweep
/// began listing (the guard may have seen a change the sweep's reading predates).
pub fn resolved_by_sweep(
    account: &AccountId,
    report: &SweepReport,
    open: &[OpenFinding],
    at: DateTime<Utc>,
) -> Vec<Observation> {
    let found: BTreeSet<String> =
        from_sweep(account, report, at).iter().map(Observation::id).collect();
    let snapshots_unknown = report.errors.iter().any(|e| e.starts_with("public snapshot listing"));
    let began = report.shares.started_at;
    open.iter()
        .filter(|f| !found.contains(&f.id) && f.updated_at.is_some_and(|u| u < began))
        .filter_map(|f| parse_finding_id(&f.id))
        .filter(|(a, resource, _)| a == account && resource.region() == &report.region)
        .filter(|(_, resource, kind)| {
            let unread = report.errors.iter().any(|e| e.contains(resource.id()));
            let snapshot = matches!(resource, Resource::Snapshot { .. });
            let unlisted = snapshot && (snapshots_unknown || *kind != ExposureKind::Public);
            !unread && !unlisted
        })
        .map(|(account, resource, kind)| Observation {
            account,
            resource,
            kind,
            state: State::Ended,
            severity: Severity::Resolved,
            grantees: Vec::new(),
            actor: None,
            live: format!("not exposed ({}) when the sweep read it", kind.as_str()),
            remediated: "none".into(),
            at,
            source: "sweep",
        })
        .collect()
}

/// `items` in requests of [`BATCH`] at most.
pub fn batches<T>(items: &[T]) -> std::slice::Chunks<'_, T> {
    items.chunks(BATCH)
}

/// A Security Hub request that failed, or findings it refused (BatchImportFindings'
/// `FailedFindings`, each named with its error).
#[derive(Debug, Error)]
#[error("Security Hub {operation} in {region}: {message}")]
pub struct FindingsError {
    pub operation: &'static str,
    pub region: String,
    pub message: String,
}

/// Where findings go: Security Hub, in each finding's own region.
#[allow(async_fn_in_trait)]
pub trait FindingsSink {
    /// Imports `findings` (ASFF) in `region`, [`BATCH`] a request. Every batch is sent even
    /// when one fails; `Err` names every finding refused and every request that failed.
    async fn import(&self, region: &Region, findings: &[Value]) -> Result<usize, FindingsError>;
    /// This generator's ACTIVE findings of `account` in `region`.
    async fn open_findings(
        &self,
        account: &AccountId,
        region: &Region,
    ) -> Result<Vec<OpenFinding>, FindingsError>;
    /// Sets the workflow of these findings (`(Id, ProductArn)`) to RESOLVED.
    async fn resolve(&self, region: &Region, ids: &[(String, String)])
        -> Result<(), FindingsError>;
}

/// What [`publish`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    pub imported: usize,
    pub resolved: usize,
}

/// Imports `observations` region by region, then resolves the workflow of the ended ones.
/// Every region is tried; the errors of all are returned together.
pub async fn publish(
    sink: &impl FindingsSink,
    observations: &[Observation],
) -> Result<Published, Vec<FindingsError>> {
    let mut by_region: BTreeMap<&Region, Vec<&Observation>> = BTreeMap::new();
    for o in observations {
        by_region.entry(o.resource.region()).or_default().push(o);
    }
    let (mut done, mut errors) = (Published::default(), Vec::new());
    for (region, list) in by_region {
        let asff: Vec<Value> = list.iter().map(|o| to_asff(o)).collect();
        match sink.import(region, &asff).await {
            Ok(n) => done.imported += n,
            Err(e) => errors.push(e),
        }
        let ended: Vec<(String, String)> = list
            .iter()
            .filter(|o| o.state == State::Ended)
            .map(|o| (o.id(), o.product_arn()))
            .collect();
        if ended.is_empty() {
            continue;
        }
        match sink.resolve(region, &ended).await {
            Ok(()) => done.resolved += ended.len(),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(done)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Actor, EventMeta};
    use crate::exposure::guard::{finding_notification, Action};
    use crate::exposure::sweep::{ExposedImage, ExposedSnapshot};
    use crate::exposure::{Access, Finding, Live, Remediation, Status};

    fn account() -> AccountId {
        AccountId::parse("111122223333").unwrap()
    }

    fn region() -> Region {
        Region::parse("eu-west-1").unwrap()
    }

    fn image() -> Resource {
        Resource::Image { image: ImageRef::new(region(), ImageId::parse("ami-0abc").unwrap()) }
    }

    fn meta() -> EventMeta {
        EventMeta {
            event_id: "e-1".into(),
            event_name: "ModifyImageAttribute".into(),
            event_time: "2025-06-01T10:00:00Z".parse().unwrap(),
            region: region(),
            account: Some(account()),
            actor: Actor {
                arn: Some("arn:aws:iam::111122223333:user/alice".into()),
                ..Actor::default()
            },
        }
    }

    /// The alert the guard publishes for `finding`, with `action` taken.
    fn alert(
        added: Vec<Grantee>,
        removed: Vec<Grantee>,
        live: Vec<Grantee>,
        status: Status,
        action: Action,
    ) -> Notification {
        let remediation = match &action {
            Action::Removed(_) => Remediation::Remove(live.clone()),
            _ => Remediation::Off,
        };
        let finding = Finding {
            severity: Severity::Critical,
            kind: "image-public",
            resource: image(),
            added,
            removed,
            live_exposure: live.clone(),
            status,
            remediation,
        };
        let access = Access { permissions: live, ..Access::default() };
        finding_notification(&meta(), &finding, &Live::Found(access), &action, &[])
    }

    fn off() -> Action {
        Action::Nothing("none: automatic remediation is off (REMEDIATE_PUBLIC=false)".into())
    }

    fn report(images: Vec<ExposedImage>, snapshots: Vec<ExposedSnapshot>) -> SweepReport {
        SweepReport {
            region: region(),
            images_checked: images.len(),
            permissions_read: images.len(),
            full_read: true,
            snapshots_checked: snapshots.len(),
            exposed_images: images,
            exposed_snapshots: snapshots,
            block_public_access: None,
            snapshot_block_public_access: None,
            allowed_images: None,
            errors: Vec::new(),
            shares: Default::default(),
        }
    }

    fn exposed(id: &str, exposure: Vec<Grantee>) -> ExposedImage {
        ExposedImage { image_id: ImageId::parse(id).unwrap(), name: None, exposure }
    }

    #[test]
    fn the_id_is_the_same_for_the_same_account_region_resource_and_kind_and_reads_back() {
        let id = finding_id(&account(), &region(), "ami-0abc", ExposureKind::Public);
        assert_eq!(id, "ami-warden/111122223333/eu-west-1/ami-0abc/public");
        assert_ne!(id, finding_id(&account(), &region(), "ami-0abc", ExposureKind::Shared));
        let (a, resource, kind) = parse_finding_id(&id).unwrap();
        assert_eq!((a, resource, kind), (account(), image(), ExposureKind::Public));
        assert!(
            parse_finding_id("arn:aws:securityhub:eu-west-1::product/aws/guardduty/x").is_none()
        );
        // The event and the sweep name the same finding for the same exposure.
        let from_event = from_alert(
            &alert(vec![Grantee::Public], vec![], vec![Grantee::Public], Status::Live, off()),
            None,
        );
        let swept = from_sweep(
            &account(),
            &report(vec![exposed("ami-0abc", vec![Grantee::Public])], vec![]),
            Utc::now(),
        );
        assert_eq!(from_event[0].id(), swept[0].id());
        assert_eq!(to_asff(&from_event[0])["Id"], to_asff(&swept[0])["Id"]);
    }

    #[test]
    fn severities_map_to_asff_labels() {
        assert_eq!(severity_label(Severity::Critical), "CRITICAL");
        assert_eq!(severity_label(Severity::Warning), "MEDIUM");
        assert_eq!(severity_label(Severity::Info), "LOW");
        assert_eq!(severity_label(Severity::Resolved), "INFORMATIONAL");
        let shared = Grantee::Account("444455556666".into());
        let obs = from_alert(
            &alert(
                vec![Grantee::Public, shared.clone()],
                vec![],
                vec![Grantee::Public, shared],
                Status::Live,
                off(),
            ),
            None,
        );
        let labels: Vec<(String, Value)> =
            obs.iter().map(|o| (o.id(), to_asff(o)["Severity"]["Label"].clone())).collect();
        assert_eq!(labels.len(), 2, "{labels:?}");
        assert_eq!(labels[0].1, "CRITICAL");
        assert!(labels[0].0.ends_with("/public"));
        assert_eq!(labels[1].1, "MEDIUM");
        assert!(labels[1].0.ends_with("/shared"));
    }

    #[test]
    fn a_public_alert_is_an_active_new_finding_with_resource_actor_live_state_and_remediation() {
        let obs = from_alert(
            &alert(vec![Grantee::Public], vec![], vec![Grantee::Public], Status::Live, off()),
            None,
        );
        assert_eq!(obs.len(), 1);
        let f = to_asff(&obs[0]);
        assert_eq!(
            f["ProductArn"],
            "arn:aws:securityhub:eu-west-1:111122223333:product/111122223333/default"
        );
        assert_eq!(f["GeneratorId"], GENERATOR_ID);
        assert_eq!(f["AwsAccountId"], "111122223333");
        assert_eq!(f["Workflow"]["Status"], "NEW");
        assert_eq!(f["RecordState"], "ACTIVE");
        assert_eq!(f["Resources"][0]["Id"], "arn:aws:ec2:eu-west-1::image/ami-0abc");
        assert_eq!(f["Resources"][0]["Region"], "eu-west-1");
        assert_eq!(f["Resources"][0]["Partition"], "aws");
        assert_eq!(f["ProductFields"]["ami-warden/Actor"], "arn:aws:iam::111122223333:user/alice");
        assert_eq!(
            f["ProductFields"]["ami-warden/LiveState"],
            "still exposed to everyone (group: all)"
        );
        assert!(f["ProductFields"]["ami-warden/Remediated"].as_str().unwrap().starts_with("none"));
        assert!(f["Remediation"]["Recommendation"]["Text"]
            .as_str()
            .unwrap()
            .contains("--image-id ami-0abc"));
        assert_eq!(f["CreatedAt"], "2025-06-01T10:00:00.000Z");
        assert_eq!(f["Types"], json!(TYPES));
    }

    #[test]
    fn an_ended_exposure_is_resolved_and_archived() {
        // A removal event that leaves nothing.
        let removal =
            from_alert(&alert(vec![], vec![Grantee::Public], vec![], Status::Ended, off()), None);
        assert_eq!(removal.len(), 1);
        let f = to_asff(&removal[0]);
        assert_eq!(
            (f["Workflow"]["Status"].as_str(), f["RecordState"].as_str()),
            (Some("RESOLVED"), Some("ARCHIVED"))
        );
        assert_eq!(f["Severity"]["Label"], "INFORMATIONAL");
        assert!(f["Id"].as_str().unwrap().ends_with("/ami-0abc/public"));
        // Remediated by AMI Warden: the public grant is gone, the finding says so.
        let remediated = from_alert(
            &alert(
                vec![Grantee::Public],
                vec![],
                vec![Grantee::Public],
                Status::Live,
                Action::Removed("everyone (group: all)".into()),
            ),
            None,
        );
        let f = to_asff(&remediated[0]);
        assert_eq!(f["RecordState"], "ARCHIVED");
        assert_eq!(
            f["ProductFields"]["ami-warden/Remediated"],
            "removed the grant to everyone (group: all)"
        );
        // Made public but already reverted when AMI Warden looked.
        let undone = from_alert(
            &alert(vec![Grantee::Public], vec![], vec![], Status::AlreadyUndone, off()),
            None,
        );
        assert_eq!(undone[0].state, State::Ended);
        // A sweep that no longer finds an open finding ends it; one it still finds stays open.
        let open = opened(&[
            finding_id(&account(), &region(), "ami-0abc", ExposureKind::Public),
            finding_id(&account(), &region(), "ami-0def", ExposureKind::Public),
        ]);
        let r = report(vec![exposed("ami-0def", vec![Grantee::Public])], vec![]);
        let ended = resolved_by_sweep(&account(), &r, &open, Utc::now());
        assert_eq!(ended.iter().map(Observation::id).collect::<Vec<_>>(), vec![open[0].id.clone()]);
        assert_eq!(to_asff(&ended[0])["Workflow"]["Status"], "RESOLVED");
    }

    #[test]
    fn a_removal_that_leaves_a_share_resolves_public_and_keeps_shared_open() {
        let shared = Grantee::Account("444455556666".into());
        let obs = from_alert(
            &alert(
                vec![],
                vec![Grantee::Public],
                vec![shared.clone()],
                Status::StillExposed,
                off(),
            ),
            None,
        );
        let states: Vec<(ExposureKind, State)> = obs.iter().map(|o| (o.kind, o.state)).collect();
        assert_eq!(
            states,
            vec![(ExposureKind::Public, State::Ended), (ExposureKind::Shared, State::Open)]
        );
    }

    #[test]
    fn nothing_is_resolved_on_doubt() {
        // The live state could not be read: what the event added is open, nothing ends.
        let obs = from_alert(
            &alert(vec![], vec![Grantee::Public], vec![], Status::Unknown("denied".into()), off()),
            None,
        );
        assert!(obs.is_empty(), "{obs:?}");
        // The sweep could not read an image, or list snapshots: their findings stay open.
        let open = opened(&[
            finding_id(&account(), &region(), "ami-0abc", ExposureKind::Public),
            finding_id(&account(), &region(), "snap-0abc", ExposureKind::Public),
            finding_id(
                &account(),
                &Region::parse("us-east-1").unwrap(),
                "ami-0fff",
                ExposureKind::Public,
            ),
        ]);
        let mut r = report(vec![], vec![]);
        r.errors = vec![
            "launch permissions of ami-0abc: throttled".into(),
            "public snapshot listing: denied".into(),
        ];
        assert!(resolved_by_sweep(&account(), &r, &open, Utc::now()).is_empty());
        // A snapshot shared with an account: the sweep reads only which snapshots are public.
        let r = report(vec![], vec![]);
        let shared =
            opened(&[finding_id(&account(), &region(), "snap-0abc", ExposureKind::Shared)]);
        assert!(resolved_by_sweep(&account(), &r, &shared, Utc::now()).is_empty());
        // Updated (by the guard) since the sweep began listing: its reading may predate that.
        let mut recent =
            opened(&[finding_id(&account(), &region(), "ami-0abc", ExposureKind::Public)]);
        recent[0].updated_at = Some(r.shares.started_at + chrono::Duration::seconds(5));
        assert!(resolved_by_sweep(&account(), &r, &recent, Utc::now()).is_empty());
    }

    /// Open findings last updated an hour before the sweeps of [`report`] began.
    fn opened(ids: &[String]) -> Vec<OpenFinding> {
        let before = report(vec![], vec![]).shares.started_at - chrono::Duration::hours(1);
        ids.iter().map(|id| OpenFinding { id: id.clone(), updated_at: Some(before) }).collect()
    }

    #[test]
    fn alerts_about_settings_make_no_finding() {
        let n = Notification::new(Severity::Critical, "block-public-access-disabled", "x")
            .details(json!({"region": "eu-west-1", "account": "111122223333"}));
        assert!(from_alert(&n, None).is_empty());
    }

    #[test]
    fn findings_are_sent_a_hundred_at_a_time() {
        let items: Vec<u32> = (0..250).collect();
        let sizes: Vec<usize> = batches(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        assert_eq!(batches(&items[..100]).count(), 1);
    }

    #[test]
    fn texts_stay_within_asff_limits() {
        let many: Vec<Grantee> = (0..200).map(|i| Grantee::Account(format!("{i:012}"))).collect();
        let swept =
            from_sweep(&account(), &report(vec![exposed("ami-0abc", many)], vec![]), Utc::now());
        let f = to_asff(&swept[0]);
        assert!(f["Title"].as_str().unwrap().len() <= 256);
        assert!(f["Description"].as_str().unwrap().len() <= 1024);
        assert!(f["Remediation"]["Recommendation"]["Text"].as_str().unwrap().len() <= 512);
    }
}
