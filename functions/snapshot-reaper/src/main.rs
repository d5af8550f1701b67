//! `snapshot-reaper` Lambda: on DeregisterImage, decides each snapshot the image left behind
//! (and, on its daily schedule, every owned snapshot whose image is gone, in each region of
//! `SWEEP_REGIONS`, else its own); in `MODE=enforce` tags it for the Recycle Bin and deletes it. Every decision is audited; one summary per run
//! goes to the topic.
//!
//! Thin shell over [`warden::reaper::run::Reaper`], the code `ami-warden snapshots` runs. AWS
//! failures while recording or notifying return `Err`, so Lambda retries the event (the claim on
//! its `eventID` is released first). In organization mode a member account's event is handled
//! in that account, through its role.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use warden::aws::org::{self, EventAccount, MemberClients};
use warden::aws::{
    audit::AuditTable, idempotency::IdempotencyTable, ledger::LedgerTable,
    lineage_table::LineageTable, snapshots::Ec2Snapshots, sns::SnsNotifier, Clients,
};
use warden::config::Config;
use warden::event::parse_value;
use warden::ids::{AccountId, Region};
use warden::reaper::run::{EventOutcome, Reaper};
use warden::reaper::Settings;

struct State {
    clients: Clients,
    config: Config,
    ec2: Ec2Snapshots,
    lineage: LineageTable,
    audit: AuditTable,
    ledger: LedgerTable,
    idempotency: IdempotencyTable,
    notifier: Option<SnsNotifier>,
    settings: Settings,
    /// The settings in member accounts: report only unless MEMBER_ENFORCE (`Config::in_members`).
    member_settings: Settings,
    /// Organization mode: a member's event is handled in the member account.
    members: Option<MemberClients>,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    warden::logging::init_lambda();
    let config = Config::from_env()?;
    let clients = Clients::from_env().await;
    if config.topic_arn.is_none() {
        tracing::warn!("TOPIC_ARN is not set: run summaries are only logged");
    }
    let state = State {
        ec2: Ec2Snapshots::new(&clients),
        lineage: LineageTable::from_clients(&clients, config.lineage_table.clone()),
        audit: AuditTable::new(&clients, config.lineage_table.clone()),
        ledger: LedgerTable::new(&clients, config.lineage_table.clone()),
        idempotency: IdempotencyTable::new(&clients, config.lineage_table.clone()),
        notifier: config.topic_arn.as_ref().map(|t| SnsNotifier::new(&clients, t)),
        settings: Settings::from_config(&config),
        member_settings: Settings::from_config(&config.in_members()),
        members: MemberClients::new(&clients, &config.members, &config.member_role_name),
        clients,
        config,
    };
    tracing::info!(mode = ?state.settings.mode, min_age_days = state.settings.min_age_days, "snapshot reaper ready");
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handle(&state, event))).await
}

async fn handle(state: &State, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    let before = state.clients.calls().snapshot();
    let reaper = Reaper {
        ec2: &state.ec2,
        lineage: &state.lineage,
        audit: &state.audit,
        ledger: &state.ledger,
        idempotency: &state.idempotency,
        notifier: state.notifier.as_ref(),
        settings: &state.settings,
        own_account: AccountId::of_function_arn(&context.invoked_function_arn),
        // Deletions stop in time for the invocation to end cleanly.
        stop_by: Some(warden::budget::stop_by(context.deadline())),
    };
    let now = chrono::Utc::now();
    let result = if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        // The own account, then each member account reached through its role (organization
        // mode), in each region to sweep.
        let own = reaper.own_account.clone();
        let swept = org::sweep_each_account(&state.clients, own.as_ref(), &state.config, "snapshot reaper sweep", state.notifier.as_ref(), async |account: &Option<AccountId>, clients: &Clients, region: &Region| -> Result<Value, Error> {
            let member_ec2 = Ec2Snapshots::new(clients);
            let in_account = Reaper {
                ec2: if account == &own { &state.ec2 } else { &member_ec2 },
                settings: if account == &own { &state.settings } else { &state.member_settings },
                own_account: account.clone(),
                ..reaper
            };
            let report = match in_account.sweep(region, now, &|_, _| {}).await {
                Ok(report) => report,
                Err(err) => {
                    tracing::error!(request_id = %context.request_id, account = ?account, region = %region, error = %err, "reaper sweep failed in this account and region");
                    return Err(err.into());
                }
            };
            tracing::info!(request_id = %context.request_id, account = ?account, trigger = report.trigger, decided = report.outcomes.len(),
                deleted_gib = report.deleted_gib(), planned_gib = report.planned_gib(), failures = report.failures(),
                left_for_next_run = report.left_for_next_run(), errors = report.errors.len(), "reaper sweep");
            Ok(json!({"account": account, "report": report}))
        })
        .await?;
        let aws_calls = warden::aws::calls::render(&state.clients.calls().since(&before));
        tracing::info!(request_id = %context.request_id, aws_calls, "reaper sweeps done");
        return Ok(swept);
    } else {
        // In organization mode a member's deregistration is reaped in the member account.
        let parsed = parse_value(&payload);
        let member = org::member_of_event(
            state.members.as_ref(),
            &parsed,
            reaper.own_account.as_ref(),
            Ec2Snapshots::new,
        )
        .await?;
        match &member {
            EventAccount::Member(account, ec2) => {
                Reaper {
                    ec2,
                    settings: &state.member_settings,
                    own_account: Some(account.clone()),
                    ..reaper
                }
                .on_event(&parsed, now)
                .await
            }
            EventAccount::Own => reaper.on_event(&parsed, now).await,
            EventAccount::NotCovered(reason) => {
                Ok(EventOutcome::Ignored { reason: reason.clone() })
            }
        }
    };
    let aws_calls = warden::aws::calls::render(&state.clients.calls().since(&before));
    match result {
        Ok(outcome) => {
            match &outcome {
                EventOutcome::Reaped { report } => {
                    tracing::info!(request_id = %context.request_id, trigger = report.trigger,
                    decided = report.outcomes.len(), deleted_gib = report.deleted_gib(), planned_gib = report.planned_gib(),
                    failures = report.failures(), left_for_next_run = report.left_for_next_run(), errors = report.errors.len(), aws_calls, "reaper run")
                }
                EventOutcome::Duplicate { event_id } => {
                    tracing::info!(request_id = %context.request_id, event_id, aws_calls, "duplicate event, nothing done")
                }
                EventOutcome::Ignored { reason } => {
                    tracing::warn!(request_id = %context.request_id, reason, aws_calls, metric = "ignored_events", "event ignored")
                }
            }
            Ok(json!(outcome))
        }
        Err(err) => {
            tracing::error!(request_id = %context.request_id, error = %err, aws_calls, "reaper run failed; it will be retried");
            Err(err.into())
        }
    }
}
