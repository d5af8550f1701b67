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
use warden::aws::org::MemberClients;
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

/// The account whose EC2 an event needs asking (a CreateImage's instance, a new image's
/// snapshots), when that is a member account rather than this one.
fn member_to_ask(parsed: &Parsed, own: Option<&AccountId>) -> Option<AccountId> {
    let Parsed::Event(event) = parsed else { return None };
    let asks_ec2 = matches!(
        event.kind,
        EventKind::ImageCreated { .. } | EventKind::ImageStateChanged { state: ImageState::Available, .. }
    );
    let account = event.meta.account.as_ref()?;
    (asks_ec2 && Some(account) != own).then(|| account.clone())
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
    let member_catalogue;
    let catalogue = match (member_to_ask(&parsed, own.as_ref()), &state.members) {
        (Some(account), Some(members)) if !members.covers(&account) => {
            // Forwarded from an account MEMBER_ACCOUNTS does not list: not this deployment's.
            let reason = format!("event from account {account}, which is not in MEMBER_ACCOUNTS");
            tracing::warn!(request_id = %context.request_id, envelope_id, reason, metric = "ignored_events", "event ignored");
            return Ok(serde_json::to_value(&Outcome::Ignored { reason })?);
        }
        (Some(account), Some(members)) => match members.for_account(&account).await {
            Ok(member) => {
                member_catalogue = Ec2Catalogue::new(&member);
                &member_catalogue
            }
            Err(reason) => {
                // Never record a guess: the event fails, is retried, and lands in the DLQ to be
                // redriven once the member's role is fixed.
                tracing::error!(request_id = %context.request_id, envelope_id, account = %account, reason, "member account not reachable; the event will be retried");
                return Err(reason.into());
            }
        },
        _ => &state.catalogue,
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
