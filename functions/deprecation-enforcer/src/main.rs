//! `deprecation-enforcer` Lambda: stamps a deprecation deadline on every new image, and on its
//! daily schedule sweeps its regions (`SWEEP_REGIONS`, else its own) and member accounts:
//! stamps missing deadlines, warns about upcoming ones, and retires images past their deadline
//! plus grace that nothing uses, keeping the newest of each family. `MODE=report` (the
//! default) changes nothing and reports what it would do.
//!
//! The handler is [`warden::handler::DeprecationEnforcer`], built once per container and run
//! through [`warden::handler::invoke`], the dispatcher `ami-warden replay`, the benchmarks and
//! the tests run too.

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;
use warden::handler::{invoke, DeprecationEnforcer, ERROR_TYPE};

#[tokio::main]
async fn main() -> Result<(), Error> {
    warden::logging::init_lambda();
    let config = warden::config::Config::from_env()?;
    let function = &DeprecationEnforcer::new(&warden::aws::Clients::from_env().await, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let (payload, context) = event.into_parts();
        invoke(function, payload, &context.invoked_function_arn, context.deadline())
            .await
            .map_err(|e| Diagnostic { error_type: ERROR_TYPE.into(), error_message: e.to_string() })
    }))
    .await
}
