//! Security Hub findings on the local stack (moto with `dev/moto_ext/securityhub.py`): the
//! exposure-guard function's real handler with `SECURITY_HUB_FINDINGS=true`, real permission
//! changes on moto's EC2 and the events they would produce. Each test acts in a region no other
//! test uses; the event test reads only its own image's findings, and the sweep tests act in a
//! member account of their own (reached through its role), so a reused stack's earlier runs do
//! not mix in.

use std::time::Duration;

use aws_sdk_securityhub::types::{AwsSecurityFinding, AwsSecurityFindingFilters, StringFilter};
use aws_sdk_securityhub::types::{StringFilterComparison, WorkflowStatus};
use warden::aws::Clients;
use warden::config::Config;
use warden::event::parse_value;
use warden::exposure::findings::GENERATOR_ID;
use warden::exposure::guard::GuardOutcome;
use warden::handler::{ExposureGuard, Function, Invocation};
use warden::ids::AccountId;
use warden_testkit::cloudtrail::Trail;
use warden_testkit::exposure::{self as scenario, Share};
use warden_testkit::inbox::Inbox;
use warden_testkit::stack;

const ACCOUNT: &str = "123456789012";
const ROLE: &str = "AmiWardenMember";

/// A member account of this run (`n` tells them apart), with its role.
async fn member(n: u32) -> AccountId {
    let id = format!("7{:05}{n:06}", std::process::id() % 100_000);
    let sdk = stack::sdk_config().await;
    warden_testkit::accounts::create_member_role(&sdk, &id, ROLE, ACCOUNT).await.unwrap();
    AccountId::parse(&id).unwrap()
}

struct World {
    /// The SDK configuration of the account the test's images are in.
    sdk: aws_config::SdkConfig,
    clients: Clients,
    guard: ExposureGuard,
    inbox: Option<Inbox>,
    trail: Trail,
}

impl World {
    /// The own account, alerting to a topic of its own.
    async fn own(name: &str, region: &str) -> Self {
        let sdk = stack::sdk_config().await;
        let inbox = Inbox::create(&sdk, &format!("{name}-{}", std::process::id())).await.unwrap();
        let vars = vec![("TOPIC_ARN", inbox.topic_arn.clone())];
        let (clients, guard) = Self::guard(&sdk, name, region, vars).await;
        Self { sdk, clients, guard, inbox: Some(inbox), trail: Trail::new(ACCOUNT, "image-admin") }
    }

    /// A member account of its own, swept by the schedule (no topic: it notifies nobody).
    async fn member(name: &str, region: &str, n: u32) -> Self {
        let own = stack::sdk_config().await;
        let account = member(n).await;
        let vars =
            vec![("MEMBER_ACCOUNTS", account.to_string()), ("MEMBER_ROLE_NAME", ROLE.to_owned())];
        let (clients, guard) = Self::guard(&own, name, region, vars).await;
        let theirs = warden::aws::org::assume(&clients, &account, ROLE).await.unwrap();
        let sdk = theirs.sdk_config().clone();
        let trail = Trail::new(account.as_str(), "image-admin");
        Self { sdk, clients, guard, inbox: None, trail }
    }

    async fn guard(
        sdk: &aws_config::SdkConfig,
        name: &str,
        region: &str,
        mut vars: Vec<(&'static str, String)>,
    ) -> (Clients, ExposureGuard) {
        vars.push(("LINEAGE_TABLE", stack::fresh_lineage_table(sdk, name).await));
        vars.push(("SECURITY_HUB_FINDINGS", "true".to_owned()));
        vars.push(("SWEEP_REGIONS", region.to_owned()));
        let config =
            Config::from_lookup(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()))
                .unwrap();
        let clients = Clients::new(sdk);
        let guard = ExposureGuard::for_sweeps(&clients, &config);
        (clients, guard)
    }

    fn invocation() -> Invocation {
        Invocation::unbounded(AccountId::parse(ACCOUNT))
    }

    async fn on_event(&self, event: &serde_json::Value) -> GuardOutcome {
        let parsed = parse_value(event);
        Box::pin(self.guard.on_event(&parsed, &Self::invocation())).await.unwrap()
    }

    /// The daily schedule (SWEEP_REGIONS: the test's region): the Security Hub answer of each
    /// account it swept, none of them failed.
    async fn sweep(&self) -> Vec<serde_json::Value> {
        let answer = Box::pin(self.guard.on_schedule(&Self::invocation())).await.unwrap();
        let mut hubs = Vec::new();
        all(&answer, "security_hub", &mut hubs);
        assert!(!hubs.is_empty(), "{answer}");
        for hub in &hubs {
            let failed = hub.get("errors").is_some() || hub.get("open_findings_error").is_some();
            assert!(!failed, "{hub}");
        }
        hubs
    }

    /// This generator's findings in `region` of the test's account about `images`.
    async fn findings(&self, region: &str, images: &[&str]) -> Vec<AwsSecurityFinding> {
        let conf = aws_sdk_securityhub::config::Builder::from(&self.sdk)
            .region(aws_config::Region::new(region.to_owned()))
            .build();
        let client = aws_sdk_securityhub::Client::from_conf(conf);
        let generator = StringFilter::builder()
            .value(GENERATOR_ID)
            .comparison(StringFilterComparison::Equals)
            .build();
        let filters = AwsSecurityFindingFilters::builder().generator_id(generator).build();
        let (mut found, mut token) = (Vec::new(), None);
        loop {
            let out = client
                .get_findings()
                .filters(filters.clone())
                .set_next_token(token)
                .send()
                .await
                .unwrap();
            found.extend(out.findings().iter().cloned());
            match out.next_token().filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        let about = |f: &AwsSecurityFinding, image: &str| {
            f.resources()
                .iter()
                .any(|r| r.id().is_some_and(|id| id.ends_with(&format!("/{image}"))))
        };
        found.into_iter().filter(|f| images.iter().any(|i| about(f, i))).collect()
    }
}

/// Every non-null value under `key`, anywhere in `v`.
fn all(v: &serde_json::Value, key: &str, out: &mut Vec<serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k == key && !x.is_null() {
                    out.push(x.clone());
                } else {
                    all(x, key, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| all(x, key, out)),
        _ => {}
    }
}

/// Runs `test` on a thread with a stack large enough for the handler's futures in a debug
/// build (a test thread has 2 MiB); its panic is the test's.
fn on_a_large_stack<F: std::future::Future<Output = ()> + 'static>(test: fn() -> F) {
    let run = move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(test())
    };
    let thread = std::thread::Builder::new().stack_size(32 << 20).spawn(run).unwrap();
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

fn states(f: &AwsSecurityFinding) -> (Option<&str>, Option<&str>) {
    (
        f.workflow().and_then(|w| w.status()).map(|s| s.as_str()),
        f.record_state().map(|r| r.as_str()),
    )
}

#[test]
fn an_image_made_public_is_one_finding_updated_when_alerted_again_and_resolved_when_private() {
    on_a_large_stack(public_then_private)
}

async fn public_then_private() {
    let region = "af-south-1";
    let w = World::own("sechub-event", region).await;
    let (image, _) = scenario::register_image(&w.sdk, region, "sechub-golden").await.unwrap();
    let make_public =
        || scenario::modify_launch_permission(&w.sdk, &w.trail, region, &image, &[Share::All], &[]);
    let outcome = w.on_event(&make_public().await.unwrap()).await;
    assert!(matches!(outcome, GuardOutcome::Alerted { .. }), "{outcome:?}");
    // The SNS alert went out as ever.
    let inbox = w.inbox.as_ref().unwrap();
    assert_eq!(inbox.receive(1, Duration::from_secs(10)).await.unwrap().len(), 1);

    let found = w.findings(region, &[&image]).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f.id(), Some(format!("ami-warden/{ACCOUNT}/{region}/{image}/public").as_str()));
    assert_eq!(
        f.product_arn(),
        Some(format!("arn:aws:securityhub:{region}:{ACCOUNT}:product/{ACCOUNT}/default").as_str())
    );
    assert_eq!(states(f), (Some("NEW"), Some("ACTIVE")));
    assert_eq!(f.severity().and_then(|s| s.label()).map(|l| l.as_str()), Some("CRITICAL"));
    let arn = format!("arn:aws:ec2:{region}::image/{image}");
    assert_eq!(f.resources()[0].id(), Some(arn.as_str()));
    let actor = f.product_fields().and_then(|p| p.get("ami-warden/Actor")).cloned();
    let expected = format!("arn:aws:sts::{ACCOUNT}:assumed-role/image-admin/image-admin-session");
    assert_eq!(actor.as_deref(), Some(expected.as_str()));
    let first_seen = f.last_observed_at().unwrap().to_owned();

    // Alerted again (a new call, a second later): the same finding, updated.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    w.on_event(&make_public().await.unwrap()).await;
    let found = w.findings(region, &[&image]).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_ne!(found[0].last_observed_at().unwrap(), first_seen, "the finding was not updated");
    assert_eq!(states(&found[0]), (Some("NEW"), Some("ACTIVE")));

    // Made private: the removal event resolves and archives it.
    let private =
        scenario::modify_launch_permission(&w.sdk, &w.trail, region, &image, &[], &[Share::All])
            .await
            .unwrap();
    w.on_event(&private).await;
    let found = w.findings(region, &[&image]).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(states(&found[0]), (Some("RESOLVED"), Some("ARCHIVED")));
    assert_eq!(found[0].workflow().and_then(|w| w.status()), Some(&WorkflowStatus::Resolved));
}

#[test]
fn a_sweep_that_no_longer_finds_an_exposure_resolves_its_finding() {
    on_a_large_stack(sweep_resolves)
}

async fn sweep_resolves() {
    let region = "ap-northeast-1";
    let w = World::member("sechub-sweep", region, 1).await;
    let (kept, _) = scenario::register_image(&w.sdk, region, "sechub-kept").await.unwrap();
    let (fixed, _) = scenario::register_image(&w.sdk, region, "sechub-fixed").await.unwrap();
    for image in [&kept, &fixed] {
        scenario::modify_launch_permission(&w.sdk, &w.trail, region, image, &[Share::All], &[])
            .await
            .unwrap();
    }
    w.sweep().await;
    let found = w.findings(region, &[&kept, &fixed]).await;
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|f| states(f) == (Some("NEW"), Some("ACTIVE"))), "{found:?}");

    // One is made private with no event the guard sees: the next sweep ends its finding only.
    scenario::modify_launch_permission(&w.sdk, &w.trail, region, &fixed, &[], &[Share::All])
        .await
        .unwrap();
    let hubs = w.sweep().await;
    assert!(hubs.iter().any(|h| h["resolved"] == 1), "{hubs:?}");
    let found = w.findings(region, &[&kept, &fixed]).await;
    assert_eq!(found.len(), 2, "{found:?}");
    let state_of = |image: &str| {
        let f = found.iter().find(|f| f.id().is_some_and(|id| id.contains(image))).unwrap();
        states(f)
    };
    assert_eq!(state_of(&kept), (Some("NEW"), Some("ACTIVE")));
    assert_eq!(state_of(&fixed), (Some("RESOLVED"), Some("ARCHIVED")));
}

#[test]
fn a_hundred_and_fifty_exposures_are_imported_in_two_requests() {
    on_a_large_stack(hundred_and_fifty)
}

async fn hundred_and_fifty() {
    let region = "ap-northeast-2";
    let w = World::member("sechub-batch", region, 2).await;
    let mut images = Vec::new();
    for n in 0..150 {
        let (image, _) =
            scenario::register_image(&w.sdk, region, &format!("sechub-many-{n}")).await.unwrap();
        scenario::modify_launch_permission(&w.sdk, &w.trail, region, &image, &[Share::All], &[])
            .await
            .unwrap();
        images.push(image);
    }
    let before = w.clients.calls().snapshot();
    w.sweep().await;
    let calls = w.clients.calls().since(&before);
    let imports: u64 =
        calls.iter().filter(|((_, op), _)| op == "BatchImportFindings").map(|(_, n)| *n).sum();
    assert_eq!(imports, 2, "{calls:?}");
    let ids: Vec<&str> = images.iter().map(String::as_str).collect();
    assert_eq!(w.findings(region, &ids).await.len(), 150);
}
