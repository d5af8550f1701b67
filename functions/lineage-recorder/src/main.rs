//! `lineage-recorder` Lambda: records AMI lineage from CloudTrail image events.
//!
//! The handler is [`warden::handler::LineageRecorder`], built once per container and run
//! through [`warden::handler::invoke`], the dispatcher `ami-warden replay`, the benchmarks and
//! the tests run too. Bad input is logged as a warning and acknowledged (`Ok`), so it cannot
//! cause a retry storm; AWS failures (after the SDK's bounded retries) return `Err`, so Lambda
//! retries the event and finally sends it to the dead-letter queue.

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;
use warden::handler::{invoke, LineageRecorder, ERROR_TYPE};

#[tokio::main]
async fn main() -> Result<(), Error> {
    warden::logging::init_lambda();
    let config = warden::config::Config::from_env()?;
    let function = &LineageRecorder::new(&warden::aws::Clients::from_env().await, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let (payload, context) = event.into_parts();
        invoke(function, payload, &context.invoked_function_arn, context.deadline())
            .await
            .map_err(|e| Diagnostic { error_type: ERROR_TYPE.into(), error_message: e.to_string() })
    }))
    .await
}
