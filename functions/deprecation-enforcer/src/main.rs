//! `deprecation-enforcer` Lambda: stamps a deprecation deadline on every new image (CreateImage,
//! CopyImage, RegisterImage, CreateRestoreImageTask), and on its daily schedule sweeps its
//! regions (`SWEEP_REGIONS`, else its own): stamps missing deadlines, warns about upcoming ones,
//! and retires images past their deadline plus grace that nothing uses, keeping the newest of
//! each family.
//!
//! `MODE=report` (the default) changes nothing and reports what it would do. Thin shell over
//! [`warden::deprecation::run::Enforcer`], the code `ami-warden deprecation` runs. In
//! organization mode a member account's event is handled in that account, through its role.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use warden::aws::org::{self, EventAccount, MemberClients};
use warden::aws::{
    audit::AuditTable, deprecation::Ec2Deprecation, ledger::LedgerTable,
    lineage_table::LineageTable, sns::SnsNotifier, Clients,
};
use warden::config::Config;
use warden::deprecation::run::{Enforcer, EventOutcome};
use warden::deprecation::{Decision, Settings};
use warden::event::parse_value;
use warden::ids::{AccountId, Region};

struct State {
    clients: Clients,
    config: Config,
    ec2: Ec2Deprecation,
    lineage: LineageTable,
    audit: AuditTable,
    ledger: LedgerTable,
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
        tracing::warn!("TOPIC_ARN is not set: warnings and retirement reports are only logged");
    }
    let state = State {
        ec2: Ec2Deprecation::new(&clients),
        lineage: LineageTable::from_clients(&clients, config.lineage_table.clone()),
        audit: AuditTable::new(&clients, config.lineage_table.clone()),
        ledger: LedgerTable::new(&clients, config.lineage_table.clone()),
        notifier: config.topic_arn.as_ref().map(|t| SnsNotifier::new(&clients, t)),
        settings: Settings::from_config(&config),
        member_settings: Settings::from_config(&config.in_members()),
        members: MemberClients::new(&clients, &config.members, &config.member_role_name),
        clients,
        config,
    };
    tracing::info!(mode = ?state.settings.mode, deprecate_after_days = state.settings.deprecate_after_days,
        grace_days = state.settings.grace_days, keep_latest = state.settings.keep_latest, "deprecation enforcer ready");
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handle(&state, event))).await
}

async fn handle(state: &State, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    let before = state.clients.calls().snapshot();
    let enforcer = Enforcer {
        ec2: &state.ec2,
        lineage: &state.lineage,
        audit: &state.audit,
        ledger: &state.ledger,
        notifier: state.notifier.as_ref(),
        settings: &state.settings,
        own_account: AccountId::of_function_arn(&context.invoked_function_arn),
        // Retirements stop in time for the invocation to end cleanly.
        stop_by: Some(warden::budget::stop_by(context.deadline())),
    };
    let now = chrono::Utc::now();
    if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        // The own account, then each member account reached through its role (organization
        // mode), in each region to sweep.
        let own = enforcer.own_account.clone();
        let swept = org::sweep_each_account(&state.clients, own.as_ref(), &state.config, "deprecation sweep", state.notifier.as_ref(), async |account: &Option<AccountId>, clients: &Clients, region: &Region| -> Result<Value, Error> {
            let member_ec2 = Ec2Deprecation::new(clients);
            let in_account = Enforcer {
                ec2: if account == &own { &state.ec2 } else { &member_ec2 },
                settings: if account == &own { &state.settings } else { &state.member_settings },
                own_account: account.clone(),
                ..enforcer
            };
            match in_account.sweep(region, now).await {
                Ok(report) => {
                    let retire = report.planned.iter().filter(|p| p.decision == Decision::Deregister).count();
                    tracing::info!(request_id = %context.request_id, account = ?account, region = %region, images = report.planned.len(),
                        stamped = report.stamped.len(), retire, deregistered = report.deregistered.len(),
                        retirements_left = report.retirements_left.len(), stamps_left = report.stamps_left.len(),
                        warnings = report.warnings.len(), errors = report.errors.len(), mode = report.mode, "deprecation sweep");
                    Ok(json!({"account": account, "report": report}))
                }
                Err(err) => {
                    let aws_calls = warden::aws::calls::render(&state.clients.calls().since(&before));
                    tracing::error!(request_id = %context.request_id, account = ?account, region = %region, error = %err, aws_calls, "deprecation sweep failed in this account and region");
                    Err(err.into())
                }
            }
        })
        .await?;
        let aws_calls = warden::aws::calls::render(&state.clients.calls().since(&before));
        tracing::info!(request_id = %context.request_id, aws_calls, "deprecation sweeps done");
        return Ok(swept);
    }
    // In organization mode a member's image is stamped in the member account, through its role.
    let parsed = parse_value(&payload);
    let member = org::member_of_event(
        state.members.as_ref(),
        &parsed,
        enforcer.own_account.as_ref(),
        Ec2Deprecation::new,
    )
    .await?;
    let result = match &member {
        EventAccount::Member(account, ec2) => {
            Enforcer {
                ec2,
                settings: &state.member_settings,
                own_account: Some(account.clone()),
                ..enforcer
            }
            .on_event(&parsed, now)
            .await
        }
        EventAccount::Own => enforcer.on_event(&parsed, now).await,
        EventAccount::NotCovered(reason) => Ok(EventOutcome::Ignored { reason: reason.clone() }),
    };
    let aws_calls = warden::aws::calls::render(&state.clients.calls().since(&before));
    match result {
        Ok(outcome) => {
            match &outcome {
                EventOutcome::Ignored { reason } => {
                    tracing::warn!(request_id = %context.request_id, reason, aws_calls, metric = "ignored_events", "event ignored")
                }
                other => {
                    tracing::info!(request_id = %context.request_id, outcome = ?other, aws_calls, "deadline")
                }
            }
            Ok(json!(outcome))
        }
        Err(err) => {
            tracing::error!(request_id = %context.request_id, error = %err, aws_calls, "stamping failed; the event will be retried");
            Err(err.into())
        }
    }
}
