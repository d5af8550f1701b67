//! The Slack incoming webhook: its URL (a secret) and a bounded, retrying POST.
//!
//! The URL is the credential: anyone holding it can post to the channel. It lives only inside
//! [`WebhookUrl`], whose `Debug` is redacted, and no error or log line built here contains it
//! (errors from the HTTP stack are scrubbed of it too). HTTP 429 is retried after `Retry-After`,
//! 5xx and transport errors after an exponential backoff, both within a fixed budget; anything
//! else, or an exhausted budget, is an error so the invocation fails and SNS/Lambda retry.

use std::fmt;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use thiserror::Error;

/// The webhook URL. Never printed.
#[derive(Clone)]
pub struct WebhookUrl(Uri, String);

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookUrl(<redacted>)")
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("the secret holds no webhook URL (expected the URL, or JSON with a \"url\" or \"webhook_url\" key)")]
    Missing,
    #[error("the secret's webhook URL is not a valid URL")]
    Invalid,
    #[error("the secret's webhook URL must use https (plain http is accepted only for a loopback address)")]
    NotHttps,
}

impl WebhookUrl {
    /// Reads the URL out of a secret value: the bare URL, or JSON `{"url": …}` /
    /// `{"webhook_url": …}`. Requires https, except for loopback hosts.
    pub fn from_secret(secret: &str) -> Result<Self, UrlError> {
        let secret = secret.trim();
        let raw = if secret.starts_with('{') {
            let value: serde_json::Value =
                serde_json::from_str(secret).map_err(|_| UrlError::Missing)?;
            ["url", "webhook_url", "webhookUrl"]
                .iter()
                .find_map(|k| value.get(k).and_then(|v| v.as_str()).map(str::to_owned))
                .ok_or(UrlError::Missing)?
        } else {
            secret.to_owned()
        };
        if raw.is_empty() {
            return Err(UrlError::Missing);
        }
        let uri: Uri = raw.parse().map_err(|_| UrlError::Invalid)?;
        let host = uri.host().ok_or(UrlError::Invalid)?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") => {}
            Some("http") => return Err(UrlError::NotHttps),
            _ => return Err(UrlError::Invalid),
        }
        Ok(Self(uri, raw))
    }

    /// Replaces every occurrence of the URL (and of its path, the secret part) in `text`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.1, "<webhook>");
        let path = self.0.path();
        if path.len() > 1 {
            out = out.replace(path, "/<redacted>");
        }
        out
    }
}

/// How hard to try.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    /// First backoff after a 5xx or transport error; doubles each time.
    pub base_backoff: Duration,
    /// The longest single wait, whatever `Retry-After` says.
    pub max_wait: Duration,
    /// Per attempt.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(8),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Error)]
pub enum PostError {
    #[error("Slack rejected the message: HTTP {status}: {body}")]
    Rejected { status: u16, body: String },
    #[error("Slack still failing after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
}

/// What a successful post took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub attempts: u32,
}

pub struct Webhook {
    url: WebhookUrl,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    policy: RetryPolicy,
}

impl Webhook {
    pub fn new(url: WebhookUrl, policy: RetryPolicy) -> Result<Self, std::io::Error> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self { url, client: Client::builder(TokioExecutor::new()).build(https), policy })
    }

    /// Posts a JSON body, retrying as the policy allows.
    pub async fn post(&self, body: &serde_json::Value) -> Result<Delivered, PostError> {
        let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let mut backoff = self.policy.base_backoff;
        let mut last = String::new();
        for attempt in 1..=self.policy.max_attempts {
            let wait = match self.attempt(bytes.clone()).await {
                Ok(Outcome::Ok) => return Ok(Delivered { attempts: attempt }),
                Ok(Outcome::Rejected { status, body }) => {
                    return Err(PostError::Rejected { status, body: self.url.scrub(&body) })
                }
                Ok(Outcome::RateLimited { retry_after }) => {
                    last = "HTTP 429 rate limited".into();
                    retry_after.unwrap_or(Duration::from_secs(1))
                }
                Ok(Outcome::ServerError { status }) => {
                    last = format!("HTTP {status}");
                    backoff
                }
                Err(transport) => {
                    last = self.url.scrub(&transport);
                    backoff
                }
            };
            if attempt == self.policy.max_attempts {
                break;
            }
            if wait > self.policy.max_wait {
                last.push_str(&format!(
                    " (asked to wait {}s, more than the {}s allowed)",
                    wait.as_secs(),
                    self.policy.max_wait.as_secs()
                ));
                return Err(PostError::GaveUp { attempts: attempt, last });
            }
            tracing::warn!(attempt, wait_ms = wait.as_millis() as u64, reason = %last, "Slack post failed; retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.policy.max_wait);
        }
        Err(PostError::GaveUp { attempts: self.policy.max_attempts, last })
    }

    async fn attempt(&self, body: Bytes) -> Result<Outcome, String> {
        let request = Request::post(self.url.0.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "ami-warden-slack-notifier")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response =
            tokio::time::timeout(self.policy.attempt_timeout, self.client.request(request))
                .await
                .map_err(|_| {
                    format!("no response within {}s", self.policy.attempt_timeout.as_secs())
                })?
                .map_err(|e| error_chain(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body =
            tokio::time::timeout(self.policy.attempt_timeout, response.into_body().collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|b| {
                    String::from_utf8_lossy(&b.to_bytes()).chars().take(300).collect::<String>()
                })
                .unwrap_or_default();
        Ok(match status {
            s if s.is_success() => Outcome::Ok,
            StatusCode::TOO_MANY_REQUESTS => Outcome::RateLimited { retry_after },
            s if s.is_server_error() => Outcome::ServerError { status: s.as_u16() },
            s => Outcome::Rejected { status: s.as_u16(), body },
        })
    }
}

enum Outcome {
    Ok,
    RateLimited { retry_after: Option<Duration> },
    ServerError { status: u16 },
    Rejected { status: u16, body: String },
}

/// An error with its whole source chain (the AWS SDK and hyper keep the cause in `source`).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";

    #[test]
    fn the_url_is_read_from_a_bare_or_json_secret() {
        assert!(WebhookUrl::from_secret(URL).is_ok());
        assert!(WebhookUrl::from_secret(&format!("{{\"webhook_url\": \"{URL}\"}}")).is_ok());
        assert!(WebhookUrl::from_secret(&format!("{{\"url\": \"{URL}\"}}")).is_ok());
        assert_eq!(WebhookUrl::from_secret("{\"token\": 1}").unwrap_err(), UrlError::Missing);
        assert_eq!(WebhookUrl::from_secret("  ").unwrap_err(), UrlError::Missing);
    }

    #[test]
    fn plain_http_is_refused_except_on_loopback() {
        assert_eq!(
            WebhookUrl::from_secret("http://hooks.slack.com/services/x").unwrap_err(),
            UrlError::NotHttps
        );
        assert!(WebhookUrl::from_secret("http://127.0.0.1:9999/services/x").is_ok());
        assert_eq!(WebhookUrl::from_secret("ftp://example.com/x").unwrap_err(), UrlError::Invalid);
    }

    #[test]
    fn the_url_never_shows_in_debug_output_or_scrubbed_text() {
        let url = WebhookUrl::from_secret(URL).unwrap();
        assert!(!format!("{url:?}").contains("XXXXSECRET"));
        let text = format!("error sending to {URL}: refused; path /services/T000/B000/XXXXSECRET");
        let scrubbed = url.scrub(&text);
        assert!(!scrubbed.contains("XXXXSECRET"), "{scrubbed}");
        // Error texts about a bad secret never echo it.
        for bad in ["http://hooks.slack.com/services/T000/B000/XXXXSECRET", "not a url XXXXSECRET"]
        {
            let err = WebhookUrl::from_secret(bad).unwrap_err().to_string();
            assert!(!err.contains("XXXXSECRET"), "{err}");
        }
    }
}
