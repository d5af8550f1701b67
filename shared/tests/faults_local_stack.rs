//! The lineage recorder behind a faulty network. A proxy in front of the local stack
//! ([`warden_testkit::faults`]) throttles, fails and resets a share of the requests — some
//! after the service already acted, so the write happened and the handler does not know — and
//! every event is delivered as Lambda delivers it: again whenever the handler returns `Err`, a
//! bounded number of times (async retries, then the dead-letter queue's redrive). The table
//! must end exactly as a fault-free run of the same events leaves it: nothing lost, nothing
//! doubled. The exposure guard gets the same treatment: one alert per exposure, whatever the
//! network did. Run with `dev/test` or after `eval "$(dev/local-stack up)"`.

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use serde_json::Value;
use warden::aws::ec2::Ec2Catalogue;
use warden::aws::exposure::Ec2Exposure;
use warden::aws::idempotency::IdempotencyTable;
use warden::aws::lineage_table::{dump_table, LineageTable};
use warden::aws::sns::SnsNotifier;
use warden::aws::{Clients, MAX_ATTEMPTS};
use warden::event::parse_value;
use warden::exposure::guard::{Guard, GuardError, GuardOutcome};
use warden::exposure::Settings;
use warden::ids::AccountId;
use warden::recorder::{record, Outcome, RecordError};
use warden_testkit::cloudtrail::Trail;
use warden_testkit::exposure::{self as scenario, Share};
use warden_testkit::faults::{Counts, Fault, FaultProxy, Mix};
use warden_testkit::inbox::{Inbox, Received};
use warden_testkit::stack;
use warden_testkit::story::{play_seed_story, SeedStory};

/// Deliveries after the first before an event counts as lost (Lambda's async retries plus
/// redrives of the dead-letter queue).
const REDELIVERIES: u32 = 10;

/// The product's SDK configuration (retries, backoff, timeouts: `load_sdk_config`), with the
/// fault proxy as the endpoint.
async fn sdk_through(proxy: &FaultProxy) -> SdkConfig {
    proxy.sdk_config(&warden::aws::load_sdk_config().await).await
}

/// The recorder as the Lambda holds it: clients built once, one table.
struct Recorder {
    clients: Clients,
    store: LineageTable,
    catalogue: Ec2Catalogue,
}

impl Recorder {
    /// A recorder on a fresh table (created directly on the local stack), talking through `sdk`.
    async fn new(sdk: &SdkConfig, prefix: &str) -> Self {
        let table = stack::fresh_lineage_table(&stack::sdk_config().await, prefix).await;
        let clients = Clients::new(sdk);
        let store = LineageTable::from_clients(&clients, table);
        let catalogue = Ec2Catalogue::new(&clients);
        Self { clients, store, catalogue }
    }

    /// One delivery: what the handler returned.
    async fn handle(&self, event: &Value) -> Result<Outcome, RecordError> {
        record(&parse_value(event), &self.catalogue, &self.store).await
    }

    /// Delivers `event` until the handler returns `Ok`, at most `1 + REDELIVERIES` times.
    /// Returns how many deliveries failed first.
    async fn deliver_until_ok(&self, label: &str, event: &Value) -> u32 {
        let mut last = None;
        for failed in 0..=REDELIVERIES {
            match self.handle(event).await {
                Ok(_) => return failed,
                Err(e) => last = Some(e),
            }
        }
        panic!(
            "{label}: still failing after {REDELIVERIES} redeliveries (lost to the DLQ): {last:?}"
        )
    }

    /// The whole table, read directly from the local stack (never through the proxy).
    async fn dump(&self) -> Vec<String> {
        let direct = Clients::new(&stack::sdk_config().await);
        dump_table(direct.dynamodb(), self.store.table_name()).await.expect("dump")
    }
}

/// The seed story's events (register, create, copies across regions, state changes, a failed
/// call, a deregistration) followed by the fixture set (odd shapes, redeliveries, events of
/// other functions), labelled.
async fn event_set(tag: &str) -> (SeedStory, Vec<(String, Value)>) {
    let sdk = stack::sdk_config().await;
    let trail = Trail::new("123456789012", "golden-image-pipeline");
    let story = play_seed_story(&sdk, &trail, tag).await.expect("seed story on the local stack");
    let mut events = story.events.clone();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/events");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let event = serde_json::from_slice(&std::fs::read(&p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        events.push((p.file_name().unwrap().to_string_lossy().into_owned(), event));
    }
    (story, events)
}

/// A fault-free run: every event recorded on its first delivery.
async fn reference_dump(events: &[(String, Value)]) -> Vec<String> {
    let reference = Recorder::new(&warden::aws::load_sdk_config().await, "faults-reference").await;
    for (label, event) in events {
        reference.handle(event).await.unwrap_or_else(|e| panic!("{label} without faults: {e}"));
    }
    reference.dump().await
}

fn render(counts: &Counts) -> String {
    let faults: Vec<String> = counts.injected.iter().map(|(f, n)| format!("{f:?}={n}")).collect();
    format!(
        "requests={} forwarded={} injected: {}",
        counts.requests,
        counts.forwarded,
        faults.join(" ")
    )
}

#[tokio::test]
async fn faults_on_a_share_of_requests_leave_the_table_a_fault_free_run_leaves() {
    let started = Instant::now();
    let (_, events) = event_set("faults").await;
    let want = reference_dump(&events).await;
    assert!(
        want.iter().any(|line| line.contains("\"sk\":\"D#")),
        "the events record lineage: {want:#?}"
    );

    // A quarter of the requests faulted, then half: every kind, evenly.
    for (rate, seed) in [(0.25, 7), (0.5, 11)] {
        let proxy = FaultProxy::in_front_of_local_stack(Mix::even(rate), seed).await;
        let recorder = Recorder::new(&sdk_through(&proxy).await, "faults").await;
        let mut redeliveries = 0;
        for (label, event) in &events {
            redeliveries += recorder.deliver_until_ok(label, event).await;
        }
        let counts = proxy.counts();
        proxy.faults_off();
        let got = recorder.dump().await;
        println!(
            "faults at {rate}: {} events, {redeliveries} redeliveries, {}, {:?} elapsed",
            events.len(),
            render(&counts),
            started.elapsed()
        );
        assert_eq!(
            got, want,
            "faults at {rate} (seed {seed}): the table differs from the fault-free run"
        );
        // Not vacuous: every kind of fault happened, the answer-lost ones included.
        for fault in Fault::ALL {
            assert!(counts.of(fault) > 0, "no {fault:?} injected at {rate}: {}", render(&counts));
        }
        if rate >= 0.5 {
            assert!(
                redeliveries > 0,
                "at {rate} some event must have exhausted its retries: {}",
                render(&counts)
            );
        }
    }
}

#[tokio::test]
async fn an_event_whose_every_request_fails_returns_err_within_max_attempts_and_succeeds_once_redelivered(
) {
    let (story, events) = event_set("exhaust").await;
    let want = reference_dump(&events[..story.events.len()]).await;

    // What each event costs without faults, in requests.
    let cost = Recorder::new(&warden::aws::load_sdk_config().await, "faults-cost").await;
    let mut calls = Vec::new();
    for (_, event) in &events[..story.events.len()] {
        let before = cost.clients.calls().snapshot();
        cost.handle(event).await.expect("fault-free");
        calls.push(cost.clients.calls().since(&before).values().sum::<u64>());
    }

    let proxy = FaultProxy::in_front_of_local_stack(Mix::NONE, 3).await;
    let recorder = Recorder::new(&sdk_through(&proxy).await, "faults-exhaust").await;
    for (i, (label, event)) in events[..story.events.len()].iter().enumerate() {
        // Every request of the event's first delivery fails, a different way for each event.
        let fault = Fault::ALL[i % Fault::ALL.len()];
        proxy.set_mix(Mix::only(fault, 1.0));
        let before = proxy.counts();
        let start = Instant::now();
        let result = recorder.handle(event).await;
        let took = start.elapsed();
        let seen = proxy.counts().since(&before).requests;
        if calls[i] == 0 {
            // A failed call: ignored without asking AWS anything.
            assert!(
                matches!(result, Ok(Outcome::Ignored { .. })) && seen == 0,
                "{label}: {result:?}, {seen} requests"
            );
            continue;
        }
        assert!(result.is_err(), "{label} with {fault:?} on every request: {result:?}");
        assert!(took < Duration::from_secs(10), "{label} with {fault:?}: Err after {took:?}");
        assert_eq!(
            seen,
            u64::from(MAX_ATTEMPTS),
            "{label} with {fault:?}: the first call is tried MAX_ATTEMPTS times, then Err"
        );
        assert!(
            seen <= u64::from(MAX_ATTEMPTS) * calls[i],
            "{label}: {seen} requests, fault-free cost {}",
            calls[i]
        );
        println!("{label}: {fault:?} on every request: Err after {seen} requests in {took:?} (fault-free cost {} requests)", calls[i]);
        // Redelivered once the network is well again: recorded.
        proxy.faults_off();
        recorder
            .handle(event)
            .await
            .unwrap_or_else(|e| panic!("{label} redelivered without faults: {e}"));
    }
    assert_eq!(recorder.dump().await, want);
}

#[tokio::test]
async fn a_write_carried_out_whose_answers_were_all_lost_is_redelivered_without_doubling() {
    let (story, events) = event_set("lost").await;
    let story_events = &events[..story.events.len()];
    let want = reference_dump(story_events).await;

    let proxy = FaultProxy::in_front_of_local_stack(Mix::NONE, 5).await;
    let recorder = Recorder::new(&sdk_through(&proxy).await, "faults-lost").await;
    let mut failed = 0;
    for (label, event) in story_events {
        // The event's transaction reaches DynamoDB on every attempt; every answer is lost.
        for _ in 0..MAX_ATTEMPTS {
            proxy.inject_next("TransactWriteItems", Fault::ErrorAfterForward);
        }
        let before = proxy.counts();
        let first = recorder.handle(event).await;
        let writes = proxy
            .counts()
            .since(&before)
            .by_operation
            .get("TransactWriteItems")
            .copied()
            .unwrap_or(0);
        proxy.faults_off();
        if writes > 0 {
            assert!(first.is_err(), "{label}: every answer lost, yet {first:?}");
            assert_eq!(writes, u64::from(MAX_ATTEMPTS), "{label}");
            failed += 1;
            let again =
                recorder.handle(event).await.unwrap_or_else(|e| panic!("{label} redelivered: {e}"));
            assert!(
                matches!(again, Outcome::Duplicate { .. }),
                "{label}: the write was made, the redelivery is a duplicate: {again:?}"
            );
        }
    }
    println!(
        "{failed} events' writes made with every answer lost, then redelivered as duplicates; {}",
        render(&proxy.counts())
    );
    assert!(failed >= 10, "most story events write: {failed}");
    assert_eq!(recorder.dump().await, want);
}

const ACCOUNT: &str = "123456789012";

/// The exposure guard as its Lambda holds it, talking through the proxy, alerting a topic a
/// queue subscribes to (created directly on the local stack).
struct Watch {
    clients: Clients,
    table: String,
    inbox: Inbox,
    trail: Trail,
    settings: Settings,
}

impl Watch {
    async fn new(proxy: &FaultProxy, name: &str) -> Self {
        let direct = stack::sdk_config().await;
        let unique = format!("{name}-{}", std::process::id());
        let inbox = Inbox::create(&direct, &unique).await.expect("topic and queue");
        let table = stack::fresh_lineage_table(&direct, name).await;
        let settings = Settings {
            allowed_accounts: Default::default(),
            allowed_orgs: Default::default(),
            allowed_ous: Default::default(),
            remediate_public: false,
            remediate_shares: false,
            exempt_tag_key: "ami-warden:exempt".into(),
            full_read_every: chrono::Duration::days(7),
            listing_margin: warden::exposure::LISTING_MARGIN,
        };
        let clients = Clients::new(&sdk_through(proxy).await);
        Self { clients, table, inbox, trail: Trail::new(ACCOUNT, "image-admin"), settings }
    }

    /// A real image made public on the local stack, and its event.
    async fn image_made_public(&self, name: &str) -> Value {
        let direct = stack::sdk_config().await;
        let (image, _) = scenario::register_image(&direct, "us-east-1", name).await.expect("image");
        scenario::modify_launch_permission(
            &direct,
            &self.trail,
            "us-east-1",
            &image,
            &[Share::All],
            &[],
        )
        .await
        .expect("made public")
    }

    async fn handle(&self, event: &Value) -> Result<GuardOutcome, GuardError> {
        let ec2 = Ec2Exposure::new(&self.clients);
        let notifier = SnsNotifier::new(&self.clients, &self.inbox.topic_arn);
        let idempotency = IdempotencyTable::new(&self.clients, &self.table);
        let ledger = warden::aws::ledger::LedgerTable::new(&self.clients, &self.table);
        let guard = Guard {
            ledger: &ledger,
            ec2: &ec2,
            notifier: &notifier,
            idempotency: &idempotency,
            settings: &self.settings,
            own_account: AccountId::parse(ACCOUNT),
        };
        guard.handle(&parse_value(event)).await
    }

    /// Delivers as Lambda's asynchronous invocation does: the first try and two retries
    /// (a minute, then two minutes later: all within the claim's five-minute lease).
    async fn deliver_as_lambda(&self, event: &Value) -> Vec<Result<GuardOutcome, GuardError>> {
        let mut results = Vec::new();
        for _ in 0..3 {
            let result = self.handle(event).await;
            let done = result.is_ok();
            results.push(result);
            if done {
                break;
            }
        }
        results
    }

    /// The alerts that reached the queue, waiting a little for one more than `expected`.
    async fn alerts(&self, expected: usize) -> Vec<Received> {
        self.inbox.receive(expected + 1, Duration::from_secs(3)).await.expect("receive")
    }
}

/// The claim is a conditional PutItem. When DynamoDB wrote it but the answer was lost, the
/// SDK's retry meets the claim: it carries this attempt's own owner token, so the guard goes on
/// (before the token, it read as another delivery's claim, and every delivery within the 300 s
/// lease failed until the event reached the dead-letter queue, unalerted). The reaper takes the
/// same claim.
#[tokio::test]
async fn an_exposure_whose_claim_answer_was_lost_is_still_alerted_once() {
    let proxy = FaultProxy::in_front_of_local_stack(Mix::NONE, 13).await;
    let watch = Watch::new(&proxy, "faults-claim").await;
    let event = watch.image_made_public(&format!("faults-claim-{}", std::process::id())).await;

    // The claim reaches DynamoDB; its answer does not.
    proxy.inject_next("PutItem", Fault::ErrorAfterForward);
    let results = watch.deliver_as_lambda(&event).await;
    let last = results.last().expect("delivered");
    assert!(matches!(last, Ok(GuardOutcome::Alerted { .. })), "deliveries: {results:?}");
    assert_eq!(watch.alerts(1).await.len(), 1, "deliveries: {results:?}");
}

#[tokio::test]
async fn a_publish_whose_answer_was_lost_alerts_at_least_once() {
    let proxy = FaultProxy::in_front_of_local_stack(Mix::NONE, 17).await;
    let watch = Watch::new(&proxy, "faults-publish").await;
    let event = watch.image_made_public(&format!("faults-publish-{}", std::process::id())).await;

    // SNS accepts the message; the answer is lost; the SDK publishes again.
    proxy.inject_next("Publish", Fault::ErrorAfterForward);
    let results = watch.deliver_as_lambda(&event).await;
    assert!(matches!(results.as_slice(), [Ok(GuardOutcome::Alerted { .. })]), "{results:?}");
    let alerts = watch.alerts(1).await;
    println!(
        "a lost Publish answer: {} alert(s) delivered, {}",
        alerts.len(),
        render(&proxy.counts())
    );
    // At least once, never lost. A standard topic is at-least-once anyway, so subscribers
    // must tolerate the duplicate this produces (two identical messages).
    assert!(!alerts.is_empty());
    assert!(alerts.iter().all(|a| a.subject == alerts[0].subject));
}
