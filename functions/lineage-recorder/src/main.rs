//! `lineage-recorder` Lambda: records AMI lineage from CloudTrail image events.
//!
//! Thin shell: configuration and SDK clients are built once per container; each invocation
//! hands the event to [`warden::recorder::record`], the same code `ami-warden replay` runs.
//! Bad input is logged as a warning and acknowledged (`Ok`), so it cannot cause a retry storm;
//! AWS failures (after the SDK's bounded retries) return `Err`, so Lambda retries the event and
//! finally sends it to the dead-letter queue.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use warden::aws::org::{self, EventAccount, MemberClients};
use warden::aws::{ec2::Ec2Catalogue, lineage_table::LineageTable, Clients};
use warden::config::Config;
use warden::event::{parse_value, EventKind, ImageState, Parsed};
use warden::ids::AccountId;
use warden::recorder::{record, Outcome};

struct State {
    clients: Clients,
    store: LineageTable,
    catalogue: Ec2Catalogue,
    /// Organization mode: a member's CreateImage names an instance in the member account.
    members: Option<MemberClients>,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    warden::logging::init_lambda();
    let config = Config::from_env()?;
    let clients = Clients::from_env().await;
    let state = State {
        store: LineageTable::from_clients(&clients, config.lineage_table.clone()),
        catalogue: Ec2Catalogue::new(&clients),
        members: MemberClients::new(&clients, &config.members, &config.member_role_name),
        clients,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handle(&state, event))).await
}

/// Whether the event needs EC2 asked (a CreateImage's instance, a new image's snapshots): a
/// member account's such event is looked up in that account.
fn asks_ec2(parsed: &Parsed) -> bool {
    matches!(parsed, Parsed::Event(event) if matches!(
        event.kind,
        EventKind::ImageCreated { .. } | EventKind::ImageStateChanged { state: ImageState::Available, .. }
    ))
}

async fn handle(state: &State, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (clients, store) = (&state.clients, &state.store);
    let (payload, context) = event.into_parts();
    let before = clients.calls().snapshot();
    // The envelope, as aws_lambda_events types it, only for log context; the domain parser
    // below is the tolerant one and also accepts bare CloudTrail records.
    let envelope: Option<EventBridgeEvent<Value>> = serde_json::from_value(payload.clone()).ok();
    let envelope_id = envelope.as_ref().and_then(|e| e.id.clone()).unwrap_or_default();
    let parsed = parse_value(&payload);
    let own = AccountId::of_function_arn(&context.invoked_function_arn);
    // Never record a guess: a member that cannot be reached fails the event, which is retried
    // and lands in the DLQ, to be redriven once the member's role is fixed.
    let member = if asks_ec2(&parsed) {
        org::member_of_event(state.members.as_ref(), &parsed, own.as_ref(), Ec2Catalogue::new)
            .await?
    } else {
        EventAccount::Own
    };
    let catalogue = match &member {
        EventAccount::Member(_, catalogue) => catalogue,
        EventAccount::Own => &state.catalogue,
        EventAccount::NotCovered(reason) => {
            tracing::warn!(request_id = %context.request_id, envelope_id, reason, metric = "ignored_events", "event ignored");
            return Ok(serde_json::to_value(&Outcome::Ignored { reason: reason.clone() })?);
        }
    };
    let result = record(&parsed, catalogue, store).await;
    let aws_calls = warden::aws::calls::render(&clients.calls().since(&before));
    match result {
        Ok(outcome) => {
            match &outcome {
                Outcome::Recorded { summary } => {
                    tracing::info!(request_id = %context.request_id, envelope_id, %summary, aws_calls, "recorded")
                }
                Outcome::Duplicate { summary } => {
                    tracing::info!(request_id = %context.request_id, envelope_id, %summary, aws_calls, "duplicate event, nothing written")
                }
                Outcome::Ignored { reason } => {
                    tracing::warn!(request_id = %context.request_id, envelope_id, %reason, aws_calls, metric = "ignored_events", "event ignored")
                }
                Outcome::Conflict { summary } => {
                    tracing::warn!(request_id = %context.request_id, envelope_id, %summary, aws_calls, metric = "lineage_conflicts", "conflicting parent reported, recorded edge kept")
                }
            }
            Ok(serde_json::to_value(&outcome)?)
        }
        Err(err) => {
            tracing::error!(request_id = %context.request_id, envelope_id, error = %err, aws_calls, "recording failed; the event will be retried");
            Err(err.into())
        }
    }
}
