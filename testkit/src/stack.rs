//! Connection to the local stack (moto on loopback) for tests and the demo.
//!
//! The stack is started by `dev/local-stack up`, which exports `AWS_ENDPOINT_URL` and friends;
//! `dev/test` does that around the test run. Tests fail loudly when it is missing rather than
//! silently skipping.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

/// The SDK configuration for the local stack. Panics with instructions when the stack's
/// environment is absent or points anywhere but loopback.
pub async fn sdk_config() -> SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"];
    assert!(
        loopback.iter().any(|p| endpoint.starts_with(p)),
        "AWS_ENDPOINT_URL={endpoint:?}: these tests need the local stack on loopback. \
         Run them with dev/test, or eval \"$(dev/local-stack up)\" first."
    );
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Creates a new, empty lineage table named `<prefix>-<unique>` with the schema of
/// `template.yaml`'s `LineageTable` (pk/sk strings, on demand), and returns its name.
/// (`lineage_schema_matches_template` checks that this schema is the template's.)
pub async fn fresh_lineage_table(sdk: &SdkConfig, prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("{prefix}-{}-{nanos}-{n}", std::process::id());
    create_lineage_table(sdk, &name).await.unwrap_or_else(|e| panic!("{e:#}"));
    name
}

/// Creates the lineage table `name` (template.yaml's schema); an existing one is left as is.
pub async fn create_lineage_table(sdk: &SdkConfig, name: &str) -> anyhow::Result<()> {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("name and type set")
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder().attribute_name(n).key_type(t).build().expect("set")
    };
    let created = client
        .create_table()
        .table_name(name)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e)
            if aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&e)
                == Some("ResourceInUseException") =>
        {
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("creating table {name} on the local stack: {e:?}")),
    }
}

/// POSTs `body` to one of the local-only endpoints of the local stack's extension
/// (`dev/moto_ext`, paths under `/moto-ext/`) and returns its JSON answer. Refuses an endpoint
/// that is not on loopback.
pub async fn post_extension(
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    use anyhow::{ensure, Context};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .context("AWS_ENDPOINT_URL (the local stack) is not set")?;
    let host = endpoint
        .strip_prefix("http://")
        .context("the local stack's endpoint is plain http")?
        .trim_end_matches('/');
    ensure!(
        host.starts_with("127.0.0.1:") || host.starts_with("localhost:"),
        "{host} is not loopback"
    );
    let body = serde_json::to_vec(body)?;
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .with_context(|| format!("connecting to {host}"))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let json = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    ensure!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "the local stack refused {path}: {response}"
    );
    serde_json::from_str(json).with_context(|| format!("the local stack's answer to {path}"))
}

/// `sdk` for `region` (the local stack keeps DynamoDB tables per region, as AWS does: a function
/// started with `AWS_REGION=region` finds only the tables created there).
pub fn in_region(sdk: &SdkConfig, region: &str) -> SdkConfig {
    sdk.to_builder().region(aws_config::Region::new(region.to_owned())).build()
}
