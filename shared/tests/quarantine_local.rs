//! Quarantine against the local stack, through the real adapters: the seed story's Gen1 is
//! quarantined; report mode records it and changes nothing; enforce mode tags and deprecates
//! Gen1 to Gen4 (an exempt one is reported, not touched); a copy made from Gen3 afterwards is
//! quarantined by the deprecation enforcer's event path and alerted once, however often its
//! event arrives; release restores each image's deadline as it was, takes off only the tags the
//! quarantine added, and leaves the images as they were before. `--disable` disables and
//! release enables again.
//!
//! The images live in a member account of this run alone, reached through its role.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use warden::aws::{
    audit::AuditTable, deprecation::Ec2Deprecation, ec2::Ec2Catalogue, ledger::LedgerTable,
    lineage_table::LineageTable, Clients,
};
use warden::config::Mode;
use warden::deprecation::run::{Enforcer, EventOutcome};
use warden::deprecation::Settings;
use warden::event::parse_value;
use warden::ids::{AccountId, ImageId, ImageRef, Region};
use warden::impact::OwnAccountOnly;
use warden::quarantine::run::{QuarantineStore, Quarantiner};
use warden::quarantine::{Quarantine, Step, TAG_KEY};
use warden::recorder::record;
use warden_testkit::cloudtrail::Trail;
use warden_testkit::fakes::FakeNotifier;
use warden_testkit::story::{self, StoryImage};
use warden_testkit::{org, stack};

const ACCOUNT: &str = "123456789012";
const HOME: &str = "ca-central-1";
const AWAY: &str = "sa-east-1";

fn member_id(n: u32) -> String {
    format!("5{:05}00000{n}", std::process::id() % 100_000)
}

fn image(i: &StoryImage) -> ImageRef {
    ImageRef::new(Region::parse(i.region).unwrap(), ImageId::parse(&i.image_id).unwrap())
}

fn settings(mode: Mode) -> Settings {
    warden_testkit::settings::deprecation_settings(mode)
}

struct World {
    member: Clients,
    own: Clients,
    store: LineageTable,
    account: AccountId,
    trail: Trail,
}

impl World {
    async fn new(n: u32, tag: &str) -> Self {
        let own_sdk = stack::sdk_config().await;
        let id = member_id(n);
        let (member, own) =
            org::reach_member(&own_sdk, &id, "AmiWardenMember", ACCOUNT).await.unwrap();
        let table = stack::fresh_lineage_table(own.sdk_config(), tag).await;
        let store = LineageTable::from_clients(&own, table);
        let account = AccountId::parse(&id).unwrap();
        Self { member, own, store, account, trail: Trail::new(&id, "pipeline") }
    }

    fn quarantiner<'a>(
        &'a self,
        ec2: &'a Ec2Deprecation,
        others: &'a OwnAccountOnly<Ec2Deprecation>,
        mode: Mode,
    ) -> Quarantiner<'a, LineageTable, Ec2Deprecation, OwnAccountOnly<Ec2Deprecation>> {
        Quarantiner {
            store: &self.store,
            ec2,
            others,
            own_account: Some(self.account.clone()),
            mode,
            exempt_tag_key: "ami-warden:exempt",
        }
    }

    /// An image registered in the member's home region, its RegisterImage event recorded:
    /// its id, and where it is.
    async fn registered(&self, name: &str) -> (String, ImageRef) {
        let sdk = self.member.sdk_config();
        let (id, _) = warden_testkit::exposure::register_image(sdk, HOME, name).await.unwrap();
        let event = self.trail.api_call(
            HOME,
            "RegisterImage",
            serde_json::json!({"name": name}),
            serde_json::json!({"imageId": id}),
        );
        self.record(&event).await;
        let subject = ImageRef::new(Region::parse(HOME).unwrap(), ImageId::parse(&id).unwrap());
        (id, subject)
    }

    async fn record(&self, event: &serde_json::Value) {
        let catalogue = Ec2Catalogue::new(&self.member);
        record(&parse_value(event), &catalogue, &self.store).await.unwrap();
    }

    /// The image's tags and deadline as EC2 shows them now.
    async fn look(
        &self,
        i: &ImageRef,
    ) -> (BTreeMap<String, String>, Option<DateTime<Utc>>, String) {
        let facts = Ec2Deprecation::new(&self.member);
        let f = warden::deprecation::DeprecationEc2::image(&facts, &i.region, &i.image_id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{i} is visible"));
        (f.tags, f.deprecation, f.state)
    }
}

fn declared(image: &ImageRef, disable: bool) -> Quarantine {
    Quarantine {
        image: image.clone(),
        reason: "CVE-2026-0001 in openssl".into(),
        by: "arn:aws:iam::123456789012:user/security".into(),
        at: Utc::now(),
        disable,
        released: None,
    }
}

#[tokio::test]
async fn quarantine_follows_the_lineage_and_release_puts_every_image_back_as_it_was() {
    let w = World::new(1, "quarantine").await;
    let sdk = w.member.sdk_config();
    let built = story::play_seed_builds_in(sdk, &w.trail, "quarantine", HOME, AWAY).await.unwrap();
    for (_, event) in &built.events {
        w.record(event).await;
    }
    let gens: Vec<ImageRef> = built.generations.iter().map(image).collect();
    let (gen1, gen3, gen4) = (&gens[0], &gens[2], &gens[3]);
    // Gen3 had a deadline of its own, Gen4 is exempt.
    let later = Utc::now() + Duration::days(40);
    let home = story::ec2(sdk, HOME);
    home.enable_image_deprecation()
        .image_id(gen3.image_id.as_str())
        .deprecate_at(aws_smithy_types::DateTime::from_secs(later.timestamp()))
        .send()
        .await
        .unwrap();
    warden_testkit::exposure::tag(
        sdk,
        gen4.region.as_str(),
        gen4.image_id.as_str(),
        "ami-warden:exempt",
        "golden",
    )
    .await
    .unwrap();
    let (ec2, others) = (Ec2Deprecation::new(&w.member), OwnAccountOnly::default());

    // Report mode: the plan, recorded, nothing changed in EC2.
    let plan = w
        .quarantiner(&ec2, &others, Mode::Report)
        .quarantine(declared(gen1, false), Utc::now())
        .await
        .unwrap();
    assert_eq!(plan.steps.len(), 4, "{:?}", plan.steps);
    assert!(
        matches!(&plan.steps[3], Step::Skip { why, .. } if why.starts_with("exempt")),
        "{:?}",
        plan.steps[3]
    );
    assert!(plan.done.is_empty());
    assert!(w.store.quarantine_of(gen1).await.unwrap().is_none(), "a preview records nothing");
    assert!(!w.look(gen1).await.0.contains_key(TAG_KEY));

    // Enforce mode: Gen1..Gen3 tagged and deprecated now; Gen4 untouched.
    let before = Utc::now();
    let done = w
        .quarantiner(&ec2, &others, Mode::Enforce)
        .quarantine(declared(gen1, false), Utc::now())
        .await
        .unwrap();
    assert!(done.errors.is_empty(), "{:?}", done.errors);
    assert_eq!(done.done, gens[..3].to_vec());
    assert!(w.store.quarantine_of(gen1).await.unwrap().is_some_and(|q| q.active()));
    let mut other = declared(gen1, false);
    other.reason = "another reason".into();
    let refused = w.quarantiner(&ec2, &others, Mode::Enforce).quarantine(other, Utc::now()).await;
    assert!(
        matches!(refused, Err(warden::quarantine::run::QuarantineError::AlreadyQuarantined(_))),
        "an active quarantine is not replaced: {refused:?}"
    );
    for g in &gens[..3] {
        let (tags, deadline, _) = w.look(g).await;
        assert!(tags[TAG_KEY].starts_with(&format!("{gen1}: CVE-2026-0001")), "{g}: {tags:?}");
        let deadline = deadline.expect("deprecated");
        assert!(deadline > before && deadline <= before + Duration::minutes(2), "{g}: {deadline}");
    }
    assert!(!w.look(gen4).await.0.contains_key(TAG_KEY));

    // A copy made from Gen3 now: quarantined on its event, alerted once.
    let copy = home
        .copy_image()
        .source_image_id(gen3.image_id.as_str())
        .source_region(HOME)
        .name("quarantine-gen5")
        .send()
        .await
        .unwrap();
    let gen5 = ImageRef::new(
        Region::parse(HOME).unwrap(),
        ImageId::parse(copy.image_id().unwrap()).unwrap(),
    );
    let event = w.trail.api_call(
        HOME,
        "CopyImage",
        serde_json::json!({"sourceRegion": HOME, "sourceImageId": gen3.image_id.as_str(), "name": "quarantine-gen5"}),
        serde_json::json!({"imageId": gen5.image_id.as_str()}),
    );
    w.record(&event).await;
    let notifier = FakeNotifier::default();
    let table = w.store.table_name();
    let (audit, ledger) = (AuditTable::new(&w.own, table), LedgerTable::new(&w.own, table));
    let enforce = settings(Mode::Enforce);
    let enforcer = Enforcer {
        ec2: &ec2,
        lineage: &w.store,
        audit: &audit,
        ledger: &ledger,
        notifier: Some(&notifier),
        settings: &enforce,
        own_account: Some(w.account.clone()),
        stop_by: None,
    };
    for _ in 0..2 {
        let outcome =
            enforcer.on_event(&parse_value(&w.trail.redelivery(&event)), Utc::now()).await.unwrap();
        assert!(
            matches!(&outcome, EventOutcome::Quarantined { acted: true, ancestor, .. } if *ancestor == gen1.to_string()),
            "{outcome:?}"
        );
    }
    let alerts = notifier.sent();
    assert_eq!(alerts.len(), 1, "one alert for two deliveries");
    assert_eq!(alerts[0].severity, warden::notify::Severity::Critical);
    assert!(
        alerts[0].text.contains(&format!("{gen5} <- {gen3} <- {} <- {gen1}", gens[1])),
        "{}",
        alerts[0].text
    );
    assert!(w.look(&gen5).await.0.contains_key(TAG_KEY));

    // Release: each image as it was.
    let released = w
        .quarantiner(&ec2, &others, Mode::Enforce)
        .release(gen1, "arn:aws:iam::123456789012:user/security", Utc::now())
        .await
        .unwrap();
    assert!(released.errors.is_empty(), "{:?}", released.errors);
    assert!(released.quarantine.released.is_some());
    for g in gens[..3].iter().chain([&gen5]) {
        let (tags, deadline, _) = w.look(g).await;
        assert!(!tags.contains_key(TAG_KEY), "{g}: {tags:?}");
        if g == gen3 {
            assert_eq!(
                deadline.map(|d| d.timestamp()),
                Some(later.timestamp()),
                "Gen3's own deadline"
            );
        } else {
            assert_eq!(deadline, None, "{g}");
        }
    }
    assert_eq!(w.look(gen4).await.0.get("ami-warden:exempt").map(String::as_str), Some("golden"));
    assert!(w.store.undos(gen1, &gens).await.unwrap().is_empty(), "nothing left to undo");
    // Released, it may be declared again.
    let again = w.store.record_quarantine(&declared(gen1, false)).await.unwrap();
    assert!(again.active());
}

#[tokio::test]
async fn quarantine_with_disable_disables_and_release_enables_again() {
    let w = World::new(2, "quarantine-disable").await;
    let sdk = w.member.sdk_config();
    let (id, subject) = w.registered("quarantine-disable").await;
    let (ec2, others) = (Ec2Deprecation::new(&w.member), OwnAccountOnly::default());
    // Shared with another account: DisableImage takes that away; release gives it back.
    let share = warden_testkit::exposure::Share::Account("444455556666".into());
    warden_testkit::exposure::modify_launch_permission(sdk, &w.trail, HOME, &id, &[share], &[])
        .await
        .unwrap();
    let q = w.quarantiner(&ec2, &others, Mode::Enforce);
    let done = q.quarantine(declared(&subject, true), Utc::now()).await.unwrap();
    assert!(done.errors.is_empty(), "{:?}", done.errors);
    assert_eq!(w.look(&subject).await.2, "disabled");
    let released = q.release(&subject, "someone", Utc::now()).await.unwrap();
    assert!(released.errors.is_empty(), "{:?}", released.errors);
    let (tags, deadline, state) = w.look(&subject).await;
    assert_eq!((state.as_str(), deadline, tags.contains_key(TAG_KEY)), ("available", None, false));
    let grants = warden::deprecation::DeprecationEc2::launch_permissions(
        &ec2,
        &subject.region,
        &subject.image_id,
    )
    .await
    .unwrap();
    assert_eq!(grants, vec![warden::event::Grantee::Account("444455556666".into())]);
}

/// A copy the quarantine did not know (its CopyImage event recorded late) is quarantined when
/// it becomes available: tagged, deprecated and, as the quarantine says, disabled; alerted
/// once; release puts it back. (A copy still pending at its event goes the same way.)
#[tokio::test]
async fn a_copy_is_quarantined_when_it_becomes_available_and_released_with_the_rest() {
    let w = World::new(3, "quarantine-available").await;
    let sdk = w.member.sdk_config();
    let (id, subject) = w.registered("quarantine-available").await;
    // A copy made just before the quarantine, whose CopyImage event the lineage records only
    // after the quarantine was declared (out of order): the quarantine does not know it.
    let copy = story::ec2(sdk, HOME)
        .copy_image()
        .source_image_id(&id)
        .source_region(HOME)
        .name("quarantine-available-copy")
        .send()
        .await
        .unwrap();
    let copy_id = copy.image_id().unwrap().to_owned();
    let copied = w.trail.api_call(
        HOME,
        "CopyImage",
        serde_json::json!({"sourceRegion": HOME, "sourceImageId": id, "name": "quarantine-available-copy"}),
        serde_json::json!({"imageId": copy_id}),
    );
    let (ec2, others) = (Ec2Deprecation::new(&w.member), OwnAccountOnly::default());
    let q = w.quarantiner(&ec2, &others, Mode::Enforce);
    let done = q.quarantine(declared(&subject, true), Utc::now()).await.unwrap();
    assert_eq!(done.steps.len(), 1, "the copy is not in the lineage yet");
    w.record(&copied).await;
    let copy = ImageRef::new(Region::parse(HOME).unwrap(), ImageId::parse(&copy_id).unwrap());

    let notifier = FakeNotifier::default();
    let table = w.store.table_name();
    let (audit, ledger) = (AuditTable::new(&w.own, table), LedgerTable::new(&w.own, table));
    let enforce = settings(Mode::Enforce);
    let enforcer = Enforcer {
        ec2: &ec2,
        lineage: &w.store,
        audit: &audit,
        ledger: &ledger,
        notifier: Some(&notifier),
        settings: &enforce,
        own_account: Some(w.account.clone()),
        stop_by: None,
    };
    let available = w.trail.ami_state_change(HOME, &copy_id, "available");
    for _ in 0..2 {
        let outcome = enforcer.on_event(&parse_value(&available), Utc::now()).await.unwrap();
        assert!(matches!(outcome, EventOutcome::Quarantined { acted: true, .. }), "{outcome:?}");
    }
    assert_eq!(notifier.sent().len(), 1, "alerted once");
    let (tags, deadline, state) = w.look(&copy).await;
    assert!(tags.contains_key(TAG_KEY) && deadline.is_some(), "{tags:?} {deadline:?}");
    assert_eq!(state, "disabled");

    let released = q.release(&subject, "someone", Utc::now()).await.unwrap();
    assert!(released.errors.is_empty(), "{:?}", released.errors);
    let (tags, _, state) = w.look(&copy).await;
    assert_eq!((state.as_str(), tags.contains_key(TAG_KEY)), ("available", false));
}
