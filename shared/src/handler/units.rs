//! Running one sweep unit (job, account, region): the step a Step Functions Distributed Map
//! child and a task of the CLI's `--organization --parallel N` both run.
//!
//! A unit claims itself first (one claim per run, account, region and job), so a unit retried
//! after a lost answer neither acts nor reports twice; it reaches its account (its own, or a
//! member's through its role: a role that cannot be assumed fails the unit, by name); then it
//! runs the function's sweep there, notifying nothing: the job's summary speaks for it.

use super::{HandlerError, InAccount, Invocation, Reach};
use crate::aws::idempotency::IdempotencyTable;
use crate::idempotency::{Claim, Idempotency};
use crate::notify::Severity;
use crate::sweep::{Figures, Job, Unit, UnitReport};

/// What a function's sweep of one unit came to, in the terms every job shares.
pub struct UnitOutcome {
    pub figures: Figures,
    pub severity: Severity,
    pub summary: String,
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
    match claims.claim(&function, &key).await? {
        Claim::Proceed => {}
        Claim::Done => return Ok(done_before(unit)),
        Claim::InProgress => {
            return Err(format!("{} is running in another invocation", unit.name()).into())
        }
    }
    let result = match reach.for_unit(&unit.account, &inv.own_account).await {
        Ok(in_account) => sweep(&in_account).await,
        Err(reason) => Err(reason.into()),
    };
    match result {
        Ok(outcome) => {
            claims.complete(&function, &key, &outcome.summary).await?;
            Ok(UnitReport {
                unit: unit.clone(),
                figures: outcome.figures,
                severity: outcome.severity,
                summary: outcome.summary,
            })
        }
        Err(error) => {
            // Released, so that a retry of the unit may run it at once.
            claims.release(&function, &key).await?;
            Err(error)
        }
    }
}

/// A unit an earlier attempt of the same run completed: its figures are in that attempt's
/// answer and log, not counted again.
fn done_before(unit: &Unit) -> UnitReport {
    UnitReport {
        unit: unit.clone(),
        figures: Figures::default(),
        severity: Severity::Info,
        summary: "done by an earlier attempt of this run; nothing done again".into(),
    }
}
