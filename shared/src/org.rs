//! Organization mode, the domain side: which member accounts a run could not reach, and the
//! notification that says so. Reaching members is [`crate::aws::org`]'s job.

use serde::Serialize;

use crate::ids::AccountId;
use crate::notify::{Notification, Severity};

/// A member account a run could not act in, and why (typically: its role is missing).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SkippedMember {
    pub account: AccountId,
    pub reason: String,
}

/// One WARNING for the member accounts `run` skipped, or `None` when it reached them all.
pub fn skipped_notification(run: &str, skipped: &[SkippedMember]) -> Option<Notification> {
    if skipped.is_empty() {
        return None;
    }
    let mut n = Notification::new(
        Severity::Warning,
        "member-accounts-skipped",
        format!("{run}: {} member account(s) not reached", skipped.len()),
    );
    n.text = format!(
        "The {run} could not act in these member accounts, so they were not covered this time:\n{}\n\nCheck that each has the member role of infra/organization.yaml and that MEMBER_ROLE_NAME matches it.",
        skipped.iter().map(|s| format!("- {}: {}", s.account, s.reason)).collect::<Vec<_>>().join("\n")
    );
    n.details = serde_json::json!({ "skipped": skipped });
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_members_make_one_warning_and_none_make_none() {
        assert!(skipped_notification("exposure sweep", &[]).is_none());
        let skipped = [SkippedMember { account: AccountId::parse("222233334444").unwrap(), reason: "AccessDenied".into() }];
        let n = skipped_notification("exposure sweep", &skipped).unwrap();
        assert_eq!((n.severity, n.kind.as_str()), (Severity::Warning, "member-accounts-skipped"));
        assert!(n.text.contains("222233334444: AccessDenied"), "{}", n.text);
    }
}
