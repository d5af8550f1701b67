//! The snapshot reaper against the local stack: a trap estate built with real EC2 calls on
//! moto (a snapshot shared by two images, one behind a disabled image, an exempt one, a true
//! orphan, one another pipeline grabs at the last moment), the deregistrations' events, the
//! real adapters, and the audit trail in DynamoDB.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use warden::aws::{
    audit::AuditTable, ec2::Ec2Catalogue, idempotency::IdempotencyTable, ledger::LedgerTable,
    lineage_table::LineageTable, snapshots::Ec2Snapshots, sns::SnsNotifier, Clients,
};
use warden::catalogue::CatalogueError;
use warden::config::Mode;
use warden::event::parse_value;
use warden::ids::{AccountId, ImageId, ImageRef, Region, SnapshotId};
use warden::lineage::LineageStore;
use warden::reaper::run::{Action, EventOutcome, Reaper, ReaperError, RunReport};
use warden::reaper::{
    DeleteError, ImageIndex, Settings, SnapshotEc2, SnapshotInfo, REAPED_TAG_KEY, REAPED_TAG_VALUE,
};
use warden::recorder::record;
use warden_testkit::cloudtrail::Trail;
use warden_testkit::inbox::Inbox;
use warden_testkit::recycle_bin;
use warden_testkit::snapshots as estate;
use warden_testkit::stack;

const ACCOUNT: &str = "123456789012";

fn settings(mode: Mode, min_age_days: u32) -> Settings {
    Settings {
        mode,
        min_age_days,
        exempt_tag_key: "ami-warden:exempt".into(),
        price_per_gb_month: 0.05,
    }
}

/// The real adapters over the local stack, for sweeps.
struct Adapters {
    ec2: Ec2Snapshots,
    lineage: LineageTable,
    audit: AuditTable,
    idempotency: IdempotencyTable,
    ledger: LedgerTable,
}

type SweepReaper<'a> =
    Reaper<'a, Ec2Snapshots, LineageTable, AuditTable, IdempotencyTable, SnsNotifier, LedgerTable>;

impl Adapters {
    fn reaper<'a>(&'a self, settings: &'a Settings) -> SweepReaper<'a> {
        self.reaper_over(&self.ec2, settings)
    }

    /// The reaper over another EC2 adapter (one of the [`Twisted`] ones).
    fn reaper_over<'a, E: SnapshotEc2>(
        &'a self,
        ec2: &'a E,
        settings: &'a Settings,
    ) -> Reaper<'a, E, LineageTable, AuditTable, IdempotencyTable, SnsNotifier, LedgerTable> {
        Reaper {
            ec2,
            lineage: &self.lineage,
            audit: &self.audit,
            ledger: &self.ledger,
            idempotency: &self.idempotency,
            notifier: None,
            settings,
            own_account: AccountId::parse(ACCOUNT),
            stop_by: None,
        }
    }
}

struct World {
    sdk: SdkConfig,
    clients: Clients,
    table: String,
    trail: Trail,
    region: &'static str,
    inbox: Inbox,
}

impl World {
    /// A world whose region has the Recycle Bin rule `template.yaml` deploys (the reaper
    /// deletes only where one keeps what it deletes).
    async fn new(name: &str, region: &'static str) -> Self {
        recycle_bin::add_template_rule(ACCOUNT, region).await.unwrap();
        Self::without_recycle_bin_rule(name, region).await
    }

    async fn without_recycle_bin_rule(name: &str, region: &'static str) -> Self {
        let sdk = stack::sdk_config().await;
        let table = stack::fresh_lineage_table(&sdk, name).await;
        let inbox = Inbox::create(&sdk, &format!("{name}-{}", std::process::id())).await.unwrap();
        Self {
            clients: Clients::new(&sdk),
            sdk,
            table,
            trail: Trail::new(ACCOUNT, "image-pipeline"),
            region,
            inbox,
        }
    }

    /// An image registered from `snapshot`, recorded in the lineage by the real recorder.
    async fn image_from(&self, name: &str, snapshot: &str) -> String {
        let (image, event) =
            estate::register_from(&self.sdk, &self.trail, self.region, name, snapshot)
                .await
                .unwrap();
        let store = LineageTable::from_clients(&self.clients, &self.table);
        record(&parse_value(&event), &Ec2Catalogue::new(&self.clients), &store).await.unwrap();
        image
    }

    /// An image made with CreateImage (from an instance of a registered base image), so AWS
    /// wrote its snapshot's description, and recorded by the recorder when it became available:
    /// `(image, snapshot)`, the snapshot an orphan once the image is deregistered.
    async fn made_image(&self, name: &str) -> (String, String) {
        let base_snap = self.snapshot(&format!("{name} base root")).await;
        let base = self.image_from(&format!("{name}-base"), &base_snap).await;
        let (image, snapshot) =
            estate::create_image_from_instance(&self.sdk, self.region, &base, name).await.unwrap();
        let store = LineageTable::from_clients(&self.clients, &self.table);
        let available = self.trail.ami_state_change(self.region, &image, "available");
        record(&parse_value(&available), &Ec2Catalogue::new(&self.clients), &store).await.unwrap();
        (image, snapshot)
    }

    fn adapters(&self) -> Adapters {
        Adapters {
            ec2: Ec2Snapshots::new(&self.clients),
            lineage: LineageTable::from_clients(&self.clients, &self.table),
            audit: AuditTable::new(&self.clients, &self.table),
            idempotency: IdempotencyTable::new(&self.clients, &self.table),
            ledger: LedgerTable::new(&self.clients, &self.table),
        }
    }

    async fn snapshot(&self, description: &str) -> String {
        estate::create_snapshot(&self.sdk, self.region, 8, description).await.unwrap()
    }

    async fn reap_with(
        &self,
        ec2: &impl SnapshotEc2,
        settings: &Settings,
        event: &serde_json::Value,
    ) -> EventOutcome {
        self.try_reap_with(ec2, settings, event).await.expect("the reaper runs")
    }

    async fn try_reap_with(
        &self,
        ec2: &impl SnapshotEc2,
        settings: &Settings,
        event: &serde_json::Value,
    ) -> Result<EventOutcome, ReaperError> {
        let lineage = LineageTable::from_clients(&self.clients, &self.table);
        let audit = AuditTable::new(&self.clients, &self.table);
        let idempotency = IdempotencyTable::new(&self.clients, &self.table);
        let ledger = LedgerTable::new(&self.clients, &self.table);
        let notifier = SnsNotifier::new(&self.clients, &self.inbox.topic_arn);
        let reaper = Reaper {
            ec2,
            lineage: &lineage,
            audit: &audit,
            ledger: &ledger,
            idempotency: &idempotency,
            notifier: Some(&notifier),
            settings,
            own_account: AccountId::parse(ACCOUNT),
            stop_by: None,
        };
        reaper.on_event(&parse_value(event), Utc::now()).await
    }

    async fn reap(&self, settings: &Settings, event: &serde_json::Value) -> RunReport {
        match self.reap_with(&Ec2Snapshots::new(&self.clients), settings, event).await {
            EventOutcome::Reaped { report } => report,
            other => panic!("expected a run, got {other:?}"),
        }
    }

    /// Shares `snapshot` with the partner account 222233334444 (a real ModifySnapshotAttribute);
    /// the CloudTrail event it would produce.
    async fn share_with_partner(&self, snapshot: &str) -> serde_json::Value {
        let partner = [warden_testkit::exposure::Share::Account("222233334444".into())];
        warden_testkit::exposure::modify_snapshot_permission(
            &self.sdk,
            &self.trail,
            self.region,
            snapshot,
            true,
            &partner,
        )
        .await
        .unwrap()
    }

    async fn deregister(&self, image: &str) -> serde_json::Value {
        estate::deregister(&self.sdk, &self.trail, self.region, image, false).await.unwrap()
    }

    async fn exists(&self, snapshot: &str) -> Option<Vec<(String, String)>> {
        estate::snapshot_tags(&self.sdk, self.region, snapshot).await.unwrap()
    }

    async fn audit_items(&self, snapshot: &str) -> Vec<HashMap<String, AttributeValue>> {
        let out = self
            .clients
            .dynamodb()
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                AttributeValue::S(format!("SNAP#{}#{snapshot}", self.region)),
            )
            .send()
            .await
            .unwrap();
        out.items().to_vec()
    }
}

fn only(report: &RunReport) -> &warden::reaper::run::Outcome {
    assert_eq!(report.outcomes.len(), 1, "{report:#?}");
    &report.outcomes[0]
}

#[tokio::test]
async fn a_snapshot_that_also_backs_another_image_is_kept() {
    let w = World::new("reaper-shared", "eu-central-1").await;
    let (first, snap) = w.made_image("shared-a").await;
    let second = w.image_from("shared-b", &snap).await;
    let report = w.reap(&settings(Mode::Enforce, 0), &w.deregister(&first).await).await;
    let o = only(&report);
    assert_eq!((o.decision, &o.action), ("keep", &Action::Kept));
    assert_eq!(o.reason, format!("backs image(s) {second}"));
    assert!(w.exists(&snap).await.is_some());
}

#[tokio::test]
async fn a_snapshot_behind_a_disabled_image_is_kept() {
    let w = World::new("reaper-disabled", "eu-central-1").await;
    let (gone, snap) = w.made_image("disabled-a").await;
    let disabled = w.image_from("disabled-b", &snap).await;
    estate::disable_image(&w.sdk, w.region, &disabled).await.unwrap();
    let report = w.reap(&settings(Mode::Enforce, 0), &w.deregister(&gone).await).await;
    assert_eq!(only(&report).reason, format!("backs image(s) {disabled}"));
    assert!(w.exists(&snap).await.is_some());
}

#[tokio::test]
async fn an_exempt_snapshot_is_kept() {
    let w = World::new("reaper-exempt", "eu-central-1").await;
    let (image, snap) = w.made_image("exempt").await;
    warden_testkit::exposure::tag(&w.sdk, w.region, &snap, "ami-warden:exempt", "legal")
        .await
        .unwrap();
    let report = w.reap(&settings(Mode::Enforce, 0), &w.deregister(&image).await).await;
    assert_eq!(only(&report).reason, "exempt: tagged ami-warden:exempt=legal");
    assert!(w.exists(&snap).await.is_some());
}

#[tokio::test]
async fn a_snapshot_shared_with_another_account_is_kept() {
    let w = World::new("reaper-shared-out", "eu-central-1").await;
    let (image, snap) = w.made_image("shared-out").await;
    w.share_with_partner(&snap).await;
    let report = w.reap(&settings(Mode::Enforce, 0), &w.deregister(&image).await).await;
    assert_eq!(only(&report).reason, "shared with account 222233334444");
    assert!(w.exists(&snap).await.is_some());
}

#[tokio::test]
async fn a_true_orphan_is_tagged_then_deleted_audited_and_noted_on_its_lineage_node() {
    let w = World::new("reaper-orphan", "eu-central-1").await;
    let (image, snap) = w.made_image("orphan").await;
    let event = w.deregister(&image).await;
    let report = w.reap(&settings(Mode::Enforce, 0), &event).await;
    let o = only(&report);
    assert_eq!((o.decision, &o.action, o.size_gib), ("delete", &Action::Deleted, 15)); // moto makes 15 GiB roots
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(w.exists(&snap).await, None, "deleted");
    assert_eq!(report.deleted_gib(), 15);

    let audit = w.audit_items(&snap).await;
    assert_eq!(audit.len(), 1);
    let attr = |k: &str| audit[0].get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    assert_eq!(
        (attr("decision"), attr("action"), attr("source_image")),
        ("delete".into(), "deleted".into(), image.clone())
    );
    assert_eq!(attr("trigger"), event["detail"]["eventID"].as_str().unwrap());
    let node = LineageTable::from_clients(&w.clients, &w.table)
        .node(&ImageRef::new(Region::parse(w.region).unwrap(), ImageId::parse(&image).unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert!(node.snapshot_fates[&snap].starts_with("deleted "), "{:?}", node.snapshot_fates);

    // One summary reached the topic.
    let got = w.inbox.receive(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got[0].kind.as_deref(), Some("snapshot-reaper"));
    let subject = got[0].subject.clone().unwrap();
    assert!(subject.contains("deleted 1 (15 GiB, $0.75/month)"), "{subject}");

    // Redelivered: nothing is done twice.
    let again = w
        .reap_with(
            &Ec2Snapshots::new(&w.clients),
            &settings(Mode::Enforce, 0),
            &w.trail.redelivery(&event),
        )
        .await;
    assert!(matches!(again, EventOutcome::Duplicate { .. }), "{again:?}");
}

#[tokio::test]
async fn a_snapshot_an_image_was_registered_from_is_not_the_images_to_take() {
    // Someone registers an image from a backup they made, then deregisters the image: the
    // backup existed before the image and is not left behind by it.
    let w = World::new("reaper-registered", "eu-central-1").await;
    let backup = w.snapshot("database backup 2026-11-01").await;
    let image = w.image_from("from-a-backup", &backup).await;
    let report = w.reap(&settings(Mode::Enforce, 0), &w.deregister(&image).await).await;
    let o = only(&report);
    assert_eq!((o.decision, &o.action), ("keep", &Action::Kept));
    assert!(o.reason.starts_with(&format!("not made for {image}")), "{o:?}");
    assert!(w.exists(&backup).await.is_some());
}

/// The real adapter with the world acting around it: someone tags `exempt_later` exempt right
/// after the sweep listed the snapshots; with `late_image`, another pipeline registers an image
/// from a snapshot right after the reaper tagged it for deletion (AWS, here moto with the local
/// extension, then refuses the delete with `InvalidSnapshot.InUse`).
struct Twisted<'a> {
    real: Ec2Snapshots,
    world: &'a World,
    exempt_later: Option<String>,
    late_image: bool,
}

impl<'a> Twisted<'a> {
    fn new(world: &'a World) -> Self {
        Self {
            real: Ec2Snapshots::new(&world.clients),
            world,
            exempt_later: None,
            late_image: false,
        }
    }
}

impl SnapshotEc2 for Twisted<'_> {
    async fn snapshot(
        &self,
        r: &Region,
        s: &SnapshotId,
    ) -> Result<Option<SnapshotInfo>, CatalogueError> {
        self.real.snapshot(r, s).await
    }
    async fn snapshots_described_for(
        &self,
        r: &Region,
        i: &ImageId,
    ) -> Result<Vec<SnapshotInfo>, CatalogueError> {
        self.real.snapshots_described_for(r, i).await
    }
    async fn images_using(
        &self,
        r: &Region,
        s: &SnapshotId,
    ) -> Result<Vec<ImageId>, CatalogueError> {
        self.real.images_using(r, s).await
    }
    async fn images_in_recycle_bin(
        &self,
        r: &Region,
    ) -> Result<std::collections::BTreeSet<ImageId>, CatalogueError> {
        self.real.images_in_recycle_bin(r).await
    }
    async fn unmark_reaped(&self, r: &Region, s: &SnapshotId) -> Result<(), CatalogueError> {
        self.real.unmark_reaped(r, s).await
    }
    async fn snapshot_retention_rules(
        &self,
        r: &Region,
    ) -> Result<Vec<warden::reaper::RetentionRule>, CatalogueError> {
        self.real.snapshot_retention_rules(r).await
    }
    async fn create_volume_permissions(
        &self,
        r: &Region,
        s: &SnapshotId,
    ) -> Result<Vec<warden::event::Grantee>, CatalogueError> {
        self.real.create_volume_permissions(r, s).await
    }
    async fn image_exists(&self, r: &Region, i: &ImageId) -> Result<bool, CatalogueError> {
        self.real.image_exists(r, i).await
    }
    async fn owned_among(
        &self,
        r: &Region,
        i: &[ImageId],
    ) -> Result<std::collections::BTreeSet<ImageId>, CatalogueError> {
        self.real.owned_among(r, i).await
    }
    async fn owned_snapshots(&self, r: &Region) -> Result<Vec<SnapshotInfo>, CatalogueError> {
        let listed = self.real.owned_snapshots(r).await;
        if let Some(snapshot) = &self.exempt_later {
            warden_testkit::exposure::tag(
                &self.world.sdk,
                self.world.region,
                snapshot,
                "ami-warden:exempt",
                "hold",
            )
            .await
            .unwrap();
        }
        listed
    }
    async fn image_index(&self, r: &Region) -> Result<ImageIndex, CatalogueError> {
        self.real.image_index(r).await
    }
    async fn mark_reaped(&self, r: &Region, s: &SnapshotId) -> Result<(), CatalogueError> {
        self.real.mark_reaped(r, s).await?;
        if self.late_image {
            self.world.image_from("late-comer", s.as_str()).await;
        }
        Ok(())
    }
    async fn delete_snapshot(&self, r: &Region, s: &SnapshotId) -> Result<(), DeleteError> {
        self.real.delete_snapshot(r, s).await
    }
}

#[tokio::test]
async fn a_snapshot_an_image_in_the_recycle_bin_uses_is_kept() {
    // A pipeline registered a second image from an image's snapshot; a retention rule kept the
    // second in the Recycle Bin when it was deregistered; then the first was deregistered.
    // Restoring the second needs the snapshot. (The only test in its region: what goes to a bin
    // stays there for the rest of the local stack's life.)
    let w = World::new("reaper-bin", "ap-northeast-3").await;
    recycle_bin::add_rule(w.region, &recycle_bin::image_rule("retain", "7-days", 7)).await.unwrap();
    let (image, snap) = w.made_image("bin-first").await;
    let second = w.image_from("bin-second", &snap).await;
    warden_testkit::exposure::tag(&w.sdk, w.region, &second, "retain", "7-days").await.unwrap();
    w.deregister(&second).await;
    let event = w.deregister(&image).await;
    let report = w.reap(&settings(Mode::Enforce, 0), &event).await;
    assert_eq!(only(&report).reason, format!("backs image(s) {second}"), "{report:#?}");
    assert!(w.exists(&snap).await.is_some());
    // The sweep too.
    let adapters = w.adapters();
    let settings = settings(Mode::Enforce, 0);
    let region = Region::parse(w.region).unwrap();
    let report = adapters.reaper(&settings).sweep(&region, Utc::now(), &|_, _| {}).await.unwrap();
    let o = report.outcomes.iter().find(|o| o.snapshot_id.as_str() == snap).expect("a sweep lead");
    assert_eq!(o.reason, format!("backs image(s) {second}"), "{report:#?}");
    // An image in the bin whose snapshots nobody recorded could be using it: kept on doubt.
    let other = w.snapshot("unrecorded root").await;
    let (unknown, _) =
        estate::register_from(&w.sdk, &w.trail, w.region, "bin-unrecorded", &other).await.unwrap();
    warden_testkit::exposure::tag(&w.sdk, w.region, &unknown, "retain", "7-days").await.unwrap();
    w.deregister(&unknown).await;
    let report = adapters.reaper(&settings).sweep(&region, Utc::now(), &|_, _| {}).await.unwrap();
    let o = report.outcomes.iter().find(|o| o.snapshot_id.as_str() == snap).expect("a sweep lead");
    assert!(o.reason.contains(&format!("{unknown} in the Recycle Bin")), "{o:?}");
    assert!(w.exists(&snap).await.is_some());
}

#[tokio::test]
async fn a_snapshot_the_reaper_deletes_is_recoverable_under_the_templates_recycle_bin_rule() {
    // The rule template.yaml deploys (World::new adds it), with its default retention, in a
    // region of its own.
    let w = World::new("reaper-recoverable", "me-central-1").await;
    let rule = recycle_bin::template_properties("ReapedSnapshotsRecycleBinRule").unwrap();
    let (image, snap) = w.made_image("recoverable").await;
    let by_hand = w.snapshot("deleted by hand, untagged").await;
    let event = w.deregister(&image).await;
    let report = w.reap(&settings(Mode::Enforce, 0), &event).await;
    assert_eq!(only(&report).action, Action::Deleted, "{report:#?}");
    assert_eq!(w.exists(&snap).await, None, "deleted");
    warden_testkit::story::ec2(&w.sdk, w.region)
        .delete_snapshot()
        .snapshot_id(&by_hand)
        .send()
        .await
        .unwrap();
    // In the bin for the template's RecycleDays (7 by default); a snapshot deleted without the
    // reaper's tag is not: the rule keeps what the reaper deletes, not everything.
    let days = rule["RetentionPeriod"]["RetentionPeriodValue"].as_i64().unwrap();
    assert_eq!(days, 7);
    let binned = recycle_bin::snapshots_in_bin(&w.sdk, w.region).await.unwrap();
    assert_eq!(binned, vec![(snap.clone(), days * 24 * 3600)]);
    // Restored, it is back with the tag that says who deleted it.
    recycle_bin::restore_snapshot(&w.sdk, w.region, &snap).await.unwrap();
    let tags = w.exists(&snap).await.expect("restored");
    assert!(tags.contains(&(REAPED_TAG_KEY.to_owned(), REAPED_TAG_VALUE.to_owned())), "{tags:?}");
    assert!(recycle_bin::snapshots_in_bin(&w.sdk, w.region).await.unwrap().is_empty());
}

#[tokio::test]
async fn nothing_is_deleted_or_planned_where_no_recycle_bin_rule_keeps_what_the_reaper_deletes() {
    let w = World::without_recycle_bin_rule("reaper-no-bin", "ap-southeast-7").await;
    let region = Region::parse(w.region).unwrap();
    let (image, snap) = w.made_image("unrecoverable").await;
    let event = w.deregister(&image).await;
    let reason = "not deleted: no Recycle Bin rule in ap-southeast-7 would keep it once tagged ami-warden:reaped=true, so it would not be recoverable";
    // The deregistration: kept, and a warning, not a failure (delivering the event again would
    // not create a rule).
    let report = w.reap(&settings(Mode::Enforce, 0), &event).await;
    let o = only(&report);
    assert_eq!(
        (o.decision, &o.action, o.reason.as_str()),
        ("keep", &Action::Kept, reason),
        "{o:?}"
    );
    assert_eq!(
        (report.errors.as_slice(), report.warnings.as_slice()),
        (&[][..], &[reason.to_owned()][..])
    );
    assert!(matches!(
        w.reap_with(
            &Ec2Snapshots::new(&w.clients),
            &settings(Mode::Enforce, 0),
            &w.trail.redelivery(&event)
        )
        .await,
        EventOutcome::Duplicate { .. }
    ));
    // The daily sweeps, with no rule and then with a rule still pending (an account's first
    // takes up to 30 minutes): kept in both modes, report mode planning what enforce would do.
    let adapters = w.adapters();
    let sweep = async |mode: Mode| {
        let settings = settings(mode, 0);
        let report =
            adapters.reaper(&settings).sweep(&region, Utc::now(), &|_, _| {}).await.unwrap();
        let o = report
            .outcomes
            .iter()
            .find(|o| o.snapshot_id.as_str() == snap)
            .cloned()
            .unwrap_or_else(|| panic!("{snap} is a lead: {report:#?}"));
        (o, report)
    };
    for pending in [false, true] {
        if pending {
            let mut rule =
                recycle_bin::template_properties("ReapedSnapshotsRecycleBinRule").unwrap();
            rule["Status"] = serde_json::json!("pending");
            recycle_bin::add_rule(w.region, &rule).await.unwrap();
        }
        for mode in [Mode::Report, Mode::Enforce] {
            let (o, report) = sweep(mode).await;
            assert_eq!(
                (o.decision, &o.action, o.reason.as_str()),
                ("keep", &Action::Kept, reason),
                "{mode:?}, pending {pending}: {o:?}"
            );
            assert_eq!(report.warnings, vec![reason.to_owned()], "{report:#?}");
            assert!(report.errors.is_empty(), "{report:#?}");
        }
        assert!(w.exists(&snap).await.is_some());
    }
    // Once the rule is in effect, report mode plans the deletion and enforce mode makes it.
    recycle_bin::add_template_rule(ACCOUNT, w.region).await.unwrap();
    let (o, report) = sweep(Mode::Report).await;
    assert_eq!((o.decision, &o.action), ("delete", &Action::Planned), "{o:?}");
    assert!(report.warnings.is_empty(), "{report:#?}");
    assert!(w.exists(&snap).await.is_some());
    let (o, _) = sweep(Mode::Enforce).await;
    assert_eq!(o.action, Action::Deleted, "{o:?}");
    assert_eq!(w.exists(&snap).await, None);
}

#[tokio::test]
async fn a_snapshot_a_region_level_rule_excludes_by_its_own_tags_is_not_deleted() {
    // The region's only rule keeps every snapshot except those tagged keep-out=yes.
    let w = World::without_recycle_bin_rule("reaper-excluded", "mx-central-1").await;
    let rule = serde_json::json!({"ResourceType": "EBS_SNAPSHOT", "RetentionPeriod": {"RetentionPeriodValue": 3, "RetentionPeriodUnit": "DAYS"},
        "ExcludeResourceTags": [{"ResourceTagKey": "keep-out", "ResourceTagValue": "yes"}]});
    recycle_bin::add_rule(w.region, &rule).await.unwrap();
    let (excluded_image, excluded) = w.made_image("excluded").await;
    warden_testkit::exposure::tag(&w.sdk, w.region, &excluded, "keep-out", "yes").await.unwrap();
    let (kept_image, recoverable) = w.made_image("recoverable").await;
    let reason = "not deleted: no Recycle Bin rule in mx-central-1 would keep it once tagged ami-warden:reaped=true, so it would not be recoverable";
    let event = w.deregister(&excluded_image).await;
    // Report mode (the sweep) plans what enforce mode (the event) does: keep it, and warn.
    let report_settings = settings(Mode::Report, 0);
    let planned = w
        .adapters()
        .reaper(&report_settings)
        .sweep(&Region::parse(w.region).unwrap(), Utc::now(), &|_, _| {})
        .await
        .unwrap();
    let enforced = w.reap(&settings(Mode::Enforce, 0), &event).await;
    for report in [planned, enforced] {
        assert_eq!(
            (&only(&report).action, only(&report).reason.as_str()),
            (&Action::Kept, reason),
            "{report:#?}"
        );
        assert_eq!(report.warnings, vec![format!("{excluded}: {reason}")]);
        assert!(report.errors.is_empty(), "{report:#?}");
    }
    assert!(w.exists(&excluded).await.is_some());
    // The same rule keeps the other one: deleted, and in the bin.
    let report = w.reap(&settings(Mode::Enforce, 0), &w.deregister(&kept_image).await).await;
    assert_eq!(only(&report).action, Action::Deleted, "{report:#?}");
    assert!(recycle_bin::snapshots_in_bin(&w.sdk, w.region)
        .await
        .unwrap()
        .iter()
        .any(|(s, _)| s == &recoverable));
}

#[tokio::test]
async fn a_snapshot_tagged_exempt_while_the_sweep_ran_is_kept() {
    let w = World::new("reaper-late-exempt", "eu-central-2").await;
    let (image, snap) = w.made_image("late-exempt").await;
    w.deregister(&image).await;
    let adapters = w.adapters();
    let settings = settings(Mode::Enforce, 0);
    let ec2 = Twisted { exempt_later: Some(snap.clone()), ..Twisted::new(&w) };
    let reaper = adapters.reaper_over(&ec2, &settings);
    let report =
        reaper.sweep(&Region::parse(w.region).unwrap(), Utc::now(), &|_, _| {}).await.unwrap();
    let o = report.outcomes.iter().find(|o| o.snapshot_id.as_str() == snap).expect("a sweep lead");
    assert_eq!(
        (o.decision, &o.action, o.reason.as_str()),
        ("keep", &Action::Kept, "exempt: tagged ami-warden:exempt=hold"),
        "{o:?}"
    );
    assert!(w.exists(&snap).await.is_some());
}

#[tokio::test]
async fn a_delete_refused_as_in_use_is_reported_as_an_error_of_the_run() {
    let w = World::new("reaper-inuse", "eu-central-1").await;
    let (image, snap) = w.made_image("contested").await;
    let racing = Twisted { late_image: true, ..Twisted::new(&w) };
    let event = w.deregister(&image).await;
    // The run fails, for Lambda to deliver the event again, once it has recorded what it did.
    let Err(ReaperError::Incomplete { report }) =
        w.try_reap_with(&racing, &settings(Mode::Enforce, 0), &event).await
    else {
        panic!("expected the event to fail")
    };
    let o = only(&report);
    assert!(
        matches!(&o.action, Action::Failed(e) if e.starts_with("InvalidSnapshot.InUse")),
        "{o:?}"
    );
    assert_eq!(report.failures(), 1);
    assert!(
        report.errors.iter().any(|e| e.contains("InvalidSnapshot.InUse")),
        "{:?}",
        report.errors
    );
    assert_eq!(
        w.exists(&snap).await,
        Some(vec![]),
        "still there, and the reaped tag taken off again"
    );
    let got = w.inbox.receive(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got[0].severity.as_deref(), Some("WARNING"));
    let text = got[0].message["text"].as_str().unwrap();
    assert!(
        text.contains("FAILED to delete") && text.contains("Lambda delivers this event again"),
        "{text}"
    );
    // Delivered again, the run finds the new image using the snapshot, keeps it, and completes.
    let again = w.reap(&settings(Mode::Enforce, 0), &w.trail.redelivery(&event)).await;
    assert!(only(&again).reason.starts_with("backs image(s) ami-"), "{again:?}");
    assert!(again.errors.is_empty(), "{:?}", again.errors);
}

#[tokio::test]
async fn a_lookup_that_fails_keeps_the_snapshot_and_fails_the_event_until_a_delivery_succeeds() {
    use warden_testkit::faults::{Fault, FaultProxy, Mix};
    let w = World::new("reaper-faults", "eu-central-1").await;
    let (image, snap) = w.made_image("faulted").await;
    let event = w.deregister(&image).await;
    let proxy = FaultProxy::in_front_of_local_stack(Mix::NONE, 7).await;
    let faulted = Clients::new(&proxy.sdk_config(&warden::aws::load_sdk_config().await).await);
    // More throttles than the SDK's attempts: the permission lookup fails.
    for _ in 0..10 {
        proxy.inject_next("DescribeSnapshotAttribute", Fault::Throttle);
    }
    let Err(ReaperError::Incomplete { report }) =
        w.try_reap_with(&Ec2Snapshots::new(&faulted), &settings(Mode::Enforce, 0), &event).await
    else {
        panic!("expected the event to fail")
    };
    let o = only(&report);
    assert_eq!((o.decision, &o.action), ("keep", &Action::Kept), "{o:?}");
    assert!(o.reason.starts_with("kept on doubt"), "{o:?}");
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.starts_with(&format!("create-volume permissions of {snap}"))),
        "{:?}",
        report.errors
    );
    assert!(w.exists(&snap).await.is_some(), "kept");
    // Lambda delivers it again; the claim was released, so this delivery decides afresh.
    proxy.faults_off();
    let report = match w
        .reap_with(&Ec2Snapshots::new(&faulted), &settings(Mode::Enforce, 0), &event)
        .await
    {
        EventOutcome::Reaped { report } => report,
        other => panic!("{other:?}"),
    };
    assert_eq!(only(&report).action, Action::Deleted, "{report:?}");
    assert_eq!(w.exists(&snap).await, None);
}

#[tokio::test]
async fn report_mode_changes_nothing_and_young_snapshots_are_kept() {
    let w = World::new("reaper-report", "eu-central-1").await;
    let (image, snap) = w.made_image("report").await;
    let event = w.deregister(&image).await;
    let report = w.reap(&settings(Mode::Report, 0), &event).await;
    let o = only(&report);
    assert_eq!((o.decision, &o.action), ("delete", &Action::Planned));
    assert_eq!(w.exists(&snap).await, Some(vec![]), "untouched: no tag, not deleted");

    let (young, young_snap) = w.made_image("young").await;
    let report = w.reap(&settings(Mode::Enforce, 1), &w.deregister(&young).await).await;
    assert!(only(&report).reason.starts_with("too young"), "{report:?}");
    assert!(w.exists(&young_snap).await.is_some());
}

#[tokio::test]
async fn when_aws_deleted_the_snapshots_itself_that_is_recorded_and_nothing_else_happens() {
    let w = World::new("reaper-by-aws", "eu-central-1").await;
    let snap = w.snapshot("deleted with its image").await;
    let image = w.image_from("by-aws", &snap).await;
    let event = estate::deregister(&w.sdk, &w.trail, w.region, &image, true).await.unwrap();
    let results = &event["detail"]["responseElements"]["deleteSnapshotResultSet"]["items"];
    assert_eq!(results[0]["returnCode"], "success", "{event}");
    let report = w.reap(&settings(Mode::Enforce, 0), &event).await;
    assert_eq!(only(&report).action, Action::DeletedByAws);
}

#[tokio::test]
async fn a_snapshot_aws_skipped_because_another_image_uses_it_is_kept_for_that_image() {
    let w = World::new("reaper-skipped", "eu-central-1").await;
    let snap = w.snapshot("shared by two images").await;
    let image = w.image_from("skipped-a", &snap).await;
    let other = w.image_from("skipped-b", &snap).await;
    let event = estate::deregister(&w.sdk, &w.trail, w.region, &image, true).await.unwrap();
    let results = &event["detail"]["responseElements"]["deleteSnapshotResultSet"]["items"];
    assert_eq!(results[0]["returnCode"], "skipped", "{event}");
    let report = w.reap(&settings(Mode::Enforce, 0), &event).await;
    let o = only(&report);
    assert_ne!(o.action, Action::DeletedByAws, "{report:?}");
    assert_ne!(o.action, Action::Deleted, "{report:?}");
    assert!(o.reason.contains(&other), "kept for the image that uses it: {report:?}");
    assert_eq!(w.exists(&snap).await, Some(vec![]));
}

#[tokio::test]
async fn the_sweep_finds_snapshots_whose_image_is_gone_by_the_description_aws_wrote() {
    let w = World::new("reaper-sweep", "eu-north-1").await;
    let base_snap = w.snapshot("base root").await;
    let base = w.image_from("sweep-base", &base_snap).await;
    let (gone, gone_snap) =
        estate::create_image_from_instance(&w.sdk, w.region, &base, "sweep-gone").await.unwrap();
    let (kept, kept_snap) =
        estate::create_image_from_instance(&w.sdk, w.region, &base, "sweep-kept").await.unwrap();
    // The recorder saw `gone` become available, so the lineage confirms its snapshot.
    let store = LineageTable::from_clients(&w.clients, &w.table);
    let available = w.trail.ami_state_change(w.region, &gone, "available");
    record(&parse_value(&available), &Ec2Catalogue::new(&w.clients), &store).await.unwrap();
    w.deregister(&gone).await;
    // A snapshot whose description names an image the lineage never saw make it (a copy that
    // kept its description, say): a lead, not proof.
    let copied = w
        .snapshot(
            "Created by CreateImage(i-0123456789abcdef0) for ami-0feedfacecafe0001 from vol-0abc",
        )
        .await;
    let manual = w.snapshot("a hand-made backup").await;

    let adapters = w.adapters();
    let settings = settings(Mode::Report, 0);
    let reaper = adapters.reaper(&settings);
    let report =
        reaper.sweep(&Region::parse(w.region).unwrap(), Utc::now(), &|_, _| {}).await.unwrap();
    let decided: Vec<&str> = report.outcomes.iter().map(|o| o.snapshot_id.as_str()).collect();
    assert!(decided.contains(&gone_snap.as_str()), "{report:#?}");
    assert!(
        !decided.contains(&kept_snap.as_str()) && !decided.contains(&manual.as_str()),
        "{report:#?}"
    );
    let unverified = report
        .outcomes
        .iter()
        .find(|o| o.snapshot_id.as_str() == copied)
        .expect("the copy was considered");
    assert!(unverified.reason.starts_with("origin unverified"), "{unverified:?}");
    let o = report.outcomes.iter().find(|o| o.snapshot_id.as_str() == gone_snap).unwrap();
    assert_eq!((o.decision, &o.action), ("delete", &Action::Planned));
    assert_eq!(o.source_image.as_ref().map(|i| i.to_string()), Some(gone.clone()));
    assert!(report.not_from_images >= 2 && report.with_live_images >= 1, "{report:#?}");
    // The guess the sweep makes while the images are listed asks by id: the images there,
    // never the one deregistered.
    let asked = [&gone, &kept, &base].map(|image| ImageId::parse(image).unwrap());
    let found = Ec2Snapshots::new(&w.clients)
        .owned_among(&Region::parse(w.region).unwrap(), &asked)
        .await
        .unwrap();
    assert_eq!(found, std::collections::BTreeSet::from([asked[1].clone(), asked[2].clone()]));
}

/// The sweep's cost grows with the orphans only where it must, and only the first time: one
/// create-volume permission lookup per orphan. The lineage nodes are read 100 a request, the
/// audit items and the permission readings written 25 a request, and report mode writes no
/// fate (a plan is not a fate); the next run trusts the readings (none asked of EC2). A
/// permission change the guard saw sends that one snapshot back to EC2; a share no event
/// announced is caught before deleting. Enforcement notes each fate on the lineage node.
#[tokio::test]
async fn a_sweep_of_many_orphans_reads_nodes_and_writes_audit_items_in_batches_and_no_fate_twice() {
    const ORPHANS: usize = 30;
    let w = World::new("reaper-batch", "ap-northeast-2").await;
    let base_snap = w.snapshot("batch base root").await;
    let base = w.image_from("batch-base", &base_snap).await;
    let store = LineageTable::from_clients(&w.clients, &w.table);
    let mut orphans = Vec::new();
    for n in 0..ORPHANS {
        let (image, snap) =
            estate::create_image_from_instance(&w.sdk, w.region, &base, &format!("batch-{n}"))
                .await
                .unwrap();
        let available = w.trail.ami_state_change(w.region, &image, "available");
        record(&parse_value(&available), &Ec2Catalogue::new(&w.clients), &store).await.unwrap();
        w.deregister(&image).await;
        orphans.push((image, snap));
    }

    let adapters = w.adapters();
    let settings = settings(Mode::Report, 0);
    let reaper = adapters.reaper(&settings);
    let region = Region::parse(w.region).unwrap();
    let requests =
        |before: &std::collections::BTreeMap<(String, String), u64>, operation: &str| -> u64 {
            w.clients
                .calls()
                .since(before)
                .iter()
                .filter(|((_, op), _)| op == operation)
                .map(|(_, n)| n)
                .sum()
        };

    let before = w.clients.calls().snapshot();
    let first = reaper.sweep(&region, Utc::now(), &|_, _| {}).await.unwrap();
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let planned: Vec<&str> = first
        .outcomes
        .iter()
        .filter(|o| o.action == Action::Planned)
        .map(|o| o.snapshot_id.as_str())
        .collect();
    for (image, snap) in &orphans {
        assert!(planned.contains(&snap.as_str()), "{snap} of {image} is planned: {first:#?}");
    }
    assert_eq!(
        requests(&before, "BatchGetItem"),
        first.outcomes.len().div_ceil(100) as u64,
        "the nodes, 100 a request"
    );
    assert_eq!(requests(&before, "GetItem"), 0);
    assert_eq!(
        requests(&before, "BatchWriteItem"),
        2 * first.outcomes.len().div_ceil(25) as u64,
        "audit items, readings"
    );
    assert_eq!(requests(&before, "PutItem"), 0);
    assert_eq!(requests(&before, "UpdateItem"), 0, "report mode writes no fate");
    assert_eq!(requests(&before, "DescribeSnapshotAttribute"), first.outcomes.len() as u64);
    for (image, snap) in &orphans {
        let node = store
            .node(&ImageRef::new(region.clone(), ImageId::parse(image).unwrap()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(node.snapshot_fates.get(snap.as_str()), None);
        assert_eq!(w.audit_items(snap).await.len(), 1, "one audit item for {snap}");
    }

    let before = w.clients.calls().snapshot();
    let second =
        reaper.sweep(&region, Utc::now() + chrono::Duration::seconds(1), &|_, _| {}).await.unwrap();
    assert_eq!(second.outcomes, first.outcomes, "the same decisions");
    assert_eq!(requests(&before, "UpdateItem"), 0);
    assert_eq!(requests(&before, "DescribeSnapshotAttribute"), 0, "yesterday's readings stand");
    assert_eq!(requests(&before, "BatchWriteItem"), second.outcomes.len().div_ceil(25) as u64);
    for (_, snap) in &orphans {
        assert_eq!(w.audit_items(snap).await.len(), 2, "each run is audited: {snap}");
    }

    // Someone shares one orphan; the guard handles the event and marks it.
    let (_, shared) = &orphans[0];
    let event = w.share_with_partner(shared).await;
    let (exposure_ec2, notifier) = (
        warden::aws::exposure::Ec2Exposure::new(&w.clients),
        SnsNotifier::new(&w.clients, &w.inbox.topic_arn),
    );
    let exposure_settings = warden::exposure::Settings {
        exempt_tag_key: "ami-warden:exempt".into(),
        ..Default::default()
    };
    let guard = warden::exposure::guard::Guard {
        ec2: &exposure_ec2,
        notifier: &notifier,
        idempotency: &adapters.idempotency,
        ledger: &adapters.ledger,
        settings: &exposure_settings,
        own_account: AccountId::parse(ACCOUNT),
    };
    guard.handle(&parse_value(&event)).await.unwrap();
    let before = w.clients.calls().snapshot();
    let third =
        reaper.sweep(&region, Utc::now() + chrono::Duration::seconds(2), &|_, _| {}).await.unwrap();
    assert_eq!(
        requests(&before, "DescribeSnapshotAttribute"),
        1,
        "only the changed one is asked of EC2"
    );
    let kept = third.outcomes.iter().find(|o| o.snapshot_id.as_str() == shared).unwrap();
    assert_eq!((kept.decision, kept.reason.as_str()), ("keep", "shared with account 222233334444"));

    // A share whose event never came: the readings say "not shared", but enforcement asks EC2
    // before deleting, and keeps it.
    let (_, quiet) = &orphans[1];
    w.share_with_partner(quiet).await;
    let enforce = Settings { mode: Mode::Enforce, ..settings.clone() };

    // Out of time (a Lambda near its deadline): nothing is tagged or deleted and no fate is
    // noted; the run's summary says what is left for the next one.
    let hurried = Reaper {
        settings: &enforce,
        own_account: reaper.own_account.clone(),
        stop_by: Some(std::time::Instant::now()),
        ..reaper
    };
    let before = w.clients.calls().snapshot();
    let left = hurried
        .sweep(&region, Utc::now() + chrono::Duration::milliseconds(2500), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(
        (requests(&before, "CreateTags"), requests(&before, "DeleteSnapshot")),
        (0, 0),
        "nothing tagged or deleted"
    );
    assert!(left.outcomes.iter().all(|o| o.action != Action::Deleted), "{left:#?}");
    let (image, other) = &orphans[2];
    let o = left.outcomes.iter().find(|o| o.snapshot_id.as_str() == other).unwrap();
    assert_eq!((o.decision, &o.action), ("delete", &Action::LeftForNextRun));
    let tags = w.exists(other).await.expect("still there");
    assert!(tags.iter().all(|(k, _)| k != REAPED_TAG_KEY), "{tags:?}");
    let node = store
        .node(&ImageRef::new(region.clone(), ImageId::parse(image).unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(node.snapshot_fates.get(other.as_str()), None);
    let summary = warden::reaper::run::report_notification(&left);
    assert!(summary.text.contains("deletion(s) are left for the next sweep"), "{}", summary.text);

    let enforcing = Reaper { settings: &enforce, ..reaper };
    let fourth = enforcing
        .sweep(&region, Utc::now() + chrono::Duration::seconds(3), &|_, _| {})
        .await
        .unwrap();
    let o = fourth.outcomes.iter().find(|o| o.snapshot_id.as_str() == quiet).unwrap();
    assert_eq!(
        (o.decision, &o.action, o.reason.as_str()),
        ("keep", &Action::Kept, "shared with account 222233334444")
    );
    assert!(w.exists(quiet).await.is_some());
    let (_, other) = &orphans[2];
    let o = fourth.outcomes.iter().find(|o| o.snapshot_id.as_str() == other).unwrap();
    assert_eq!(o.action, Action::Deleted);
    assert!(w.exists(other).await.is_none());
    let fates = |n: usize| {
        let (image, snap) = orphans[n].clone();
        let store = &store;
        let region = region.clone();
        async move {
            let node = store
                .node(&ImageRef::new(region, ImageId::parse(&image).unwrap()))
                .await
                .unwrap()
                .unwrap();
            node.snapshot_fates.get(snap.as_str()).cloned().unwrap_or_default()
        }
    };
    assert!(fates(2).await.starts_with("deleted "), "{}", fates(2).await);
    assert_eq!(fates(1).await, "kept: shared with account 222233334444");
}
