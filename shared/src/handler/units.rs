//! What the three sweeping functions (exposure guard, deprecation enforcer, snapshot reaper)
//! share: [`Sweeper`] and [`SweepParts`], with the one schedule path ([`sweep_schedule`]) and
//! the one unit path ([`sweep_unit`]); and running units: one sweep unit (job, account,
//! region) is what a Step Functions Distributed Map child runs, and [`run_units`] runs many at
//! once for the CLI's `--organization --parallel N` and the benchmarks.
//!
//! A unit claims itself first (one claim per run, account, region and job), so a unit retried
//! after a lost answer neither acts nor reports twice; it reaches its account (its own, or a
//! member's through its role: a role that cannot be assumed fails the unit, by name); then it
//! runs the function's sweep there, notifying nothing: the job's summary speaks for it.

use std::future::Future;

use serde::Serialize;
use serde_json::{json, Value};

use super::{HandlerError, InAccount, Invocation, Reach};
use crate::aws::idempotency::IdempotencyTable;
use crate::aws::org::sweep_each_account;
use crate::aws::{sns::SnsNotifier, Clients};
use crate::config::Config;
use crate::idempotency::{Claim, Idempotency};
use crate::ids::{AccountId, Region};
use crate::notify::Severity;
use crate::sweep::{Figures, Job, Unit, UnitReport};

/// What the three sweeping functions share: a sweep of one account and region, run for the
/// daily schedule (every account and region in turn, each notifying) or as a unit (notifying
/// nothing).
pub trait Sweeper {
    /// The adapter the sweep acts through, and the settings it acts with.
    type Ec2;
    type Settings;
    /// What one account and region's sweep came to.
    type Report: Serialize;
    const JOB: Job;

    fn parts(&self) -> &SweepParts<Self::Ec2, Self::Settings>;

    /// Sweeps `region` of `in_account`; publishes what it has to say only when `notify`.
    fn sweep_in(
        &self,
        in_account: &InAccount<'_, Self::Ec2, Self::Settings>,
        region: &Region,
        inv: &Invocation,
        notify: bool,
    ) -> impl Future<Output = Result<Self::Report, HandlerError>>;

    /// The report in the terms every job shares.
    fn outcome(report: &Self::Report) -> UnitOutcome;

    /// The schedule's response entry for one account and region.
    fn entry(account: &Option<AccountId>, report: &Self::Report) -> Value {
        json!({"account": account, "report": report})
    }
}

/// What every sweeping function holds: its clients and configuration, its way into accounts,
/// the table its claims go to (events' and units'), and the topic.
pub struct SweepParts<T, S> {
    pub clients: Clients,
    pub config: Config,
    pub reach: Reach<T, S>,
    pub claims: IdempotencyTable,
    pub notifier: Option<SnsNotifier>,
}

impl<T, S> SweepParts<T, S> {
    /// `adapter` and `settings` as [`Reach::new`] takes them.
    pub fn new(
        clients: &Clients,
        config: &Config,
        adapter: fn(&Clients) -> T,
        settings: fn(&Config) -> S,
    ) -> Self {
        Self {
            clients: clients.clone(),
            config: config.clone(),
            reach: Reach::new(clients, config, adapter, settings),
            claims: IdempotencyTable::new(clients, config.lineage_table.clone()),
            notifier: SnsNotifier::from_config(clients, config),
        }
    }
}

/// The daily schedule: every account (the own, then each member through its role) in every
/// region to sweep, one after another.
pub async fn sweep_schedule<S: Sweeper>(s: &S, inv: &Invocation) -> Result<Value, HandlerError> {
    let (own, parts) = (&inv.own_account, s.parts());
    sweep_each_account(
        &parts.clients,
        own.as_ref(),
        &parts.config,
        S::JOB.title(),
        parts.notifier.as_ref(),
        async |account: &Option<AccountId>, clients: &Clients, region: &Region| {
            let in_account = parts.reach.in_account(account, own, clients);
            let report = s.sweep_in(&in_account, region, inv, true).await?;
            Ok(S::entry(account, &report))
        },
    )
    .await
}

/// One unit of an organization sweep, through [`run_unit`].
pub async fn sweep_unit<S: Sweeper>(
    s: &S,
    unit: &Unit,
    inv: &Invocation,
) -> Result<UnitReport, HandlerError> {
    let parts = s.parts();
    run_unit(S::JOB, &parts.claims, &parts.reach, unit, inv, async |in_account| {
        Ok(S::outcome(&s.sweep_in(in_account, &unit.region, inv, false).await?))
    })
    .await
}

/// What a function's sweep of one unit came to, in the terms every job shares.
pub struct UnitOutcome {
    pub figures: Figures,
    pub severity: Severity,
    pub summary: String,
    /// One line per finding worth naming (an exposed image, an image retired or due to retire,
    /// a deadline near, a snapshot deleted or to delete), for the job's summary.
    pub details: Vec<String>,
}

/// Where a unit's payload is in an invocation: `{"unit": {...}}`.
pub fn unit_of(payload: &serde_json::Value) -> Option<Result<Unit, String>> {
    let unit = payload.get("unit")?;
    Some(serde_json::from_value(unit.clone()).map_err(|e| format!("not a sweep unit: {e}")))
}

/// Claims `unit`, reaches its account through `reach`, and runs `sweep` there. `job` is the
/// calling function's: a unit of another job is refused, never run by the wrong function.
pub async fn run_unit<T, S>(
    job: Job,
    claims: &IdempotencyTable,
    reach: &Reach<T, S>,
    unit: &Unit,
    inv: &Invocation,
    sweep: impl AsyncFnOnce(&InAccount<'_, T, S>) -> Result<UnitOutcome, HandlerError>,
) -> Result<UnitReport, HandlerError> {
    if unit.job != job {
        return Err(
            format!("{} is not a {job} unit: sent to the wrong function", unit.name()).into()
        );
    }
    let function = format!("sweep-{}", unit.job);
    let key = unit.claim_key();
    match claims.claim_for(&function, &key, UNIT_LEASE_SECONDS).await? {
        Claim::Proceed => {}
        Claim::Done => return Ok(answered_without_acting(unit, DONE_BEFORE)),
        // Another invocation of this very unit is acting now (a retry whose first attempt is
        // still running): acting too would deregister or delete twice at once.
        Claim::InProgress => return Ok(answered_without_acting(unit, RUNNING_ELSEWHERE)),
    }
    let result = match reach.for_unit(&unit.account, &inv.own_account).await {
        Ok(in_account) => sweep(&in_account).await,
        Err(reason) => Err(reason.into()),
    };
    match result {
        Ok(outcome) => {
            // What the unit did is done: a claim that cannot be marked complete only lets a
            // retry decide again (each action checks the facts again), so the report stands.
            if let Err(e) = claims.complete(&function, &key, &outcome.summary).await {
                tracing::error!(unit = unit.name(), error = %e, "unit claim not marked complete");
            }
            Ok(UnitReport {
                unit: unit.clone(),
                figures: outcome.figures,
                severity: outcome.severity,
                summary: outcome.summary,
                details: outcome.details,
            })
        }
        Err(error) => {
            // Released, so that a retry of the unit may run it at once; a failed release only
            // makes the retry wait out the lease, and must not hide why the unit failed.
            if let Err(e) = claims.release(&function, &key).await {
                tracing::error!(unit = unit.name(), error = %e, "unit claim not released");
            }
            Err(error)
        }
    }
}

/// A unit's Lambda runs at most 900 s: its claim outlasts that, so a retry of a unit whose
/// first attempt is still acting finds it in progress rather than taking it over.
pub const UNIT_LEASE_SECONDS: i64 = 960;

const DONE_BEFORE: &str = "done by an earlier attempt of this run; nothing done again";
const RUNNING_ELSEWHERE: &str =
    "being run by another attempt of this run; nothing done here, its figures are that attempt's";

/// A unit another attempt of the same run completed or is running: its figures are in that
/// attempt's answer and log, not counted again.
fn answered_without_acting(unit: &Unit, why: &str) -> UnitReport {
    UnitReport {
        unit: unit.clone(),
        figures: Figures::default(),
        severity: Severity::Info,
        summary: why.to_owned(),
        details: Vec::new(),
    }
}

/// Runs `units` through `function`, `parallel` at a time (each unit's requests go out
/// concurrently with the others', as Distributed Map children would), calling `progress` with
/// (done, failed, left) after each. Returns the reports and the failures, each naming its unit.
pub async fn run_units<F: super::Function>(
    function: &F,
    units: &[Unit],
    inv: &Invocation,
    parallel: usize,
    mut progress: impl FnMut(usize, usize, usize),
) -> (Vec<UnitReport>, Vec<crate::sweep::FailedUnit>) {
    use futures_util::stream::{self, StreamExt};
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    let mut results = stream::iter(units)
        .map(|unit| async move { (unit, function.on_unit(unit, inv).await) })
        .buffer_unordered(parallel.max(1));
    while let Some((unit, result)) = results.next().await {
        match result {
            Ok(report) => done.push(report),
            Err(error) => failed
                .push(crate::sweep::FailedUnit { unit: unit.clone(), cause: error.to_string() }),
        }
        progress(done.len(), failed.len(), units.len() - done.len() - failed.len());
    }
    (done, failed)
}
