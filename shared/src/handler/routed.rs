//! The five event functions together, for whoever delivers events as EventBridge would
//! (`ami-warden replay`, the benchmarks, tests): an event goes to a function named by its
//! route ([`crate::routes`]) and through [`super::handle`], exactly as that Lambda handles it.

use serde::Serialize;
use serde_json::Value;

use super::{
    handle, DeprecationEnforcer, ExposureGuard, Handled, HandlerError, Invocation, LaunchGuard,
    LineageRecorder, SnapshotReaper,
};
use crate::aws::Clients;
use crate::config::Config;
use crate::routes::Function as Route;

/// The functions, each built once. The exposure guard cannot be built without a topic; its
/// events then fail with the reason.
pub struct Functions {
    pub recorder: LineageRecorder,
    pub guard: Result<ExposureGuard, String>,
    pub enforcer: DeprecationEnforcer,
    pub reaper: SnapshotReaper,
    pub launch: LaunchGuard,
}

/// What one function answered to one event.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Recorder(crate::recorder::Outcome),
    Guard(crate::exposure::guard::GuardOutcome),
    Enforcer(crate::deprecation::run::EventOutcome),
    Reaper(crate::reaper::run::EventOutcome),
    Launch(crate::provenance::run::LaunchOutcome),
}

impl Functions {
    /// All five over the same clients and configuration, as one deployment builds them.
    pub fn new(clients: &Clients, config: &Config) -> Self {
        Self {
            recorder: LineageRecorder::new(clients, config),
            guard: ExposureGuard::new(clients, config),
            enforcer: DeprecationEnforcer::new(clients, config),
            reaper: SnapshotReaper::new(clients, config),
            launch: LaunchGuard::new(clients, config),
        }
    }

    /// Hands `payload` to `route`'s function, through the dispatcher that Lambda runs.
    pub async fn deliver(
        &self,
        route: Route,
        payload: &Value,
        inv: &Invocation,
    ) -> Result<Handled<Answer>, HandlerError> {
        let handled = match route {
            Route::LineageRecorder => {
                handle(&self.recorder, payload, inv).await?.map(Answer::Recorder)
            }
            Route::ExposureGuard => {
                let guard = self.guard.as_ref().map_err(|reason| reason.clone())?;
                handle(guard, payload, inv).await?.map(Answer::Guard)
            }
            Route::DeprecationEnforcer => {
                handle(&self.enforcer, payload, inv).await?.map(Answer::Enforcer)
            }
            Route::SnapshotReaper => handle(&self.reaper, payload, inv).await?.map(Answer::Reaper),
            Route::LaunchGuard => handle(&self.launch, payload, inv).await?.map(Answer::Launch),
        };
        Ok(handled)
    }
}

impl<O> Handled<O> {
    /// The event's outcome mapped by `f`; a sweep's response as it is.
    pub fn map<P>(self, f: impl FnOnce(O) -> P) -> Handled<P> {
        match self {
            Handled::Event(outcome) => Handled::Event(f(outcome)),
            Handled::Swept(response) => Handled::Swept(response),
            Handled::Unit(report) => Handled::Unit(report),
        }
    }
}
