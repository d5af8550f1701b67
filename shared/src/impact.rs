//! Blast radius: every descendant of an image, at any depth and in every region, and where each
//! is used right now — the answer to "ami-X has a critical CVE: what is affected?".
//!
//! Reuses the lineage store's descendants index and the deprecation enforcer's in-use facts
//! ([`crate::deprecation::DeprecationEc2::in_use`]), gathered once per region (not per image).
//! [`add_allowed`] then says, for each image, whether the region's Allowed AMIs setting allows
//! it, and lists the instances running affected images it no longer allows
//! ([`crate::exposure::allowed`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::json;

use crate::deprecation::{DeprecationEc2, InUseIndex};
use crate::exposure::allowed::{self, Allowance, AllowedImagesEc2};
use crate::ids::{AccountId, ImageId, ImageRef, InstanceId, Region};
use crate::lineage::{LineageStore, NodeState, StoreError};
use crate::notify::{Notification, Severity};
use crate::quarantine::run::QuarantineStore;
use crate::quarantine::Quarantine;

/// What kind of use a usage line is (the in-use index describes uses in words).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum UsageKind {
    Instance {
        state: String,
    },
    LaunchTemplateVersion,
    LaunchConfiguration,
    AutoScalingGroup,
    /// A DescribeImageReferences entry (it repeats instances and templates found otherwise).
    Reference,
}

pub fn classify(usage: &str) -> UsageKind {
    if let Some(rest) = usage.strip_prefix("instance ") {
        let state = rest
            .rsplit_once('(')
            .map(|(_, s)| s.trim_end_matches(')').to_owned())
            .unwrap_or_default();
        return UsageKind::Instance { state };
    }
    if usage.starts_with("launch template ") {
        return UsageKind::LaunchTemplateVersion;
    }
    if usage.starts_with("launch configuration ") {
        return UsageKind::LaunchConfiguration;
    }
    if usage.starts_with("Auto Scaling group ") {
        return UsageKind::AutoScalingGroup;
    }
    UsageKind::Reference
}

/// One affected image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Affected {
    pub image: ImageRef,
    /// 0 for the image asked about, 1 for its children, …
    pub depth: u32,
    pub parent: Option<ImageRef>,
    pub state: NodeState,
    pub name: Option<String>,
    pub account: Option<AccountId>,
    pub uses: Vec<String>,
    /// What Allowed AMIs says of it; `None` until [`add_allowed`] looked.
    pub allowed: Option<Allowance>,
    /// The active quarantine it falls under (its own or an ancestor's), in words; `None` when
    /// none does or [`add_quarantine`] did not look.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<String>,
}

/// An instance running an affected image that Allowed AMIs does not (or, in audit mode, would
/// not) allow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefusedInstance {
    pub instance_id: InstanceId,
    pub state: Option<String>,
    pub image: ImageRef,
    pub allowed: Allowance,
}

/// Counts of uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub images: usize,
    pub images_in_use: usize,
    pub instances_by_state: BTreeMap<String, usize>,
    pub launch_template_versions: usize,
    pub launch_configurations: usize,
    pub auto_scaling_groups: usize,
}

impl Totals {
    fn add(&mut self, a: &Affected) {
        self.images += 1;
        if !a.uses.is_empty() {
            self.images_in_use += 1;
        }
        for u in &a.uses {
            match classify(u) {
                UsageKind::Instance { state } => {
                    *self.instances_by_state.entry(state).or_default() += 1
                }
                UsageKind::LaunchTemplateVersion => self.launch_template_versions += 1,
                UsageKind::LaunchConfiguration => self.launch_configurations += 1,
                UsageKind::AutoScalingGroup => self.auto_scaling_groups += 1,
                UsageKind::Reference => {}
            }
        }
    }

    pub fn instances(&self) -> usize {
        self.instances_by_state.values().sum()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Impact {
    pub subject: ImageRef,
    pub affected: Vec<Affected>,
    /// Keyed `<account>/<region>`.
    pub per_location: BTreeMap<String, Totals>,
    pub total: Totals,
    /// Instances running affected images that Allowed AMIs no longer allows ([`add_allowed`]).
    pub not_allowed_instances: Vec<RefusedInstance>,
    /// What could not be checked (failed lookups, other accounts): uses there are unknown.
    pub not_checked: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImpactError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is not in the lineage table")]
    Unknown(ImageRef),
}

/// How uses are looked up in accounts other than the own one (organization mode: through each
/// member's role).
#[allow(async_fn_in_trait)]
pub trait OtherAccounts {
    type Ec2: DeprecationEc2;
    /// EC2 as `account` sees it; `Err(why)` when that account cannot be asked.
    async fn ec2_in(&self, account: &AccountId) -> Result<Self::Ec2, String>;
}

/// No other account can be asked: their uses are marked not checked.
pub struct OwnAccountOnly<E>(std::marker::PhantomData<E>);

impl<E> Default for OwnAccountOnly<E> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<E: DeprecationEc2> OtherAccounts for OwnAccountOnly<E> {
    type Ec2 = E;
    async fn ec2_in(&self, _account: &AccountId) -> Result<E, String> {
        Err("uses not checked from this account (no member role configured)".into())
    }
}

/// The blast radius of `image`. `own_account` is the account the `ec2` clients see; the uses of
/// descendants in other accounts are looked up through `others`, or marked not checked when
/// that account cannot be asked.
pub async fn impact(
    store: &impl LineageStore,
    ec2: &impl DeprecationEc2,
    others: &impl OtherAccounts,
    image: &ImageRef,
    own_account: Option<&AccountId>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Impact, ImpactError> {
    let mut affected = affected(store, image).await?;
    let found = find_uses(ec2, others, &locations(&affected), own_account, progress).await;
    let (per_location, total) = tally(&mut affected, found.uses);
    Ok(Impact {
        subject: image.clone(),
        affected,
        per_location,
        total,
        not_allowed_instances: Vec::new(),
        not_checked: found.not_checked,
    })
}

/// Says for each affected image whether Allowed AMIs allows it where `ec2` looks (the own
/// account: an account's own images are never restricted, images shared with it are), and
/// lists the instances there running an affected image it does not allow (in audit mode: would
/// not allow). Other accounts' view is not asked: noted in `not_checked` when any affected
/// image lives elsewhere.
pub async fn add_allowed(
    impact: &mut Impact,
    ec2: &impl AllowedImagesEc2,
    own_account: Option<&AccountId>,
) {
    let images: Vec<ImageRef> = impact.affected.iter().map(|a| a.image.clone()).collect();
    let facts = allowed::gather(ec2, &images, true).await;
    for a in &mut impact.affected {
        a.allowed = Some(match (facts.allowance(&a.image), a.state) {
            (Allowance::Unknown(_), NodeState::Deregistered) => {
                Allowance::Unknown("deregistered".into())
            }
            (allowance, _) => allowance,
        });
    }
    let wanted = images.into_iter().collect();
    impact.not_allowed_instances = facts
        .instances_on(&wanted)
        .into_iter()
        .map(|(region, row)| {
            let settings =
                facts.settings.get(&region).cloned().unwrap_or_else(|| Err("not read".into()));
            RefusedInstance {
                instance_id: row.instance_id,
                state: row.state,
                allowed: allowed::allowance(&settings, Some(row.image_allowed)),
                image: ImageRef::new(region, row.image_id),
            }
        })
        .filter(|r| r.allowed.refused())
        .collect();
    impact.not_checked.extend(facts.failures);
    let elsewhere: BTreeSet<&AccountId> = impact
        .affected
        .iter()
        .filter_map(|a| a.account.as_ref())
        .filter(|a| Some(*a) != own_account)
        .collect();
    if let (false, Some(own)) = (elsewhere.is_empty(), own_account) {
        let list: Vec<&str> = elsewhere.iter().map(|a| a.as_str()).collect();
        impact.not_checked.push(format!(
            "Allowed AMIs and instances on images it refuses: as account {own} sees them, not as {} do",
            list.join(", ")
        ));
    }
}

/// Says for each affected image which active quarantine it falls under: one declared on it,
/// or on any image it descends from (above the subject too).
pub async fn add_quarantine(
    impact: &mut Impact,
    store: &(impl LineageStore + QuarantineStore),
) -> Result<(), StoreError> {
    let above = store.ancestors(&impact.subject).await?;
    let mut parents: BTreeMap<ImageRef, ImageRef> = BTreeMap::new();
    for (image, parent) in impact
        .affected
        .iter()
        .map(|a| (&a.image, &a.parent))
        .chain(above.iter().map(|r| (&r.image, &r.parent)))
    {
        if let Some(parent) = parent {
            parents.insert(image.clone(), parent.clone());
        }
    }
    let mut images: Vec<ImageRef> = impact.affected.iter().map(|a| a.image.clone()).collect();
    images.extend(above.into_iter().map(|r| r.image));
    let active: BTreeMap<ImageRef, Quarantine> = store
        .quarantines_of(&images)
        .await?
        .into_iter()
        .filter(Quarantine::active)
        .map(|q| (q.image.clone(), q))
        .collect();
    for a in &mut impact.affected {
        let mut at = Some(a.image.clone());
        for _ in 0..=parents.len() {
            let Some(image) = at else { break };
            if let Some(q) = active.get(&image) {
                a.quarantined = Some(format!(
                    "{} since {}: {}",
                    if image == a.image {
                        "quarantined".to_owned()
                    } else {
                        format!("under {image}")
                    },
                    q.at.format("%Y-%m-%d"),
                    q.reason
                ));
                break;
            }
            at = parents.get(&image).cloned();
        }
    }
    Ok(())
}

/// `image` (depth 0) and every descendant of it, their uses not yet looked up.
async fn affected(
    store: &impl LineageStore,
    image: &ImageRef,
) -> Result<Vec<Affected>, ImpactError> {
    let subject = store.node(image).await?.ok_or_else(|| ImpactError::Unknown(image.clone()))?;
    let descendants = store.descendants(image).await?;
    let mut affected = vec![Affected {
        image: subject.image.clone(),
        depth: 0,
        parent: subject.parent.clone(),
        state: subject.state,
        name: subject.name.clone(),
        account: subject.account.clone(),
        uses: Vec::new(),
        allowed: None,
        quarantined: None,
    }];
    affected.extend(descendants.into_iter().map(|r| Affected {
        image: r.image,
        depth: r.depth,
        parent: r.parent,
        state: r.state,
        name: r.name,
        account: r.account,
        uses: Vec::new(),
        allowed: None,
        quarantined: None,
    }));
    Ok(affected)
}

/// The images still registered, grouped by account and region: one set of in-use lookups
/// answers for all the images of a group.
fn locations(affected: &[Affected]) -> BTreeMap<(Option<AccountId>, Region), Vec<ImageId>> {
    let mut locations: BTreeMap<(Option<AccountId>, Region), Vec<ImageId>> = BTreeMap::new();
    for a in affected {
        if a.state != NodeState::Deregistered {
            locations
                .entry((a.account.clone(), a.image.region.clone()))
                .or_default()
                .push(a.image.image_id.clone());
        }
    }
    locations
}

/// The uses found, by image, and what could not be checked.
#[derive(Default)]
struct Found {
    uses: BTreeMap<ImageRef, BTreeSet<String>>,
    not_checked: Vec<String>,
}

impl Found {
    /// Adds one region's in-use index: its uses, its failed lookups, and the launch template
    /// versions that could name any image.
    fn add(&mut self, region: &Region, index: InUseIndex) {
        self.not_checked.extend(index.failures.iter().map(|f| format!("{region}: {f}")));
        self.not_checked.extend(
            index
                .unresolved
                .iter()
                .map(|u| format!("{region}: {u} names its image by SSM parameter")),
        );
        for (image, found) in index.uses {
            self.uses.entry(ImageRef::new(region.clone(), image)).or_default().extend(found);
        }
    }
}

/// Looks up the uses at each location: through `ec2` in the own account (or when the account
/// is not known), through `others` in any other; a location whose account cannot be asked is
/// not checked.
async fn find_uses(
    ec2: &impl DeprecationEc2,
    others: &impl OtherAccounts,
    locations: &BTreeMap<(Option<AccountId>, Region), Vec<ImageId>>,
    own_account: Option<&AccountId>,
    progress: &(dyn Fn(&str) + Sync),
) -> Found {
    let mut found = Found::default();
    for ((account, region), ids) in locations {
        let foreign = match (account, own_account) {
            (Some(account), Some(own)) if account != own => Some(account),
            _ => None,
        };
        let index = match foreign {
            None => {
                progress(&format!("checking uses in {region} ({} image(s))", ids.len()));
                ec2.in_use(region, ids).await
            }
            Some(account) => match others.ec2_in(account).await {
                Ok(member) => {
                    progress(&format!(
                        "checking uses in account {account}, {region} ({} image(s))",
                        ids.len()
                    ));
                    member.in_use(region, ids).await
                }
                Err(why) => {
                    found.not_checked.push(format!(
                        "{} image(s) in account {account} ({region}): {why}",
                        ids.len()
                    ));
                    continue;
                }
            },
        };
        found.add(region, index);
    }
    found
}

/// Puts on each affected image its uses, and counts them per `<account>/<region>` and in all.
fn tally(
    affected: &mut [Affected],
    mut uses: BTreeMap<ImageRef, BTreeSet<String>>,
) -> (BTreeMap<String, Totals>, Totals) {
    let mut per_location: BTreeMap<String, Totals> = BTreeMap::new();
    let mut total = Totals::default();
    for a in affected {
        a.uses = uses.remove(&a.image).map(|s| s.into_iter().collect()).unwrap_or_default();
        let key =
            format!("{}/{}", a.account.as_ref().map(|x| x.as_str()).unwrap_or("?"), a.image.region);
        per_location.entry(key).or_default().add(a);
        total.add(a);
    }
    (per_location, total)
}

fn describe(t: &Totals) -> String {
    let states: Vec<String> =
        t.instances_by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!(
        "{} image(s), {} in use; {} instance(s){}; {} launch template version(s); {} launch configuration(s); {} Auto Scaling group(s)",
        t.images,
        t.images_in_use,
        t.instances(),
        if states.is_empty() { String::new() } else { format!(" ({})", states.join(", ")) },
        t.launch_template_versions,
        t.launch_configurations,
        t.auto_scaling_groups
    )
}

/// The impact as an aligned table, then counts per account/region and the total, then the
/// instances on images Allowed AMIs no longer allows.
pub fn table(impact: &Impact) -> String {
    let mut rows =
        vec![["DEPTH", "IMAGE", "REGION", "STATE", "NAME", "ALLOWED", "QUARANTINE", "USED BY"]
            .map(str::to_owned)];
    for a in &impact.affected {
        rows.push([
            a.depth.to_string(),
            a.image.image_id.to_string(),
            a.image.region.to_string(),
            format!("{:?}", a.state).to_lowercase(),
            a.name.clone().unwrap_or_default(),
            a.allowed.as_ref().map_or("-".into(), Allowance::describe),
            a.quarantined.clone().unwrap_or_else(|| "-".into()),
            if a.uses.is_empty() { "-".into() } else { a.uses.join("; ") },
        ]);
    }
    let widths: Vec<usize> =
        (0..8).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> =
            row.iter().enumerate().map(|(c, v)| format!("{v:w$}", w = widths[c])).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for (location, t) in &impact.per_location {
        out.push_str(&format!("{location}: {}\n", describe(t)));
    }
    out.push_str(&format!("total: {}\n", describe(&impact.total)));
    for r in &impact.not_allowed_instances {
        out.push_str(&format!(
            "instance {} ({}) runs {}: {}\n",
            r.instance_id,
            r.state.as_deref().unwrap_or("?"),
            r.image,
            r.allowed.describe()
        ));
    }
    for n in &impact.not_checked {
        out.push_str(&format!("not checked: {n}\n"));
    }
    out
}

/// The affected tree as a mermaid graph, in-use images highlighted.
pub fn mermaid(impact: &Impact) -> String {
    let id = |r: &ImageRef| {
        format!("{}_{}", r.region.as_str().replace('-', "_"), r.image_id.as_str().replace('-', "_"))
    };
    let mut out = String::from("graph TD\n");
    for a in &impact.affected {
        let label = format!(
            "{}<br/>{}<br/>{}",
            a.image.image_id,
            a.image.region,
            a.name.as_deref().unwrap_or("")
        );
        let class = if !a.uses.is_empty() {
            ":::inuse"
        } else if a.state == NodeState::Deregistered {
            ":::gone"
        } else {
            ""
        };
        out.push_str(&format!("  {}[\"{}\"]{class}\n", id(&a.image), label.replace('"', "'")));
    }
    for a in impact.affected.iter().filter(|a| a.depth > 0) {
        if let Some(p) = &a.parent {
            out.push_str(&format!("  {} --> {}\n", id(p), id(&a.image)));
        }
    }
    out.push_str("  classDef inuse fill:#fdd,stroke:#c00,stroke-width:2px\n  classDef gone stroke-dasharray: 5 5\n");
    out
}

/// The summary for the topic (`--notify`).
pub fn notification(impact: &Impact) -> Notification {
    let severity = if impact.total.images_in_use > 0 || !impact.not_allowed_instances.is_empty() {
        Severity::Warning
    } else {
        Severity::Info
    };
    Notification::new(
        severity,
        "lineage-impact",
        format!("impact of {}: {}", impact.subject, describe(&impact.total)),
    )
    .text(table(impact))
    .field("Image", impact.subject.to_string())
    .field("Descendants", (impact.total.images.saturating_sub(1)).to_string())
    .field("In use", impact.total.images_in_use.to_string())
    .field("Instances", impact.total.instances().to_string())
    .field(
        "Instances on images not allowed",
        if impact.not_allowed_instances.is_empty() {
            String::new()
        } else {
            impact.not_allowed_instances.len().to_string()
        },
    )
    .details(json!({"impact": impact}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_lines_are_classified_with_instance_states() {
        assert_eq!(
            classify("instance i-0abc (stopped)"),
            UsageKind::Instance { state: "stopped".into() }
        );
        assert_eq!(
            classify("launch template lt-1 (web) version 2"),
            UsageKind::LaunchTemplateVersion
        );
        assert_eq!(classify("launch configuration web-lc"), UsageKind::LaunchConfiguration);
        assert_eq!(classify("Auto Scaling group workers"), UsageKind::AutoScalingGroup);
        assert_eq!(
            classify("ec2:Instance arn:aws:ec2:us-east-1:1:instance/i-0"),
            UsageKind::Reference
        );
    }
}
