//! `exposure-guard` Lambda: alerts when an AMI or its snapshots become public or shared outside
//! the allow-list, or image block public access is turned off; reverts public shares when
//! `REMEDIATE_PUBLIC=true`; and, on its daily schedule, sweeps its regions (`SWEEP_REGIONS`,
//! else its own) and member accounts.
//!
//! The handler is [`warden::handler::ExposureGuard`], built once per container and run through
//! [`warden::handler::invoke`], the dispatcher `ami-warden replay`, the benchmarks and the
//! tests run too. A failure to publish returns `Err`, so Lambda retries the event.

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;
use warden::handler::{invoke, ExposureGuard, ERROR_TYPE};

#[tokio::main]
async fn main() -> Result<(), Error> {
    warden::logging::init_lambda();
    let config = warden::config::Config::from_env()?;
    let function = &ExposureGuard::new(&warden::aws::Clients::from_env().await, &config)?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let (payload, context) = event.into_parts();
        invoke(function, payload, &context.invoked_function_arn, context.deadline())
            .await
            .map_err(|e| Diagnostic { error_type: ERROR_TYPE.into(), error_message: e.to_string() })
    }))
    .await
}
