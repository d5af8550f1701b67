//! Organization mode: the central deployment acts in member accounts through a role each
//! member grants it (`infra/organization.yaml` creates it). A member whose role cannot be
//! assumed is reported and skipped; it never stops the others.

use super::Clients;
use crate::config::Members;
use crate::ids::{AccountId, Region};
pub use crate::org::SkippedMember;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;

/// The accounts to act in, each with clients acting there: the own account first (with the
/// given clients), then every member whose role could be assumed.
pub struct Accounts {
    pub reachable: Vec<(Option<AccountId>, Clients)>,
    pub skipped: Vec<SkippedMember>,
}

/// The ACTIVE accounts of the organization (Organizations ListAccounts, all pages).
pub async fn organization_accounts(clients: &Clients) -> Result<Vec<AccountId>, String> {
    let client = aws_sdk_organizations::Client::from_conf(
        aws_sdk_organizations::config::Builder::from(clients.sdk_config())
            .interceptor(clients.calls().clone())
            .build(),
    );
    let mut pages = client.list_accounts().into_paginator().send();
    let mut accounts = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page
            .map_err(|e| format!("Organizations ListAccounts failed: {}", super::describe(&e)))?;
        for account in page.accounts() {
            let active = account.state().is_none_or(|s| s.as_str() == "ACTIVE");
            if let (true, Some(id)) = (active, account.id().and_then(AccountId::parse)) {
                accounts.push(id);
            }
        }
    }
    accounts.sort();
    Ok(accounts)
}

/// The accounts an organization sweep plans units for: the own account first, then the members
/// (`MEMBER_ACCOUNTS`' list, or every active account of the organization), each once. Whether a
/// member's role can be assumed is left to its units, which fail by name when it cannot.
pub async fn accounts_to_sweep(
    clients: &Clients,
    own: &AccountId,
    members: &Members,
) -> Result<Vec<AccountId>, String> {
    let listed = match members {
        Members::None => Vec::new(),
        Members::Accounts(list) => list.clone(),
        Members::Organization => organization_accounts(clients).await?,
    };
    let mut accounts = vec![own.clone()];
    for account in listed {
        if !accounts.contains(&account) {
            accounts.push(account);
        }
    }
    Ok(accounts)
}

/// An STS client over the clients' configuration, counted with their requests.
fn sts(clients: &Clients) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(clients.sdk_config())
            .interceptor(clients.calls().clone())
            .build(),
    )
}

/// The account the clients' credentials act in (STS GetCallerIdentity).
pub async fn caller_account(clients: &Clients) -> Result<AccountId, String> {
    let sts = sts(clients);
    let out = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| format!("STS GetCallerIdentity failed: {}", super::describe(&e)))?;
    out.account()
        .and_then(AccountId::parse)
        .ok_or_else(|| "STS GetCallerIdentity returned no account".to_owned())
}

/// Who the clients' credentials are (STS GetCallerIdentity's ARN): recorded as the author of
/// what a person does through the CLI (a quarantine, its release).
pub async fn caller_arn(clients: &Clients) -> Result<String, String> {
    let out = sts(clients)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| format!("STS GetCallerIdentity failed: {}", super::describe(&e)))?;
    out.arn().map(str::to_owned).ok_or_else(|| "STS GetCallerIdentity returned no ARN".to_owned())
}

/// Clients acting in `account` through its role `role_name` (STS AssumeRole, one hour).
pub async fn assume(
    clients: &Clients,
    account: &AccountId,
    role_name: &str,
) -> Result<Clients, String> {
    let sts = sts(clients);
    let partition = clients.home_region().map_or("aws", |region| region.partition());
    let arn = format!("arn:{partition}:iam::{account}:role/{role_name}");
    let out = sts
        .assume_role()
        .role_arn(&arn)
        .role_session_name("ami-warden")
        .send()
        .await
        .map_err(|e| format!("cannot assume {arn}: {}", super::describe(&e)))?;
    let c = out.credentials().ok_or_else(|| format!("AssumeRole {arn} returned no credentials"))?;
    let expiry = std::time::SystemTime::try_from(*c.expiration()).ok();
    let credentials = Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        expiry,
        "ami-warden-member",
    );
    let sdk = clients
        .sdk_config()
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build();
    Ok(clients.with_sdk_config(&sdk))
}

/// The own account (with `clients`) and the members of `members`, each reached through
/// `role_name`. The own account is not assumed into, even when it is listed as a member.
pub async fn accounts(
    clients: &Clients,
    own: Option<&AccountId>,
    members: &Members,
    role_name: &str,
) -> Accounts {
    let mut result =
        Accounts { reachable: vec![(own.cloned(), clients.clone())], skipped: Vec::new() };
    let listed = match members {
        Members::None => return result,
        Members::Accounts(list) => list.clone(),
        Members::Organization => match organization_accounts(clients).await {
            Ok(list) => list,
            Err(reason) => {
                tracing::warn!(
                    reason,
                    "the organization's accounts could not be listed; own account only"
                );
                result.skipped.push(SkippedMember {
                    account: own
                        .cloned()
                        .unwrap_or_else(|| AccountId::parse("000000000000").expect("valid")),
                    reason,
                });
                return result;
            }
        },
    };
    for account in listed.iter().filter(|a| Some(*a) != own) {
        match assume(clients, account, role_name).await {
            Ok(member) => result.reachable.push((Some(account.clone()), member)),
            Err(reason) => {
                tracing::warn!(account = %account, reason, "member account skipped");
                result.skipped.push(SkippedMember { account: account.clone(), reason });
            }
        }
    }
    result
}

/// Clients for member accounts, assumed on first use and reused for 45 minutes (the
/// credentials last an hour). For handlers that meet a member's event and must look something
/// up in that account.
pub struct MemberClients {
    base: Clients,
    members: Members,
    role_name: String,
    cache: tokio::sync::Mutex<std::collections::HashMap<AccountId, (Clients, std::time::Instant)>>,
}

const REUSE_FOR: std::time::Duration = std::time::Duration::from_secs(45 * 60);

impl MemberClients {
    /// `None` outside organization mode.
    pub fn new(base: &Clients, members: &Members, role_name: &str) -> Option<Self> {
        (members != &Members::None).then(|| Self {
            base: base.clone(),
            members: members.clone(),
            role_name: role_name.to_owned(),
            cache: Default::default(),
        })
    }

    /// Whether `account` is one of the configured members (any account, for the whole
    /// organization: only the organization's accounts can put events on the central bus).
    pub fn covers(&self, account: &AccountId) -> bool {
        match &self.members {
            Members::Accounts(list) => list.contains(account),
            Members::Organization => true,
            Members::None => false,
        }
    }

    /// Clients acting in `account`: an error when it is not a configured member or its role
    /// cannot be assumed.
    pub async fn for_account(&self, account: &AccountId) -> Result<Clients, String> {
        if !self.covers(account) {
            return Err(format!("account {account} is not in MEMBER_ACCOUNTS"));
        }
        if let Some((clients, at)) = self.cache.lock().await.get(account) {
            if at.elapsed() < REUSE_FOR {
                return Ok(clients.clone());
            }
        }
        // Assumed without the lock held, so that units in other accounts do not wait on it.
        let clients = assume(&self.base, account, &self.role_name).await?;
        self.cache
            .lock()
            .await
            .insert(account.clone(), (clients.clone(), std::time::Instant::now()));
        Ok(clients)
    }
}

/// Which account an event is handled in (see [`member_of_event`]).
pub enum EventAccount<T> {
    /// This one: the event is the own account's, names no account, or this is not
    /// organization mode.
    Own,
    /// A member account, with `T` over clients acting there.
    Member(AccountId, T),
    /// Another account that is not a configured member (`MEMBER_ACCOUNTS` lists others): the
    /// event is not this deployment's to handle. The reason, to report it ignored.
    NotCovered(String),
}

/// Organization mode: the member account an event happened in (member accounts forward their
/// events to the central bus) and `adapter` over clients acting there, so that a handler acts
/// on the event in that account, as it would if deployed there. `Err`: the member's role cannot
/// be assumed; the event then fails, to be retried and finally kept in the dead-letter queue,
/// never judged with credentials that cannot see the member's resources.
pub async fn member_of_event<T>(
    members: Option<&MemberClients>,
    parsed: &crate::event::Parsed,
    own: Option<&AccountId>,
    adapter: impl FnOnce(&Clients) -> T,
) -> Result<EventAccount<T>, String> {
    let (Some(members), crate::event::Parsed::Event(event)) = (members, parsed) else {
        return Ok(EventAccount::Own);
    };
    let Some(account) = event.meta.account.as_ref().filter(|account| Some(*account) != own) else {
        return Ok(EventAccount::Own);
    };
    if !members.covers(account) {
        return Ok(EventAccount::NotCovered(format!(
            "{} in account {account}, which is not in MEMBER_ACCOUNTS",
            event.meta.event_name
        )));
    }
    match members.for_account(account).await {
        Ok(clients) => Ok(EventAccount::Member(account.clone(), adapter(&clients))),
        Err(reason) => {
            let reason =
                format!("event {} from member account {account}: {reason}", event.meta.event_id);
            tracing::error!(reason, "member account not reachable; the event will be retried");
            Err(reason)
        }
    }
}

impl crate::impact::OtherAccounts for MemberClients {
    type Ec2 = super::deprecation::Ec2Deprecation;

    async fn ec2_in(&self, account: &AccountId) -> Result<Self::Ec2, String> {
        self.for_account(account)
            .await
            .map(|clients| super::deprecation::Ec2Deprecation::new(&clients))
    }
}

/// A scheduled sweep over the own account and every reachable member, in each of the regions
/// to sweep (`SWEEP_REGIONS`, else the function's own): `run` once per account and region (in
/// that account, with its clients; it returns that entry of the response), then one WARNING
/// naming the accounts not covered. See [`crate::org::sweep_accounts`]: a failure in one does
/// not stop the others, and fails the run once they all had their turn.
pub async fn sweep_each_account<
    E: From<crate::notify::NotifyError> + std::fmt::Display + From<String>,
>(
    clients: &Clients,
    own: Option<&AccountId>,
    config: &crate::config::Config,
    what: &str,
    notifier: Option<&impl crate::notify::Notifier>,
    mut run: impl AsyncFnMut(&Option<AccountId>, &Clients, &Region) -> Result<serde_json::Value, E>,
) -> Result<serde_json::Value, E> {
    let regions = config.regions_to_sweep(clients.home_region().as_ref()).map_err(E::from)?;
    let accounts = accounts(clients, own, &config.members, &config.member_role_name).await;
    let in_each_region: Vec<(Option<AccountId>, (Clients, Region))> = accounts
        .reachable
        .iter()
        .flat_map(|(account, clients)| {
            regions.iter().map(move |region| (account.clone(), (clients.clone(), region.clone())))
        })
        .collect();
    crate::org::sweep_accounts(
        &in_each_region,
        &accounts.skipped,
        what,
        notifier,
        async |account: &Option<AccountId>, (clients, region): &(Clients, Region)| {
            // The failed accounts' entries say in which region the sweep failed.
            run(account, clients, region).await.map_err(|e| E::from(format!("in {region}: {e}")))
        },
    )
    .await
}
