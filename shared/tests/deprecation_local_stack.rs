//! Deprecation enforcement against the local stack: the trap estate, built with real calls on
//! moto, planned and enforced through the real EC2 and Auto Scaling adapters.
//!
//! moto stamps every image with the current time as its creation date, so the estate is
//! planned with the clock moved forward (the policy takes `now` as an input).

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use warden::aws::{
    audit::AuditTable, deprecation::Ec2Deprecation, ledger::LedgerTable,
    lineage_table::LineageTable, sns::SnsNotifier, Clients,
};
use warden::config::Mode;
use warden::deprecation::run::{
    Enforcer, EventOutcome, SweepReport, BATCHES_AT_ONCE, LAST_CHECK_BATCH,
};
use warden::deprecation::{Decision, DeprecationEc2, Keep, Settings};
use warden::event::parse_value;
use warden::ids::{AccountId, Region};
use warden::lineage::LineageStore;
use warden_testkit::cloudtrail::Trail;
use warden_testkit::exposure::{self as share, Share};
use warden_testkit::snapshots as snaps;
use warden_testkit::{estate, recycle_bin, stack};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "ap-northeast-1";

fn settings(mode: Mode) -> Settings {
    warden_testkit::settings::deprecation_settings(mode)
}

// Families unique to this run, so a reused local stack's earlier estates do not mix in.
fn trap_family() -> String {
    format!("trap{}", std::process::id())
}

fn batch_family() -> String {
    format!("batch{}", std::process::id())
}

struct Estate {
    ids: BTreeMap<&'static str, String>,
}

async fn build_estate(sdk: &aws_config::SdkConfig) -> Estate {
    // The Recycle Bin rule a deployment there has: the enforcer retires only what it keeps.
    recycle_bin::add_template_image_rule(ACCOUNT, REGION).await.unwrap();
    let trail = Trail::new(ACCOUNT, "image-pipeline");
    let mut ids = BTreeMap::new();
    let image = |label: &'static str| {
        let sdk = sdk.clone();
        async move {
            let (id, _) =
                share::register_image(&sdk, REGION, &format!("{label}-{}", std::process::id()))
                    .await
                    .unwrap();
            (label, id)
        }
    };
    for label in ["lt-only", "asg", "stopped", "shared", "exempt", "disabled", "fresh"] {
        let (label, id) = image(label).await;
        share::tag(sdk, REGION, &id, "ami-warden:family", &trap_family()).await.unwrap();
        ids.insert(label, id);
    }
    // A family of five, named the way pipelines name them (`<family>-<date>`).
    for label in [
        "batch-2026-01-01",
        "batch-2026-02-01",
        "batch-2026-03-01",
        "batch-2026-04-01",
        "batch-2026-05-01",
    ] {
        let name = label.replace("batch", &batch_family());
        let (id, _) = share::register_image(sdk, REGION, &name).await.unwrap();
        ids.insert(label, id);
    }
    // Two newer members of the trap family, so keep-latest protects none of the traps.
    for label in ["zz-anchor-1", "zz-anchor-2"] {
        let (label, id) = image(label).await;
        share::tag(sdk, REGION, &id, "ami-warden:family", &trap_family()).await.unwrap();
        ids.insert(label, id);
    }
    let other = ids["zz-anchor-1"].clone();
    // Used only by version 2 of a launch template: neither its default (1) nor its latest (3).
    estate::launch_template(
        sdk,
        REGION,
        &format!("web-{}", std::process::id()),
        &[&other, &ids["lt-only"], &other],
    )
    .await
    .unwrap();
    estate::auto_scaling_group(
        sdk,
        REGION,
        &format!("workers-{}", std::process::id()),
        &ids["asg"],
    )
    .await
    .unwrap();
    estate::stopped_instance(sdk, REGION, &ids["stopped"]).await.unwrap();
    share::modify_launch_permission(
        sdk,
        &trail,
        REGION,
        &ids["shared"],
        &[Share::Account("222233334444".into())],
        &[],
    )
    .await
    .unwrap();
    share::tag(sdk, REGION, &ids["exempt"], "ami-warden:exempt", "kept by hand").await.unwrap();
    snaps::disable_image(sdk, REGION, &ids["disabled"]).await.unwrap();
    estate::deprecate_at(sdk, REGION, &ids["fresh"], Utc::now() + Duration::days(365))
        .await
        .unwrap();
    Estate { ids }
}

/// What an enforcer keeps besides EC2, on one table.
struct Stores {
    lineage: LineageTable,
    audit: AuditTable,
    ledger: LedgerTable,
}

impl Stores {
    fn new(clients: &Clients, table: &str) -> Self {
        Self {
            lineage: LineageTable::from_clients(clients, table),
            audit: AuditTable::new(clients, table),
            ledger: LedgerTable::new(clients, table),
        }
    }

    /// An enforcer without a notifier, over `ec2`.
    fn enforcer<'a, E: DeprecationEc2>(
        &'a self,
        ec2: &'a E,
        settings: &'a Settings,
    ) -> Enforcer<'a, E, LineageTable, AuditTable, SnsNotifier, LedgerTable> {
        Enforcer {
            ec2,
            lineage: &self.lineage,
            audit: &self.audit,
            ledger: &self.ledger,
            notifier: None,
            settings,
            own_account: AccountId::parse(ACCOUNT),
            stop_by: None,
        }
    }
}

async fn sweep(
    clients: &Clients,
    table: &str,
    mode: Mode,
    days_ahead: i64,
    page_size: i32,
) -> SweepReport {
    let ec2 = Ec2Deprecation::new(clients).with_page_size(page_size);
    let stores = Stores::new(clients, table);
    let settings = settings(mode);
    stores
        .enforcer(&ec2, &settings)
        .sweep(&Region::parse(REGION).unwrap(), Utc::now() + Duration::days(days_ahead))
        .await
        .unwrap()
}

/// The decisions about this run's estate (a reused stack may hold earlier runs' images).
fn decisions(report: &SweepReport, estate: &Estate) -> BTreeMap<String, (Decision, String)> {
    report
        .planned
        .iter()
        .filter(|p| estate.ids.values().any(|id| id == p.image_id.as_str()))
        .map(|p| (p.image_id.to_string(), (p.decision.clone(), p.decision.reason())))
        .collect()
}

#[tokio::test]
async fn only_the_right_images_of_the_trap_estate_are_retired_and_report_mode_changes_nothing() {
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    let table = stack::fresh_lineage_table(&sdk, "deprecation").await;
    let estate = build_estate(&sdk).await;
    let id = |label: &str| estate.ids[label].clone();

    // Today, enforce: every image without a deadline gets creation + 90 days; nothing retires.
    let today = sweep(&clients, &table, Mode::Enforce, 0, 5).await;
    assert!(today.errors.is_empty(), "{:?}", today.errors);
    assert_eq!(
        decisions(&today, &estate).len(),
        estate.ids.len(),
        "every page listed (5 images a page), disabled included"
    );
    let stamped = today
        .stamped
        .iter()
        .filter(|(i, _)| estate.ids.values().any(|id| id == i.as_str()))
        .count();
    assert_eq!(stamped, estate.ids.len() - 2, "all but the exempt one and the one already stamped");
    assert!(today.deregistered.is_empty());

    // 200 days on, report mode: the plan, and nothing changes.
    let before = clients.calls().snapshot();
    let report = sweep(&clients, &table, Mode::Report, 200, 5).await;
    let asked = |operation: &str| -> u64 {
        clients
            .calls()
            .since(&before)
            .iter()
            .filter(|((_, op), _)| op == operation)
            .map(|(_, n)| n)
            .sum()
    };
    // Image by image, only the images that would otherwise go are asked about (here the
    // retired ones and the shared one): references ten ids a request, permissions one.
    let went_that_far = report
        .planned
        .iter()
        .filter(|p| {
            matches!(p.decision, Decision::Deregister | Decision::Keep(Keep::SharedWith(_)))
        })
        .count() as u64;
    assert!(went_that_far >= 5);
    assert_eq!(asked("DescribeImageAttribute"), went_that_far);
    assert_eq!(asked("DescribeImageReferences"), went_that_far.div_ceil(10));
    let planned = decisions(&report, &estate);
    let reason = |label: &str| planned[&id(label)].1.clone();
    let retired: Vec<String> = planned
        .iter()
        .filter(|(_, (d, _))| *d == Decision::Deregister)
        .map(|(i, _)| i.clone())
        .collect();
    let mut expected = vec![
        id("disabled"),
        id("batch-2026-01-01"),
        id("batch-2026-02-01"),
        id("batch-2026-03-01"),
    ];
    expected.sort();
    assert_eq!(retired, expected, "{planned:#?}");
    assert!(
        reason("lt-only").starts_with("in use by launch template ")
            && reason("lt-only").contains("version 2"),
        "{}",
        reason("lt-only")
    );
    assert!(reason("asg").contains("Auto Scaling group workers-"), "{}", reason("asg"));
    assert!(reason("stopped").contains("(stopped)"), "{}", reason("stopped"));
    assert_eq!(reason("shared"), "shared with account 222233334444");
    assert_eq!(reason("exempt"), "exempt: tagged ami-warden:exempt=kept by hand");
    assert!(reason("fresh").starts_with("not yet past deadline + grace"), "{}", reason("fresh"));
    let newest = format!("newest 2 of family {}", batch_family());
    assert!(reason("batch-2026-05-01").starts_with(&newest), "{}", reason("batch-2026-05-01"));
    assert!(reason("batch-2026-04-01").starts_with(&newest), "{}", reason("batch-2026-04-01"));
    assert!(
        reason("zz-anchor-2").starts_with(&format!("newest 2 of family {}", trap_family())),
        "{}",
        reason("zz-anchor-2")
    );
    let still_there = sweep(&clients, &table, Mode::Report, 0, 1000).await;
    assert_eq!(
        decisions(&still_there, &estate).len(),
        estate.ids.len(),
        "report mode deregistered nothing"
    );

    // Enforce over the same facts: the same decisions, and exactly the retired images go.
    let enforced = sweep(&clients, &table, Mode::Enforce, 200, 5).await;
    assert_eq!(decisions(&enforced, &estate), planned, "report and enforce decide alike");
    let mut gone: Vec<String> = enforced
        .deregistered
        .iter()
        .map(|i| i.to_string())
        .filter(|i| estate.ids.values().any(|id| id == i))
        .collect();
    gone.sort();
    assert_eq!(gone, expected);
    assert!(enforced.errors.is_empty(), "{:?}", enforced.errors);
    let after = sweep(&clients, &table, Mode::Report, 0, 1000).await;
    assert_eq!(decisions(&after, &estate).len(), estate.ids.len() - expected.len());

    // Each deregistration is audited.
    let audit = clients
        .dynamodb()
        .query()
        .table_name(&table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("DEPR#{REGION}#{}", id("disabled"))),
        )
        .send()
        .await
        .unwrap();
    let actions: Vec<String> =
        audit.items().iter().filter_map(|i| i.get("action")?.as_s().ok().cloned()).collect();
    assert!(
        actions.contains(&"deregistered (restorable from the Recycle Bin)".to_owned()),
        "{actions:?}"
    );
    // Each is in the Recycle Bin, restorable, tagged as retired.
    let bin =
        warden_testkit::story::ec2(&sdk, REGION).list_images_in_recycle_bin().send().await.unwrap();
    let binned: Vec<&str> = bin.images().iter().filter_map(|i| i.image_id()).collect();
    assert!(expected.iter().all(|i| binned.contains(&i.as_str())), "{binned:?}");
}

#[tokio::test]
async fn a_new_image_gets_its_deadline_once_in_enforce_mode_and_only_a_plan_in_report_mode() {
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    let table = stack::fresh_lineage_table(&sdk, "deprecation-event").await;
    let trail = Trail::new(ACCOUNT, "image-pipeline");
    let snapshot = snaps::create_snapshot(&sdk, "ap-south-1", 8, "root").await.unwrap();
    let (image, event) =
        snaps::register_from(&sdk, &trail, "ap-south-1", "stamp-me", &snapshot).await.unwrap();
    let ec2 = Ec2Deprecation::new(&clients);
    let (lineage, audit) =
        (LineageTable::from_clients(&clients, &table), AuditTable::new(&clients, &table));
    let ledger = LedgerTable::new(&clients, &table);
    let run = |mode: Mode| {
        let (ec2, lineage, audit, event, ledger) = (&ec2, &lineage, &audit, &event, &ledger);
        async move {
            let settings = settings(mode);
            let enforcer = Enforcer {
                ec2,
                lineage,
                audit,
                ledger,
                notifier: None::<&SnsNotifier>,
                settings: &settings,
                own_account: AccountId::parse(ACCOUNT),
                stop_by: None,
            };
            enforcer.on_event(&parse_value(event), Utc::now()).await.unwrap()
        }
    };
    assert!(matches!(run(Mode::Report).await, EventOutcome::WouldStamp { .. }));
    let stamped = run(Mode::Enforce).await;
    let EventOutcome::Stamped { deprecate_at, .. } = stamped else { panic!("{stamped:?}") };
    let expected = Utc::now() + Duration::days(90);
    assert!((deprecate_at - expected).num_minutes().abs() <= 2, "{deprecate_at} vs {expected}");
    // Delivered again: the deadline is there, nothing changes.
    assert!(matches!(run(Mode::Enforce).await, EventOutcome::Unchanged { .. }));
    let described = warden_testkit::story::ec2(&sdk, "ap-south-1")
        .describe_images()
        .image_ids(&image)
        .send()
        .await
        .unwrap();
    assert!(described.images()[0].deprecation_time().is_some());
}

#[tokio::test]
async fn upcoming_deadlines_and_planned_retirements_are_notified() {
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    let table = stack::fresh_lineage_table(&sdk, "deprecation-notify").await;
    let inbox = warden_testkit::inbox::Inbox::create(
        &sdk,
        &format!("deprecation-notify-{}", std::process::id()),
    )
    .await
    .unwrap();
    let region = "ap-southeast-1";
    recycle_bin::add_template_image_rule(ACCOUNT, region).await.unwrap();
    let family = format!("notify{}", std::process::id());
    let mut images = Vec::new();
    for day in ["2026-01-01", "2026-02-01"] {
        let (id, _) =
            share::register_image(&sdk, region, &format!("{family}-{day}")).await.unwrap();
        images.push(id);
    }
    let ec2 = Ec2Deprecation::new(&clients);
    let (lineage, audit) =
        (LineageTable::from_clients(&clients, &table), AuditTable::new(&clients, &table));
    let ledger = LedgerTable::new(&clients, &table);
    let notifier = SnsNotifier::new(&clients, &inbox.topic_arn);
    let settings = Settings { keep_latest: 1, ..settings(Mode::Enforce) };
    let enforcer = Enforcer {
        ec2: &ec2,
        lineage: &lineage,
        audit: &audit,
        ledger: &ledger,
        notifier: Some(&notifier),
        settings: &settings,
        own_account: AccountId::parse(ACCOUNT),
        stop_by: None,
    };
    let region = Region::parse(region).unwrap();
    // Today: both get creation + 90 days.
    enforcer.sweep(&region, Utc::now()).await.unwrap();
    inbox.receive(10, std::time::Duration::from_secs(2)).await.unwrap();
    // 80 days on (report mode: a preview), the deadlines are 10 days away: one INFO warning.
    let preview = Settings { mode: Mode::Report, ..settings.clone() };
    let enforcer = Enforcer { settings: &preview, ..enforcer };
    let report = enforcer.sweep(&region, Utc::now() + Duration::days(80)).await.unwrap();
    assert!(report.warnings.iter().any(|p| p.image_id.as_str() == images[0]), "{report:#?}");
    let got = inbox.receive(1, std::time::Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        (got[0].severity.as_deref(), got[0].kind.as_deref()),
        (Some("INFO"), Some("deprecation-upcoming"))
    );
    assert!(got[0].message["text"].as_str().unwrap().contains(&images[0]));
    // 120 days on: the older one would retire; the report says so, with the reason.
    enforcer.sweep(&region, Utc::now() + Duration::days(120)).await.unwrap();
    let got = inbox.receive(1, std::time::Duration::from_secs(10)).await.unwrap();
    assert_eq!(got[0].kind.as_deref(), Some("deprecation-retirement"));
    let subject = got[0].subject.clone().unwrap();
    assert!(
        subject.starts_with("[WARNING] deprecation (report mode): would deregister"),
        "{subject}"
    );
    let text = got[0].message["text"].as_str().unwrap();
    assert!(text.contains(&images[0]) && text.contains("past deadline + grace, unused"), "{text}");
}

#[tokio::test]
async fn a_removed_deadline_is_set_again_unless_the_image_is_exempt() {
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    let table = stack::fresh_lineage_table(&sdk, "deprecation-removed").await;
    let inbox = warden_testkit::inbox::Inbox::create(
        &sdk,
        &format!("deprecation-removed-{}", std::process::id()),
    )
    .await
    .unwrap();
    let trail = Trail::new(ACCOUNT, "someone");
    let region = "ap-south-1";
    let (plain, _) = share::register_image(&sdk, region, "removed-plain").await.unwrap();
    let (exempt, _) = share::register_image(&sdk, region, "removed-exempt").await.unwrap();
    share::tag(&sdk, region, &exempt, "ami-warden:exempt", "yes").await.unwrap();
    let ec2_client = warden_testkit::story::ec2(&sdk, region);
    let removal = |image: &str| {
        trail.api_call(
            region,
            "DisableImageDeprecation",
            serde_json::json!({"imageId": image}),
            serde_json::json!({"_return": true}),
        )
    };
    for image in [&plain, &exempt] {
        estate::deprecate_at(&sdk, region, image, Utc::now() + Duration::days(30)).await.unwrap();
        ec2_client.disable_image_deprecation().image_id(image.as_str()).send().await.unwrap();
    }
    let ec2 = Ec2Deprecation::new(&clients);
    let (lineage, audit) =
        (LineageTable::from_clients(&clients, &table), AuditTable::new(&clients, &table));
    let ledger = LedgerTable::new(&clients, &table);
    let notifier = SnsNotifier::new(&clients, &inbox.topic_arn);
    let settings = settings(Mode::Enforce);
    let enforcer = Enforcer {
        ec2: &ec2,
        lineage: &lineage,
        audit: &audit,
        ledger: &ledger,
        notifier: Some(&notifier),
        settings: &settings,
        own_account: AccountId::parse(ACCOUNT),
        stop_by: None,
    };
    let outcome = enforcer.on_event(&parse_value(&removal(&plain)), Utc::now()).await.unwrap();
    assert!(matches!(outcome, EventOutcome::Stamped { .. }), "{outcome:?}");
    let outcome = enforcer.on_event(&parse_value(&removal(&exempt)), Utc::now()).await.unwrap();
    assert!(
        matches!(&outcome, EventOutcome::Unchanged { reason, .. } if reason.starts_with("exempt")),
        "{outcome:?}"
    );
    let got = inbox.receive(1, std::time::Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        (got[0].severity.as_deref(), got[0].kind.as_deref()),
        (Some("WARNING"), Some("deprecation-removed"))
    );
    assert!(
        got[0].message["text"].as_str().unwrap().contains("assumed-role/someone"),
        "{:?}",
        got[0].message
    );
    let described = ec2_client.describe_images().image_ids(&plain).send().await.unwrap();
    assert!(described.images()[0].deprecation_time().is_some(), "set again");
}

/// What happens at the last check before deregistering.
#[derive(Clone, Copy, PartialEq)]
enum AtLastCheck {
    /// Another pipeline has just put the images into a new launch template.
    NewTemplate,
    /// DescribeImageReferences answers that it is not available (it answered the plan).
    Unavailable,
    /// Someone tags the images exempt.
    Exempted,
    /// Someone moves their deadlines past the time of the sweep.
    DeadlineMoved,
    /// Someone shares them with another account (the plan read their launch permissions from
    /// EC2, not from the share ledger).
    Shared,
    /// Nothing, but EC2 refuses the deregistration that follows.
    DeregistrationRefused,
    /// Right before the deregistrations, someone disables the family's two newer images: the
    /// oldest is now the newest that can be launched.
    NewerDisabled,
    /// Nothing, but every deregistration takes until then: the run's time runs out while the
    /// first retirements are under way.
    SlowDeregistrations(std::time::Instant),
}

/// The real adapter, except for what happens at the last check (the second
/// DescribeImageReferences lookup of the sweep).
struct LateTemplate {
    real: Ec2Deprecation,
    sdk: aws_config::SdkConfig,
    region: &'static str,
    at_last_check: AtLastCheck,
    reference_calls: std::sync::atomic::AtomicUsize,
    listings: std::sync::atomic::AtomicUsize,
    deregistrations: std::sync::atomic::AtomicUsize,
    /// The family's images newer than the oldest.
    newer: Vec<String>,
}

impl DeprecationEc2 for LateTemplate {
    async fn images(
        &self,
        r: &Region,
    ) -> Result<Vec<warden::deprecation::ImageFacts>, warden::catalogue::CatalogueError> {
        // The second listing is the one right before the deregistrations.
        if self.listings.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1
            && self.at_last_check == AtLastCheck::NewerDisabled
        {
            for image in &self.newer {
                snaps::disable_image(&self.sdk, self.region, image).await.unwrap();
            }
        }
        self.real.images(r).await
    }
    async fn image(
        &self,
        r: &Region,
        i: &warden::ids::ImageId,
    ) -> Result<Option<warden::deprecation::ImageFacts>, warden::catalogue::CatalogueError> {
        self.real.image(r, i).await
    }
    async fn usage(&self, r: &Region) -> warden::deprecation::InUseIndex {
        self.real.usage(r).await
    }
    async fn add_references(
        &self,
        r: &Region,
        images: &[warden::ids::ImageId],
        index: &mut warden::deprecation::InUseIndex,
    ) {
        if self.reference_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            if self.at_last_check == AtLastCheck::Unavailable {
                index.references_unavailable = true;
                return;
            }
            let named: Vec<&str> = images.iter().map(|i| i.as_str()).collect();
            for image in &named {
                match self.at_last_check {
                    AtLastCheck::Exempted => {
                        share::tag(&self.sdk, self.region, image, "ami-warden:exempt", "late")
                            .await
                            .unwrap()
                    }
                    AtLastCheck::DeadlineMoved => estate::deprecate_at(
                        &self.sdk,
                        self.region,
                        image,
                        Utc::now() + Duration::days(400),
                    )
                    .await
                    .unwrap(),
                    AtLastCheck::Shared => {
                        let trail = Trail::new(ACCOUNT, "image-pipeline");
                        share::modify_launch_permission(
                            &self.sdk,
                            &trail,
                            self.region,
                            image,
                            &[Share::Account("222233334444".into())],
                            &[],
                        )
                        .await
                        .unwrap();
                    }
                    AtLastCheck::NewTemplate
                    | AtLastCheck::Unavailable
                    | AtLastCheck::DeregistrationRefused
                    | AtLastCheck::NewerDisabled
                    | AtLastCheck::SlowDeregistrations(_) => {}
                }
            }
            if self.at_last_check == AtLastCheck::NewTemplate {
                estate::launch_template(
                    &self.sdk,
                    self.region,
                    &format!("late-{}", std::process::id()),
                    &named,
                )
                .await
                .unwrap();
            }
        }
        self.real.add_references(r, images, index).await
    }
    async fn launch_permissions(
        &self,
        r: &Region,
        i: &warden::ids::ImageId,
    ) -> Result<Vec<warden::event::Grantee>, warden::catalogue::CatalogueError> {
        self.real.launch_permissions(r, i).await
    }
    async fn enable_deprecation(
        &self,
        r: &Region,
        i: &warden::ids::ImageId,
        at: chrono::DateTime<Utc>,
    ) -> Result<(), warden::catalogue::CatalogueError> {
        self.real.enable_deprecation(r, i, at).await
    }
    async fn deregister(
        &self,
        r: &Region,
        i: &warden::ids::ImageId,
    ) -> Result<(), warden::catalogue::CatalogueError> {
        if self.at_last_check == AtLastCheck::DeregistrationRefused {
            return Err(warden::catalogue::CatalogueError {
                operation: "DeregisterImage",
                region: r.clone(),
                message: "InternalError: refused".into(),
            });
        }
        let result = self.real.deregister(r, i).await;
        if let AtLastCheck::SlowDeregistrations(until) = self.at_last_check {
            self.deregistrations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
        }
        result
    }
    async fn image_retention_rules(
        &self,
        r: &Region,
    ) -> Result<Vec<warden::recycle_bin::RetentionRule>, warden::catalogue::CatalogueError> {
        self.real.image_retention_rules(r).await
    }
    async fn mark_retired(
        &self,
        r: &Region,
        i: &warden::ids::ImageId,
    ) -> Result<(), warden::catalogue::CatalogueError> {
        self.real.mark_retired(r, i).await
    }
    async fn unmark_retired(
        &self,
        r: &Region,
        i: &warden::ids::ImageId,
    ) -> Result<(), warden::catalogue::CatalogueError> {
        self.real.unmark_retired(r, i).await
    }
}

/// A family of three images in `region`, oldest first, whose deadlines are a day away:
/// `(image, its snapshot)`. Two hundred days on, with keep-latest 2, the oldest is due.
async fn family_of_three(
    sdk: &aws_config::SdkConfig,
    region: &str,
    family: &str,
) -> Vec<(String, String)> {
    let mut ids = Vec::new();
    for n in 0..3 {
        let (id, snapshot) =
            share::register_image(sdk, region, &format!("{family}-{n}")).await.unwrap();
        share::tag(sdk, region, &id, "ami-warden:family", family).await.unwrap();
        estate::deprecate_at(sdk, region, &id, Utc::now() + Duration::days(1)).await.unwrap();
        ids.push((id, snapshot));
    }
    ids
}

/// A sweep in enforce mode of a family of three in a region of its own (the oldest is due),
/// with `at_last_check` happening at the last check; the oldest image's decision.
async fn enforce_with(
    region: &'static str,
    at_last_check: AtLastCheck,
) -> (Decision, SweepReport, usize) {
    recycle_bin::add_template_image_rule(ACCOUNT, region).await.unwrap();
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    let table = stack::fresh_lineage_table(&sdk, "deprecation-late").await;
    let ids: Vec<String> = family_of_three(&sdk, region, &format!("late{}", std::process::id()))
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let stores = Stores::new(&clients, &table);
    let ec2 = LateTemplate {
        real: Ec2Deprecation::new(&clients),
        sdk: sdk.clone(),
        region,
        at_last_check,
        reference_calls: Default::default(),
        listings: Default::default(),
        deregistrations: Default::default(),
        newer: ids[1..].to_vec(),
    };
    let settings = settings(Mode::Enforce);
    // A day past the deadlines and the grace: the oldest of three (keep-latest 2) is due.
    let report = stores
        .enforcer(&ec2, &settings)
        .sweep(&Region::parse(region).unwrap(), Utc::now() + Duration::days(200))
        .await
        .unwrap();
    let oldest = report
        .planned
        .iter()
        .find(|p| p.image_id.as_str() == ids[0])
        .expect("planned")
        .decision
        .clone();
    (oldest, report, ec2.reference_calls.load(std::sync::atomic::Ordering::SeqCst))
}

#[tokio::test]
async fn an_image_a_launch_template_names_at_the_last_moment_is_kept() {
    let (oldest, report, lookups) = enforce_with("ap-south-2", AtLastCheck::NewTemplate).await;
    assert!(
        matches!(&oldest, Decision::Keep(Keep::InUse(uses)) if uses.iter().any(|u| u.contains("ec2:LaunchTemplate"))),
        "{oldest:?}"
    );
    assert!(report.deregistered.is_empty(), "{report:?}");
    assert_eq!(lookups, 2, "the plan's lookup and the last check");
}

#[tokio::test]
async fn references_gone_missing_at_the_last_check_keep_the_images() {
    let (oldest, report, lookups) = enforce_with("eu-south-2", AtLastCheck::Unavailable).await;
    assert!(
        matches!(&oldest, Decision::Keep(Keep::LookupFailed(why)) if why[0].contains("not available")),
        "{oldest:?}"
    );
    assert!(report.deregistered.is_empty(), "{report:?}");
    assert_eq!(lookups, 2);
}

#[tokio::test]
async fn an_image_tagged_exempt_at_the_last_moment_is_kept() {
    let (oldest, report, _) = enforce_with("ap-southeast-3", AtLastCheck::Exempted).await;
    assert_eq!(
        oldest,
        Decision::Keep(Keep::Exempt { tag: "ami-warden:exempt".into(), value: "late".into() })
    );
    assert!(report.deregistered.is_empty(), "{report:?}");
}

#[tokio::test]
async fn an_image_whose_deadline_moves_at_the_last_moment_is_kept() {
    let (oldest, report, _) = enforce_with("eu-west-3", AtLastCheck::DeadlineMoved).await;
    assert!(matches!(&oldest, Decision::Keep(Keep::NotPastGrace { .. })), "{oldest:?}");
    assert!(report.deregistered.is_empty(), "{report:?}");
}

#[tokio::test]
async fn an_image_shared_at_the_last_moment_is_kept() {
    let (oldest, report, _) = enforce_with("sa-east-1", AtLastCheck::Shared).await;
    assert_eq!(
        oldest,
        Decision::Keep(Keep::SharedWith(vec![warden::event::Grantee::Account(
            "222233334444".into()
        )]))
    );
    assert!(report.deregistered.is_empty(), "{report:?}");
}

#[tokio::test]
async fn an_image_that_became_its_familys_newest_at_the_last_moment_is_kept() {
    let (oldest, report, _) = enforce_with("ap-east-2", AtLastCheck::NewerDisabled).await;
    assert!(matches!(&oldest, Decision::Keep(Keep::NewestOfFamily { rank: 1, .. })), "{oldest:?}");
    assert!(report.deregistered.is_empty(), "{report:?}");
}

#[tokio::test]
async fn a_refused_deregistration_takes_the_retired_tag_off_again() {
    let region = "ca-west-1";
    let (oldest, report, _) = enforce_with(region, AtLastCheck::DeregistrationRefused).await;
    assert_eq!(oldest, Decision::Deregister, "the decision stands; the action failed");
    assert!(report.deregistered.is_empty(), "{report:?}");
    assert!(
        report.errors.iter().any(|e| e.starts_with("deregistering ami-") && e.contains("refused")),
        "{:?}",
        report.errors
    );
    let image = report.to_deregister().next().expect("the oldest").image_id.to_string();
    let described = warden_testkit::story::ec2(&stack::sdk_config().await, region)
        .describe_images()
        .image_ids(&image)
        .send()
        .await
        .unwrap();
    let tags: Vec<&str> = described.images()[0].tags().iter().filter_map(|t| t.key()).collect();
    assert!(!tags.contains(&"ami-warden:retired"), "untagged again: {tags:?}");
}

#[tokio::test]
async fn images_a_fleet_or_spot_request_names_directly_are_in_use() {
    let region = "il-central-1";
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    let table = stack::fresh_lineage_table(&sdk, "deprecation-fleets").await;
    let family = format!("fleet{}", std::process::id());
    let mut ids = BTreeMap::new();
    // Three used only by a fleet or a Spot request, then two newer ones (keep-latest 2).
    for label in ["spot-fleet", "ec2-fleet", "spot-request", "newer-1", "newer-2"] {
        let (id, _) =
            share::register_image(&sdk, region, &format!("{family}-{label}")).await.unwrap();
        share::tag(&sdk, region, &id, "ami-warden:family", &family).await.unwrap();
        estate::deprecate_at(&sdk, region, &id, Utc::now() + Duration::days(1)).await.unwrap();
        ids.insert(label, id);
    }
    estate::spot_fleet(&sdk, region, &ids["spot-fleet"]).await.unwrap();
    estate::ec2_fleet(&sdk, region, &format!("fleet-{family}"), &ids["newer-2"], &ids["ec2-fleet"])
        .await
        .unwrap();
    let request = estate::spot_request(&sdk, region, &ids["spot-request"]).await.unwrap();
    let settings = settings(Mode::Report);
    let report = Stores::new(&clients, &table)
        .enforcer(&Ec2Deprecation::new(&clients), &settings)
        .sweep(&Region::parse(region).unwrap(), Utc::now() + Duration::days(200))
        .await
        .unwrap();
    let reason = |label: &str| {
        report
            .planned
            .iter()
            .find(|p| p.image_id.as_str() == ids[label])
            .expect("planned")
            .decision
            .reason()
    };
    assert!(reason("spot-fleet").contains("Spot Fleet sfr-"), "{}", reason("spot-fleet"));
    assert!(reason("ec2-fleet").contains("EC2 Fleet fleet-"), "{}", reason("ec2-fleet"));
    assert!(
        reason("spot-request").contains(&format!("Spot request {request}")),
        "{}",
        reason("spot-request")
    );
}

#[tokio::test]
async fn an_image_is_retired_only_where_the_recycle_bin_keeps_it_and_a_restored_one_stays() {
    // A region of its own: with no Recycle Bin rule there at first.
    let region = "ap-southeast-6";
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    let table = stack::fresh_lineage_table(&sdk, "deprecation-bin").await;
    let (oldest, oldest_snapshot) =
        family_of_three(&sdk, region, &format!("bin{}", std::process::id())).await.remove(0);
    let stores = Stores::new(&clients, &table);
    let ec2 = Ec2Deprecation::new(&clients);
    let r = Region::parse(region).unwrap();
    // A day past the deadlines and the grace: the oldest of three (keep-latest 2) is due.
    let later = Utc::now() + Duration::days(200);
    let decision = |report: &SweepReport| {
        report
            .planned
            .iter()
            .find(|p| p.image_id.as_str() == oldest)
            .expect("planned")
            .decision
            .clone()
    };

    // No rule: kept, in report mode as in enforce mode, and the run says why.
    for mode in [Mode::Report, Mode::Enforce] {
        let settings = settings(mode);
        let report = stores.enforcer(&ec2, &settings).sweep(&r, later).await.unwrap();
        assert_eq!(decision(&report), Decision::Keep(Keep::NotRecoverable(r.clone())), "{mode:?}");
        assert!(report.deregistered.is_empty());
        assert!(
            report.errors.iter().any(|e| e.starts_with(&format!(
                "no Recycle Bin rule in {region} keeps images tagged ami-warden:retired=true"
            ))),
            "{:?}",
            report.errors
        );
    }

    // The template's rule: retired — tagged, deregistered, in the bin — with its snapshot on
    // its lineage node, so the reaper knows what it needs while it is there.
    recycle_bin::add_template_image_rule(ACCOUNT, region).await.unwrap();
    let settings = settings(Mode::Enforce);
    let client = warden_testkit::story::ec2(&sdk, region);

    // Out of time (a Lambda near its deadline): no retirement or stamp is started, and the
    // report says what is left for the next sweep.
    let (undated, _) =
        share::register_image(&sdk, region, &format!("undated{}", std::process::id()))
            .await
            .unwrap();
    let hurried =
        Enforcer { stop_by: Some(std::time::Instant::now()), ..stores.enforcer(&ec2, &settings) };
    let report = hurried.sweep(&r, later).await.unwrap();
    let ids =
        |list: &[warden::ids::ImageId]| list.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(decision(&report), Decision::Deregister);
    assert!(report.deregistered.is_empty() && report.stamped.is_empty(), "{report:#?}");
    assert_eq!(
        (ids(&report.retirements_left), ids(&report.stamps_left)),
        (vec![oldest.clone()], vec![undated.clone()])
    );
    let described =
        client.describe_images().image_ids(&oldest).image_ids(&undated).send().await.unwrap();
    assert_eq!(described.images().len(), 2);
    for image in described.images() {
        assert!(image.tags().iter().all(|t| t.key() != Some("ami-warden:retired")), "{image:?}");
    }
    assert!(described
        .images()
        .iter()
        .any(|i| i.image_id() == Some(undated.as_str()) && i.deprecation_time().is_none()));

    let report = stores.enforcer(&ec2, &settings).sweep(&r, later).await.unwrap();
    assert_eq!(
        report.deregistered.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec![oldest.clone()],
        "{report:#?}"
    );
    assert!(report.retirements_left.is_empty() && report.stamps_left.is_empty(), "{report:#?}");
    let bin = client.list_images_in_recycle_bin().send().await.unwrap();
    assert_eq!(
        bin.images().iter().filter_map(|i| i.image_id()).collect::<Vec<_>>(),
        vec![oldest.as_str()]
    );
    let node = stores
        .lineage
        .node(&warden::ids::ImageRef::new(r.clone(), warden::ids::ImageId::parse(&oldest).unwrap()))
        .await
        .unwrap()
        .expect("a lineage node");
    assert_eq!(
        node.snapshots.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec![oldest_snapshot]
    );

    // Restored, it is back with the tag that says it was retired, and the enforcer leaves it.
    client.restore_image_from_recycle_bin().image_id(&oldest).send().await.unwrap();
    let described = client.describe_images().image_ids(&oldest).send().await.unwrap();
    let tags: Vec<(&str, &str)> =
        described.images()[0].tags().iter().filter_map(|t| Some((t.key()?, t.value()?))).collect();
    assert!(tags.contains(&("ami-warden:retired", "true")), "{tags:?}");
    let again = stores.enforcer(&ec2, &settings).sweep(&r, later).await.unwrap();
    assert_eq!(decision(&again), Decision::Keep(Keep::Restored));
    assert!(again.deregistered.is_empty(), "{again:#?}");
}

/// DescribeImageReferences' refusals through the real adapter, answered by a proxy in front of
/// the local stack. `InvalidAction` to every request: EC2 has no such API in this region, so
/// references are not checked and the other lookups stand. `InvalidAction` to only some, or
/// `UnsupportedOperation` (about one request, not the API): a failed lookup, which keeps every
/// image.
#[tokio::test]
async fn describe_image_references_refusals_are_told_apart() {
    use warden::deprecation::InUseIndex;
    use warden_testkit::faults::{FaultProxy, Mix};

    let proxy = FaultProxy::in_front_of_local_stack(Mix::NONE, 8).await;
    let clients = Clients::new(&proxy.sdk_config(&warden::aws::load_sdk_config().await).await);
    let ec2 = Ec2Deprecation::new(&clients);
    // The emulator answers about any id; none of these is registered anywhere.
    let region = Region::parse("ca-west-1").unwrap();
    let one = [warden::ids::ImageId::parse("ami-0123456789abcdef0").unwrap()];
    let eleven: Vec<_> =
        (0..11).map(|n| warden::ids::ImageId::parse(&format!("ami-{n:017x}")).unwrap()).collect();
    let lookup = |images: Vec<warden::ids::ImageId>, refusals: &[&'static str]| {
        for code in refusals {
            proxy.refuse_next("DescribeImageReferences", code);
        }
        let (ec2, region) = (&ec2, &region);
        async move {
            let mut index = InUseIndex::default();
            ec2.add_references(region, &images, &mut index).await;
            index
        }
    };

    let answered = lookup(one.to_vec(), &[]).await;
    assert!(answered.failures.is_empty() && !answered.references_unavailable, "{answered:?}");

    let unsupported = lookup(one.to_vec(), &["UnsupportedOperation"]).await;
    assert!(!unsupported.references_unavailable, "{unsupported:?}");
    assert!(
        matches!(unsupported.failures.as_slice(), [f] if f.contains("DescribeImageReferences") && f.contains("UnsupportedOperation")),
        "{unsupported:?}"
    );

    let unavailable = lookup(eleven.clone(), &["InvalidAction", "InvalidAction"]).await;
    assert!(
        unavailable.references_unavailable && unavailable.failures.is_empty(),
        "{unavailable:?}"
    );

    let half = lookup(eleven, &["InvalidAction"]).await;
    assert!(!half.references_unavailable, "{half:?}");
    assert!(matches!(half.failures.as_slice(), [f] if f.contains("1 of 2 requests")), "{half:?}");
}

/// Time runs out while the first retirements are under way (every deregistration is slow):
/// those started finish, and the images after them are neither tagged nor deregistered, and
/// the report leaves them for the next sweep. In an account of its own (reached through its
/// role, as a member), so no other test's sweep sees these images.
#[tokio::test]
async fn time_running_out_during_the_first_retirements_leaves_the_rest_untouched() {
    let (member, region) = ("210987654377", "us-west-2");
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    warden_testkit::accounts::create_member_role(&sdk, member, "AmiWardenMember", ACCOUNT)
        .await
        .unwrap();
    recycle_bin::add_template_image_rule(member, region).await.unwrap();
    let in_member =
        warden::aws::org::assume(&clients, &AccountId::parse(member).unwrap(), "AmiWardenMember")
            .await
            .unwrap();
    let ec2_client = warden_testkit::accounts::ec2(&sdk, member, region);
    let family = format!("hurry{}", std::process::id());
    // As many due as run at once, and two more (keep-latest 2 keeps the two newest).
    let in_flight = LAST_CHECK_BATCH * BATCHES_AT_ONCE;
    let mut ids = Vec::new();
    for n in 0..in_flight + 4 {
        let id = warden_testkit::accounts::register_image(
            &sdk,
            member,
            region,
            &format!("{family}-{n:02}"),
        )
        .await
        .unwrap();
        let tag =
            aws_sdk_ec2::types::Tag::builder().key("ami-warden:family").value(&family).build();
        ec2_client.create_tags().resources(&id).tags(tag).send().await.unwrap();
        let at = aws_sdk_ec2::primitives::DateTime::from_secs(
            (Utc::now() + Duration::days(1)).timestamp(),
        );
        ec2_client.enable_image_deprecation().image_id(&id).deprecate_at(at).send().await.unwrap();
        ids.push(id);
    }
    let table = stack::fresh_lineage_table(&sdk, "deprecation-hurry").await;
    let stores = Stores::new(&clients, &table);
    let settings = settings(Mode::Enforce);
    let stop_by = std::time::Instant::now() + std::time::Duration::from_secs(8);
    let ec2 = LateTemplate {
        real: Ec2Deprecation::new(&in_member),
        sdk: sdk.clone(),
        region,
        at_last_check: AtLastCheck::SlowDeregistrations(stop_by),
        reference_calls: Default::default(),
        listings: Default::default(),
        deregistrations: Default::default(),
        newer: Vec::new(),
    };
    let enforcer = Enforcer {
        own_account: AccountId::parse(member),
        stop_by: Some(stop_by),
        ..stores.enforcer(&ec2, &settings)
    };
    // Two hundred days on, with keep-latest 2, all but the two newest are due.
    let report = enforcer
        .sweep(&Region::parse(region).unwrap(), Utc::now() + Duration::days(200))
        .await
        .unwrap();

    let strings =
        |list: &[warden::ids::ImageId]| list.iter().map(ToString::to_string).collect::<Vec<_>>();
    let (retired, left) = (strings(&report.deregistered), strings(&report.retirements_left));
    assert_eq!((retired.len(), left.len()), (in_flight, 2), "{report:#?}");
    let mut both: Vec<String> = retired.iter().chain(&left).cloned().collect();
    both.sort();
    let mut due = ids[..in_flight + 2].to_vec();
    due.sort();
    assert_eq!(both, due, "the due images: those under way retired, the rest left");
    assert_eq!(report.to_deregister().count(), in_flight + 2, "all stay due in the plan");
    for image in &left {
        let described = ec2_client.describe_images().image_ids(image).send().await.unwrap();
        let image = &described.images()[0];
        assert!(image.tags().iter().all(|t| t.key() != Some("ami-warden:retired")), "{image:?}");
    }
    assert!(
        ec2_client
            .describe_images()
            .image_ids(&retired[0])
            .send()
            .await
            .unwrap()
            .images()
            .is_empty(),
        "retired"
    );
    let text = warden::deprecation::run::retirement_notification(&report).text;
    assert!(
        text.contains("2 retirement(s) and 0 deadline(s) are left for the next sweep"),
        "{text}"
    );
}
