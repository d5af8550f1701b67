//! Which of several local stacks a request goes to, when the proxy of [`crate::faults`] spreads
//! the accounts of a benchmark across several moto servers (shards). One moto is one Python
//! process that serves one request at a time; several of them, each holding whole accounts,
//! serve as many requests at once as the machine has cores. On AWS, too, each account is
//! served and throttled on its own.
//!
//! Each account's state lives wholly in one shard, so a request must reach the shard of the
//! account moto would act in for it. moto picks that account from the `x-moto-account-id`
//! header first, then from the access key (the account an STS `AssumeRole` handed it out in),
//! then falls back to its default account. The routing follows the same order:
//!
//! - STS `AssumeRole` goes to the shard of its `RoleArn`'s account, where moto creates the
//!   temporary key (and where the seed created the role). The key is remembered from the answer.
//! - A request with `x-moto-account-id` goes to that account's shard.
//! - A request signed with a remembered key goes to its account's shard, and gets the
//!   `x-moto-account-id` header too: that shard's moto knows the key, but the header makes the
//!   account plain whatever else the request carries.
//! - Anything else (the default credentials, unsigned requests) goes to shard 0, where the own
//!   account's tables and topics live.
//!
//! This is plain data and no I/O: the proxy reads each request into a [`Call`] and asks
//! [`Shards::route`]. With one shard every request goes to it untouched.

use std::collections::HashMap;

use crate::aws_model::{account_of_arn, between, Call, DEFAULT_ACCOUNT};

/// Where one request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The index of the shard (upstream) to forward it to.
    pub shard: usize,
    /// The account to add as `x-moto-account-id`, when the request does not say it itself.
    pub act_as: Option<String>,
}

/// The routing state: how many shards, and the account of every access key `AssumeRole`
/// handed out.
#[derive(Clone, Debug)]
pub struct Shards {
    count: usize,
    assumed: HashMap<String, String>,
}

impl Shards {
    /// Routing across `count` shards (at least one).
    pub fn new(count: usize) -> Self {
        Self { count: count.max(1), assumed: HashMap::new() }
    }

    /// Where `call` goes. A single shard gets every request as it came.
    pub fn route(&self, call: &Call) -> Route {
        let untouched = |account: &str| Route { shard: self.shard_of(account), act_as: None };
        if self.count == 1 {
            return untouched(DEFAULT_ACCOUNT);
        }
        // Before the header: moto creates the key in the role's account whoever asks.
        if let Some(account) = assume_role_account(call) {
            return untouched(account);
        }
        if let Some(account) = &call.account_header {
            return untouched(account);
        }
        let assumed = call.access_key.as_ref().and_then(|key| self.assumed.get(key));
        match assumed {
            Some(account) => Route { shard: self.shard_of(account), act_as: Some(account.clone()) },
            None => untouched(DEFAULT_ACCOUNT),
        }
    }

    /// Remembers the account of the key an `AssumeRole` call (`call`) was answered with
    /// (`response_body`, STS's XML). Other calls and answers without a key are ignored.
    pub fn learn_assumed_role(&mut self, call: &Call, response_body: &str) {
        if self.count == 1 {
            return;
        }
        let key = between(response_body, "<AccessKeyId>", "</AccessKeyId>");
        if let (Some(account), Some(key)) = (assume_role_account(call), key) {
            self.assumed.insert(key.trim().to_owned(), account.to_owned());
        }
    }

    /// The shard that holds `account`: 0 for the own (default) account and anything that is not
    /// an account id; otherwise the id's number modulo the count, which spreads consecutive
    /// ids (the benchmarks' members) evenly. From three shards on, the members are spread over
    /// the others only: the own account's shard also serves every unit's DynamoDB requests (the
    /// tables live there), which with two shards made it the busier by far.
    pub fn shard_of(&self, account: &str) -> usize {
        if account == DEFAULT_ACCOUNT {
            return 0;
        }
        let Some(n) = account_number(account) else { return 0 };
        match self.count {
            1 | 2 => (n % self.count as u64) as usize,
            _ => 1 + (n % (self.count as u64 - 1)) as usize,
        }
    }
}

/// The account of the role an STS `AssumeRole` call asks for; `None` for every other call.
fn assume_role_account(call: &Call) -> Option<&str> {
    let assume =
        call.service.as_deref() == Some("sts") && call.param("Action") == Some("AssumeRole");
    account_of_arn(call.param("RoleArn").filter(|_| assume)?)
}

/// A 12-digit account id as a number.
fn account_number(account: &str) -> Option<u64> {
    let digits = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| account.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMBER: &str = "400001000001";
    const KEY: &str = "ASIAEXAMPLEKEY000001";

    fn call(
        service: &str,
        access_key: &str,
        header: Option<&str>,
        params: &[(&str, &str)],
    ) -> Call {
        Call {
            service: Some(service.to_owned()),
            region: Some("us-east-1".to_owned()),
            access_key: Some(access_key.to_owned()),
            account_header: header.map(str::to_owned),
            params: params.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        }
    }

    fn assume_role(account: &str) -> Call {
        let arn = format!("arn:aws:iam::{account}:role/AmiWardenMember");
        call("sts", "testing", None, &[("Action", "AssumeRole"), ("RoleArn", &arn)])
    }

    fn answer_with_key(key: &str) -> String {
        format!(
            "<AssumeRoleResponse><AssumeRoleResult><Credentials>\
             <AccessKeyId>{key}</AccessKeyId><SecretAccessKey>s</SecretAccessKey>\
             </Credentials></AssumeRoleResult></AssumeRoleResponse>"
        )
    }

    fn to(shard: usize) -> Route {
        Route { shard, act_as: None }
    }

    #[test]
    fn the_own_account_and_unidentified_requests_go_to_shard_zero() {
        let shards = Shards::new(3);
        assert_eq!(shards.route(&call("dynamodb", "testing", None, &[])), to(0));
        assert_eq!(shards.route(&call("ec2", "AKIAUNKNOWN", None, &[])), to(0));
        let own = call("ec2", "testing", Some(DEFAULT_ACCOUNT), &[]);
        assert_eq!(shards.route(&own), to(0));
        assert_eq!(shards.route(&Call::default()), to(0));
    }

    #[test]
    fn a_request_naming_its_account_goes_to_that_accounts_shard() {
        let shards = Shards::new(2);
        let iam = call("iam", "testing", Some("400001000001"), &[("Action", "CreateRole")]);
        assert_eq!(shards.route(&iam), to(1));
        let ec2 = call("ec2", "testing", Some("400001000002"), &[("Action", "RegisterImage")]);
        assert_eq!(shards.route(&ec2), to(0));
    }

    #[test]
    fn assume_role_goes_to_the_roles_account_even_when_the_caller_names_another() {
        let shards = Shards::new(2);
        assert_eq!(shards.route(&assume_role(MEMBER)), to(1));
        let mut from_elsewhere = assume_role(MEMBER);
        from_elsewhere.account_header = Some("400001000002".to_owned());
        assert_eq!(shards.route(&from_elsewhere), to(1));
    }

    #[test]
    fn a_key_assume_role_handed_out_goes_to_its_account_and_names_it() {
        let mut shards = Shards::new(2);
        let before = call("ec2", KEY, None, &[("Action", "DescribeImages")]);
        assert_eq!(shards.route(&before), to(0));
        shards.learn_assumed_role(&assume_role(MEMBER), &answer_with_key(KEY));
        assert_eq!(shards.route(&before), Route { shard: 1, act_as: Some(MEMBER.to_owned()) });
        let sts = call("sts", KEY, None, &[("Action", "GetCallerIdentity")]);
        assert_eq!(shards.route(&sts).act_as.as_deref(), Some(MEMBER));
    }

    #[test]
    fn only_assume_role_answers_teach_a_key() {
        let mut shards = Shards::new(2);
        let other = call("sts", "testing", None, &[("Action", "GetSessionToken")]);
        shards.learn_assumed_role(&other, &answer_with_key(KEY));
        shards.learn_assumed_role(&assume_role(MEMBER), "<ErrorResponse/>");
        assert_eq!(shards.route(&call("ec2", KEY, None, &[])), to(0));
    }

    #[test]
    fn one_shard_gets_every_request_untouched() {
        let mut shards = Shards::new(1);
        shards.learn_assumed_role(&assume_role(MEMBER), &answer_with_key(KEY));
        assert_eq!(shards.route(&call("ec2", KEY, None, &[])), to(0));
        assert_eq!(shards.route(&assume_role(MEMBER)), to(0));
        assert_eq!(Shards::new(0).route(&call("ec2", "testing", Some(MEMBER), &[])), to(0));
    }

    #[test]
    fn consecutive_member_accounts_spread_evenly() {
        // With two shards the members share both; from three on, they leave the own account's
        // shard (and its tables) alone.
        let member = |n: u32| format!("4{:05}{n:06}", 42);
        let shards = Shards::new(2);
        let mut per_shard = [0; 2];
        for n in 1..=30 {
            per_shard[shards.shard_of(&member(n))] += 1;
        }
        assert_eq!(per_shard, [15, 15]);
        let shards = Shards::new(3);
        let mut per_shard = [0; 3];
        for n in 1..=30 {
            per_shard[shards.shard_of(&member(n))] += 1;
        }
        assert_eq!(per_shard, [0, 15, 15]);
        assert_eq!(shards.shard_of(DEFAULT_ACCOUNT), 0);
        assert_eq!(shards.shard_of("not-an-account"), 0);
    }
}
