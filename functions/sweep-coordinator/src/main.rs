//! `sweep-coordinator` Lambda: the plan and summary steps of the daily sweep state machine
//! (`statemachine/sweeps.asl.json`), and the summary of a run whose execution failed.
//!
//! The handler is [`warden::handler::SweepCoordinator`]: a plan writes a job's units to S3 for
//! the Distributed Map; a summary reads the Map Run's results back and publishes the job's one
//! notification, naming every unit that failed or was not reached. Its metrics (the units
//! that ran, failed and were not reached) go to stdout, where CloudWatch Logs extracts them.

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;
use warden::handler::{SweepCoordinator, ERROR_TYPE};
use warden::ids::AccountId;
use warden::metrics::Metrics;

#[tokio::main]
async fn main() -> Result<(), Error> {
    warden::logging::init_lambda();
    let config = warden::config::Config::from_env()?;
    let coordinator = &SweepCoordinator::new(&warden::aws::Clients::from_env().await, &config)?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let own = AccountId::of_function_arn(&event.context.invoked_function_arn);
        coordinator
            .handle(&event.payload, own, &Metrics::lambda())
            .await
            .map_err(|e| Diagnostic { error_type: ERROR_TYPE.into(), error_message: e.to_string() })
    }))
    .await
}
