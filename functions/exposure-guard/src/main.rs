//! `exposure-guard` Lambda: alerts when an AMI or its snapshots become public or shared outside
//! the allow-list, or image block public access is turned off; reverts public shares when
//! `REMEDIATE_PUBLIC=true`; and, on its daily schedule, sweeps its regions (`SWEEP_REGIONS`,
//! else its own).
//!
//! Thin shell: configuration and clients are built once per container. API-call events go to
//! [`warden::exposure::guard::Guard`], the EventBridge "Scheduled Event" to
//! [`warden::exposure::sweep::sweep`]; both are the code `ami-warden replay` and
//! `ami-warden exposure` run. A failure to publish returns `Err`, so Lambda retries the event.
//! In organization mode a member account's event is checked (and remediated) in that account,
//! through its role.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use warden::aws::org::{self, EventAccount, MemberClients};
use warden::aws::{
    exposure::Ec2Exposure, idempotency::IdempotencyTable, ledger::LedgerTable, sns::SnsNotifier,
    Clients,
};
use warden::config::Config;
use warden::event::parse_value;
use warden::exposure::guard::{Guard, GuardOutcome};
use warden::exposure::ledger::record_sweep;
use warden::exposure::sweep::{sweep, sweep_notification};
use warden::exposure::Settings;
use warden::ids::{AccountId, Region};
use warden::notify::Notifier;

struct State {
    clients: Clients,
    config: Config,
    ec2: Ec2Exposure,
    notifier: SnsNotifier,
    idempotency: IdempotencyTable,
    ledger: LedgerTable,
    settings: Settings,
    /// The settings in member accounts: report only unless MEMBER_ENFORCE (`Config::in_members`).
    member_settings: Settings,
    /// Organization mode: a member's event is checked in the member account.
    members: Option<MemberClients>,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    warden::logging::init_lambda();
    let config = Config::from_env()?;
    let topic = config
        .topic_arn
        .clone()
        .ok_or("TOPIC_ARN is not set: the exposure guard has nowhere to alert")?;
    let clients = Clients::from_env().await;
    let state = State {
        ec2: Ec2Exposure::new(&clients),
        notifier: SnsNotifier::new(&clients, topic),
        idempotency: IdempotencyTable::new(&clients, config.lineage_table.clone()),
        ledger: LedgerTable::new(&clients, config.lineage_table.clone()),
        settings: Settings::from_config(&config),
        member_settings: Settings::from_config(&config.in_members()),
        members: MemberClients::new(&clients, &config.members, &config.member_role_name),
        clients,
        config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handle(&state, event))).await
}

async fn handle(state: &State, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    let own_account = AccountId::of_function_arn(&context.invoked_function_arn);
    let before = state.clients.calls().snapshot();
    if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        // The own account, then each member account reached through its role (organization
        // mode), in each region to sweep.
        let swept = org::sweep_each_account(&state.clients, own_account.as_ref(), &state.config, "exposure sweep", Some(&state.notifier), async |account: &Option<AccountId>, clients: &Clients, region: &Region| -> Result<Value, Error> {
            let member_ec2;
            let ec2 = if account == &own_account {
                &state.ec2
            } else {
                member_ec2 = Ec2Exposure::new(clients);
                &member_ec2
            };
            let settings = if account == &own_account { &state.settings } else { &state.member_settings };
            let report = sweep(ec2, settings, region, &|_, _, _| {}).await?;
            // What the sweep read becomes the share ledger the deprecation sweep reads. A failed
            // write only leaves the ledger older, which the deprecation sweep then does not trust.
            let ledger_writes = match account {
                Some(account) => match record_sweep(&state.ledger, account, region, &report.shares).await {
                    Ok(n) => Some(n),
                    Err(e) => {
                        tracing::error!(request_id = %context.request_id, account = %account, region = %region, error = %e, "share ledger not updated");
                        None
                    }
                },
                None => None,
            };
            let notification = sweep_notification(std::slice::from_ref(&report), account.as_ref().map(|a| a.as_str()));
            let message_id = state.notifier.publish(&notification).await?;
            tracing::info!(request_id = %context.request_id, account = ?account, region = %region, images = report.images_checked,
                exposed_images = report.exposed_images.len(), exposed_snapshots = report.exposed_snapshots.len(),
                errors = report.errors.len(), severity = %notification.severity, ledger_writes, "exposure sweep");
            Ok(json!({"account": account, "severity": notification.severity, "message_id": message_id, "report": report}))
        })
        .await?;
        let aws_calls = warden::aws::calls::render(&state.clients.calls().since(&before));
        tracing::info!(request_id = %context.request_id, aws_calls, "exposure sweeps done");
        return Ok(swept);
    }
    let guard = Guard {
        ec2: &state.ec2,
        notifier: &state.notifier,
        idempotency: &state.idempotency,
        ledger: &state.ledger,
        settings: &state.settings,
        own_account,
    };
    // In organization mode a member's event is checked (and reverted) in the member account.
    let parsed = parse_value(&payload);
    let member = org::member_of_event(
        state.members.as_ref(),
        &parsed,
        guard.own_account.as_ref(),
        Ec2Exposure::new,
    )
    .await?;
    let result = match &member {
        EventAccount::Member(account, ec2) => {
            Guard {
                ec2,
                settings: &state.member_settings,
                own_account: Some(account.clone()),
                ..guard
            }
            .handle(&parsed)
            .await
        }
        EventAccount::Own => guard.handle(&parsed).await,
        EventAccount::NotCovered(reason) => Ok(GuardOutcome::Ignored { reason: reason.clone() }),
    };
    let aws_calls = warden::aws::calls::render(&state.clients.calls().since(&before));
    match result {
        Ok(outcome) => {
            match &outcome {
                GuardOutcome::Alerted { severity, kind, summary, .. } => {
                    tracing::info!(request_id = %context.request_id, %severity, kind, summary, aws_calls, "alerted")
                }
                GuardOutcome::Quiet { summary } => {
                    tracing::info!(request_id = %context.request_id, summary, aws_calls, "no exposure")
                }
                GuardOutcome::Duplicate { event_id } => {
                    tracing::info!(request_id = %context.request_id, event_id, aws_calls, "duplicate event, nothing done")
                }
                GuardOutcome::Ignored { reason } => {
                    tracing::warn!(request_id = %context.request_id, reason, aws_calls, metric = "ignored_events", "event ignored")
                }
            }
            Ok(serde_json::to_value(&outcome)?)
        }
        Err(err) => {
            tracing::error!(request_id = %context.request_id, error = %err, aws_calls, "exposure check failed; the event will be retried");
            Err(err.into())
        }
    }
}
