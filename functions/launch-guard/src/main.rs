//! `launch-guard` Lambda: every RunInstances (Auto Scaling's launches included) and every new
//! launch template version has the images it launches looked up in the lineage: one that
//! descends from a quarantined image is alerted CRITICAL, and with `APPROVED_BASES` set one
//! that descends from none of them a WARNING naming where its chain ends.
//!
//! The handler is [`warden::handler::LaunchGuard`], built once per container and run through
//! [`warden::handler::invoke`], as `ami-warden replay`, the benchmarks and the tests run it.
//! A failure to publish returns `Err`, so Lambda retries the event.

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;
use warden::handler::{invoke, LaunchGuard, ERROR_TYPE};

#[tokio::main]
async fn main() -> Result<(), Error> {
    warden::logging::init_lambda();
    let config = warden::config::Config::from_env()?;
    let function = &LaunchGuard::new(&warden::aws::Clients::from_env().await, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let (payload, context) = event.into_parts();
        invoke(function, payload, &context.invoked_function_arn, context.deadline())
            .await
            .map_err(|e| Diagnostic { error_type: ERROR_TYPE.into(), error_message: e.to_string() })
    }))
    .await
}
