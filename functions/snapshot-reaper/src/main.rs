//! `snapshot-reaper` Lambda: on DeregisterImage, decides each snapshot the image left behind
//! (and, on its daily schedule, every owned snapshot whose image is gone, in each region of
//! `SWEEP_REGIONS`, else its own, and in member accounts); in `MODE=enforce` tags it for the
//! Recycle Bin and deletes it. Every decision is audited; one summary per run goes to the topic.
//!
//! The handler is [`warden::handler::SnapshotReaper`], built once per container and run
//! through [`warden::handler::invoke`], the dispatcher `ami-warden replay`, the benchmarks and
//! the tests run too. AWS failures while recording or notifying return `Err`, so Lambda retries
//! the event (the claim on its `eventID` is released first).

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;
use warden::handler::{invoke, SnapshotReaper, ERROR_TYPE};

#[tokio::main]
async fn main() -> Result<(), Error> {
    warden::logging::init_lambda();
    let config = warden::config::Config::from_env()?;
    let function = &SnapshotReaper::new(&warden::aws::Clients::from_env().await, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let (payload, context) = event.into_parts();
        invoke(function, payload, &context.invoked_function_arn, context.deadline())
            .await
            .map_err(|e| Diagnostic { error_type: ERROR_TYPE.into(), error_message: e.to_string() })
    }))
    .await
}
