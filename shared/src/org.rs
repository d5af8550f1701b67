//! Organization mode, the domain side: which accounts a scheduled run could not cover, the
//! notification that says so, and the loop that runs a sweep in each account. Reaching members
//! is [`crate::aws::org`]'s job.

use std::fmt::Display;

use serde::Serialize;
use serde_json::{json, Value};

use crate::ids::AccountId;
use crate::notify::{Notification, Notifier, NotifyError, Severity};

/// A member account a run could not act in, and why (typically: its role is missing).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SkippedMember {
    pub account: AccountId,
    pub reason: String,
}

/// An account a run reached but whose sweep failed (`None`: the own account, id unknown).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailedAccount {
    pub account: Option<AccountId>,
    pub error: String,
}

/// One WARNING for the accounts `run` did not cover, those it could not reach and those whose
/// sweep failed, or `None` when it covered them all.
pub fn coverage_notification(
    run: &str,
    skipped: &[SkippedMember],
    failed: &[FailedAccount],
) -> Option<Notification> {
    if skipped.is_empty() && failed.is_empty() {
        return None;
    }
    let mut n = Notification::new(
        Severity::Warning,
        "accounts-not-covered",
        format!("{run}: {} account(s) not covered", skipped.len() + failed.len()),
    );
    let mut text = String::new();
    if !skipped.is_empty() {
        text.push_str(&format!(
            "The {run} could not act in these member accounts:\n{}\n\nCheck that each has the member role of infra/organization.yaml and that MEMBER_ROLE_NAME matches it.\n",
            skipped.iter().map(|s| format!("- {}: {}", s.account, s.reason)).collect::<Vec<_>>().join("\n")
        ));
    }
    if !failed.is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!(
            "The {run} failed in these accounts (anything it did there before failing is in the audit trail); the other accounts were swept, and the run fails so that Lambda runs it again:\n{}\n",
            failed
                .iter()
                .map(|f| format!("- {}: {}", f.account.as_ref().map_or_else(|| "the own account".to_owned(), ToString::to_string), f.error))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    n.text = text;
    n.details = json!({ "skipped": skipped, "failed": failed });
    Some(n)
}

/// Runs `run` in each reachable account (its id and whatever acts there), then publishes one
/// WARNING for the accounts not covered (`skipped`, and those whose run failed).
///
/// One account's failure does not stop the others: a member whose sweep keeps failing would
/// otherwise leave every account after it unswept, day after day. But a failure is not
/// swallowed either (it may be an alert that could not be published): once every account had
/// its turn, the first error is returned, so that Lambda runs the sweep again. The WARNING
/// names the failed accounts only when some other account was swept (when all failed, the
/// failed run says it). The response, when none failed, is `{"outcome": "swept",
/// "accounts": [...], "skipped_accounts": [...], "failed_accounts": []}`.
pub async fn sweep_accounts<C, E: From<NotifyError> + Display>(
    reachable: &[(Option<AccountId>, C)],
    skipped: &[SkippedMember],
    what: &str,
    notifier: Option<&impl Notifier>,
    mut run: impl AsyncFnMut(&Option<AccountId>, &C) -> Result<Value, E>,
) -> Result<Value, E> {
    let mut swept = Vec::new();
    let mut failed = Vec::new();
    let mut first_error = None;
    for (account, in_account) in reachable {
        match run(account, in_account).await {
            Ok(entry) => swept.push(entry),
            Err(e) => {
                tracing::error!(account = ?account, error = %e, run = what, metric = "sweep_account_failures", "sweep failed in this account; the other accounts go on, then the run fails for a retry");
                failed.push(FailedAccount { account: account.clone(), error: e.to_string() });
                first_error.get_or_insert(e);
            }
        }
    }
    let all_failed = swept.is_empty() && !failed.is_empty();
    let uncovered = if all_failed { &[][..] } else { &failed[..] };
    if let (Some(notifier), Some(warning)) =
        (notifier, coverage_notification(what, skipped, uncovered))
    {
        notifier.publish(&warning).await?;
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(
        json!({"outcome": "swept", "accounts": swept, "skipped_accounts": skipped, "failed_accounts": failed}),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Sent(Mutex<Vec<Notification>>);

    impl Notifier for Sent {
        async fn publish(&self, notification: &Notification) -> Result<String, NotifyError> {
            self.0.lock().unwrap().push(notification.clone());
            Ok("id".into())
        }
    }

    #[derive(Debug)]
    struct Failed(String);

    impl Display for Failed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl From<NotifyError> for Failed {
        fn from(e: NotifyError) -> Self {
            Failed(e.to_string())
        }
    }

    fn account(id: &str) -> Option<AccountId> {
        AccountId::parse(id)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn covered_accounts_make_no_warning() {
        assert!(coverage_notification("exposure sweep", &[], &[]).is_none());
        let skipped = [SkippedMember {
            account: AccountId::parse("222233334444").unwrap(),
            reason: "AccessDenied".into(),
        }];
        let n = coverage_notification("exposure sweep", &skipped, &[]).unwrap();
        assert_eq!((n.severity, n.kind.as_str()), (Severity::Warning, "accounts-not-covered"));
        assert!(n.text.contains("222233334444: AccessDenied"), "{}", n.text);
        assert!(!n.text.contains("failed"), "{}", n.text);
    }

    #[test]
    fn a_failing_member_does_not_stop_the_members_after_it_and_the_run_fails_for_a_retry() {
        let reachable = [
            (account("111122223333"), 1),
            (account("222233334444"), 2),
            (account("333344445555"), 3),
        ];
        let skipped = [SkippedMember {
            account: AccountId::parse("444455556666").unwrap(),
            reason: "AccessDenied".into(),
        }];
        let sent = Sent::default();
        let mut ran = Vec::new();
        let result = block_on(sweep_accounts(
            &reachable,
            &skipped,
            "deprecation sweep",
            Some(&sent),
            async |_: &Option<AccountId>, n: &i32| {
                ran.push(*n);
                if *n == 2 {
                    Err(Failed("DescribeImages: UnauthorizedOperation".into()))
                } else {
                    Ok(json!(n))
                }
            },
        ));
        assert_eq!(ran, vec![1, 2, 3], "every account had its turn");
        assert_eq!(
            result.unwrap_err().0,
            "DescribeImages: UnauthorizedOperation",
            "then the run fails, for Lambda to run it again"
        );
        let sent = sent.0.into_inner().unwrap();
        assert_eq!(sent.len(), 1, "one warning for both kinds");
        assert!(sent[0].text.contains("444455556666: AccessDenied"), "{}", sent[0].text);
        assert!(
            sent[0].text.contains("222233334444: DescribeImages: UnauthorizedOperation"),
            "{}",
            sent[0].text
        );
        assert_eq!(sent[0].subject, "deprecation sweep: 2 account(s) not covered");
    }

    #[test]
    fn covered_accounts_answer_with_their_entries() {
        let reachable = [(None, 1), (account("222233334444"), 2)];
        let sent = Sent::default();
        let body = block_on(sweep_accounts(
            &reachable,
            &[],
            "exposure sweep",
            Some(&sent),
            async |_: &Option<AccountId>, n: &i32| Ok::<_, Failed>(json!(n)),
        ))
        .unwrap();
        assert_eq!(
            body,
            json!({"outcome": "swept", "accounts": [1, 2], "skipped_accounts": [], "failed_accounts": []})
        );
        assert!(sent.0.into_inner().unwrap().is_empty());
    }

    #[test]
    fn when_every_account_fails_the_run_fails() {
        let reachable = [(None, 1), (account("222233334444"), 2)];
        let sent = Sent::default();
        let result = block_on(sweep_accounts(
            &reachable,
            &[],
            "snapshot reaper sweep",
            Some(&sent),
            async |_: &Option<AccountId>, n: &i32| {
                Err::<Value, _>(Failed(format!("throttled in {n}")))
            },
        ));
        assert_eq!(
            result.unwrap_err().0,
            "throttled in 1",
            "the first error, for Lambda to retry the run"
        );
        assert!(
            sent.0.into_inner().unwrap().is_empty(),
            "the run is retried as a whole: no warning about it"
        );
    }
}
