//! EC2's request buckets, as the realistic-AWS proxy models them (scaled down to a tenth, so a
//! test reaches past their bursts): an enforce-mode deprecation sweep retiring 15 images with
//! its EC2 requests paced to the same buckets retires all of them, with at most a stray
//! throttled request (the pacer's clock and the proxy's are not one; the SDK retries it); the
//! same sweep unpaced is throttled. Each sweep runs in an account of its own, reached through
//! its role, so a reused local stack's earlier estates do not mix in.

use chrono::{Duration, Utc};
use warden::aws::pace::Pace;
use warden::aws::{
    audit::AuditTable, deprecation::Ec2Deprecation, ledger::LedgerTable,
    lineage_table::LineageTable, sns::SnsNotifier, Clients,
};
use warden::config::Mode;
use warden::deprecation::run::{Enforcer, SweepReport};
use warden::deprecation::Settings;
use warden::ids::{AccountId, Region};
use warden_testkit::aws_model::Ec2Buckets;
use warden_testkit::exposure as share;
use warden_testkit::faults::{FaultProxy, Mix};
use warden_testkit::{estate, recycle_bin, stack};

const ACCOUNT: &str = "123456789012";
const FACTOR: f64 = 0.1;
const ROLE: &str = "AmiWardenMember";

/// A member account of this run (`n` tells them apart), with its role.
async fn member(n: u32) -> AccountId {
    let id = format!("6{:05}{n:06}", std::process::id() % 100_000);
    let sdk = stack::sdk_config().await;
    warden_testkit::accounts::create_member_role(&sdk, &id, ROLE, ACCOUNT).await.unwrap();
    AccountId::parse(&id).unwrap()
}

/// Five families of three images, all due a year from now (KEEP_LATEST 0), in `region` of
/// `account`.
async fn estate_of_15(account: &AccountId, region: &str) {
    let own = Clients::new(&stack::sdk_config().await);
    let clients = warden::aws::org::assume(&own, account, ROLE).await.unwrap();
    let sdk = &stack::in_region(clients.sdk_config(), region);
    recycle_bin::add_template_image_rule(account.as_str(), region).await.unwrap();
    for f in 0..5 {
        let family = format!("paced{}-{f}", std::process::id());
        for n in 0..3 {
            let (id, _) =
                share::register_image(sdk, region, &format!("{family}-{n}")).await.unwrap();
            share::tag(sdk, region, &id, "ami-warden:family", &family).await.unwrap();
            estate::deprecate_at(sdk, region, &id, Utc::now() + Duration::days(1)).await.unwrap();
        }
    }
}

/// An enforce-mode sweep of `account` in `region` a year from now, through `proxy`, paced as
/// `pace` says (the member reached through its role, as the product reaches it).
async fn sweep_through(
    proxy: &FaultProxy,
    account: &AccountId,
    region: &str,
    pace: Pace,
) -> SweepReport {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "paced").await;
    // At a tenth of AWS's sizes a DeregisterImage may wait half a minute for its turn (at AWS's
    // sizes, a few seconds): these clients' attempts may last that long.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .operation_attempt_timeout(std::time::Duration::from_secs(90))
        .operation_timeout(std::time::Duration::from_secs(180))
        .build();
    let base = warden::aws::load_sdk_config().await.to_builder().timeout_config(timeouts).build();
    let own = Clients::new(&proxy.sdk_config(&base).await).paced(pace);
    let clients = warden::aws::org::assume(&own, account, ROLE).await.unwrap();
    let settings = Settings {
        mode: Mode::Enforce,
        deprecate_after_days: 0,
        grace_days: 0,
        keep_latest: 0,
        warn_days: 0,
        in_use_days: 30,
        exempt_tag_key: "ami-warden:exempt".into(),
        family_tag_key: "ami-warden:family".into(),
        protect_newest: false,
        retire_shared_unused: false,
    };
    let ec2 = Ec2Deprecation::new(&clients);
    let (lineage, audit, ledger) = (
        LineageTable::from_clients(&own, &table),
        AuditTable::new(&own, &table),
        LedgerTable::new(&own, &table),
    );
    let enforcer: Enforcer<'_, _, _, _, SnsNotifier, _> = Enforcer {
        ec2: &ec2,
        lineage: &lineage,
        audit: &audit,
        ledger: &ledger,
        notifier: None,
        settings: &settings,
        own_account: Some(account.clone()),
        stop_by: None,
    };
    let region = Region::parse(region).unwrap();
    enforcer.sweep(&region, Utc::now() + Duration::days(365)).await.unwrap()
}

async fn proxy() -> FaultProxy {
    let proxy = FaultProxy::in_front_of_local_stack(Mix::NONE, 1).await;
    proxy.set_ec2_buckets(Some(Ec2Buckets::scaled(FACTOR)));
    proxy
}

#[tokio::test]
async fn a_paced_sweep_is_not_throttled_and_an_unpaced_one_is() {
    let region = "ap-southeast-5";
    let (paced_account, unpaced_account) = (member(1).await, member(2).await);
    estate_of_15(&paced_account, region).await;
    estate_of_15(&unpaced_account, region).await;

    let unpaced = proxy().await;
    sweep_through(&unpaced, &unpaced_account, region, Pace::Off).await;
    let stats = unpaced.model_stats();
    assert!(stats.throttled > 10, "the buckets are small enough to throttle: {stats:?}");

    let paced = proxy().await;
    let report = sweep_through(&paced, &paced_account, region, Pace::Aws(FACTOR)).await;
    let stats = paced.model_stats();
    assert!(stats.throttled <= 2, "{stats:?}");
    assert_eq!(report.deregistered.len(), 15, "every image retired: {report:?}");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let deregistrations = stats.bucket(paced_account.as_str(), region, "DeregisterImage").unwrap();
    assert!(deregistrations.floor_seconds > 0.0, "past DeregisterImage's burst: {stats:?}");
}
