//! Which account a handler acts in, and with what: the own account's adapter and settings, or
//! a member account's (organization mode), reached through its role, with the members'
//! settings (report only unless `MEMBER_ENFORCE`). Written once for the four functions.

use std::ops::Deref;

use crate::aws::org::{member_of_event, EventAccount, MemberClients};
use crate::aws::Clients;
use crate::config::Config;
use crate::event::Parsed;
use crate::ids::AccountId;

/// A function's way into accounts: its adapter `T` over the own account's clients, the
/// settings `S` it acts with there and in members, and the member accounts' clients.
pub struct Reach<T, S> {
    own: T,
    settings: S,
    member_settings: S,
    members: Option<MemberClients>,
    adapter: fn(&Clients) -> T,
}

/// An adapter a handler uses: the own account's, borrowed, or one built over a member's clients.
pub enum Held<'a, T> {
    Own(&'a T),
    Member(T),
}

impl<T> Deref for Held<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self {
            Held::Own(own) => own,
            Held::Member(member) => member,
        }
    }
}

/// One account to act in: its id, the adapter acting there and the settings that apply.
pub struct InAccount<'a, T, S> {
    pub account: Option<AccountId>,
    pub ec2: Held<'a, T>,
    pub settings: &'a S,
}

/// Where an event is handled: in an account, or not at all (it is another deployment's).
pub enum Scope<'a, T, S> {
    Act(InAccount<'a, T, S>),
    NotCovered(String),
}

impl<T, S> Reach<T, S> {
    /// `adapter` builds the function's adapter over any account's clients; `settings` reads
    /// its settings from a configuration (applied to `config` and to `config.in_members()`).
    pub fn new(
        clients: &Clients,
        config: &Config,
        adapter: fn(&Clients) -> T,
        settings: fn(&Config) -> S,
    ) -> Self {
        Self {
            own: adapter(clients),
            settings: settings(config),
            member_settings: settings(&config.in_members()),
            members: MemberClients::new(clients, &config.members, &config.member_role_name),
            adapter,
        }
    }

    /// The own account's settings.
    pub fn settings(&self) -> &S {
        &self.settings
    }

    /// The member accounts' clients (organization mode only).
    pub fn members(&self) -> Option<&MemberClients> {
        self.members.as_ref()
    }

    /// `account` of a sweep, with `clients` acting there: the own adapter and settings when it
    /// is the own account, else a member's.
    pub fn in_account(
        &self,
        account: &Option<AccountId>,
        own: &Option<AccountId>,
        clients: &Clients,
    ) -> InAccount<'_, T, S> {
        if account == own {
            return self.own(own);
        }
        InAccount {
            account: account.clone(),
            ec2: Held::Member((self.adapter)(clients)),
            settings: &self.member_settings,
        }
    }

    /// `account` of a sweep unit: the own account, or a member reached through its role.
    /// `Err` names why it cannot be reached (not organization mode, or the role).
    pub async fn for_unit(
        &self,
        account: &AccountId,
        own: &Option<AccountId>,
    ) -> Result<InAccount<'_, T, S>, String> {
        if Some(account) == own.as_ref() {
            return Ok(self.own(own));
        }
        let members = self.members.as_ref().ok_or_else(|| {
            format!("account {account} is not this deployment's and MEMBER_ACCOUNTS is not set")
        })?;
        let clients = members.for_account(account).await?;
        Ok(InAccount {
            account: Some(account.clone()),
            ec2: Held::Member((self.adapter)(&clients)),
            settings: &self.member_settings,
        })
    }

    /// The own account.
    pub fn own(&self, own: &Option<AccountId>) -> InAccount<'_, T, S> {
        InAccount { account: own.clone(), ec2: Held::Own(&self.own), settings: &self.settings }
    }

    /// The account `parsed` happened in: a member's event is handled in the member account,
    /// as it would be by a deployment there. `Err`: the member's role cannot be assumed; the
    /// event then fails, to be retried, and is never judged with credentials that cannot see
    /// the member's resources.
    pub async fn of_event(
        &self,
        parsed: &Parsed,
        own: &Option<AccountId>,
    ) -> Result<Scope<'_, T, S>, String> {
        let scope = match member_of_event(self.members.as_ref(), parsed, own.as_ref(), self.adapter)
            .await?
        {
            EventAccount::Own => Scope::Act(self.own(own)),
            EventAccount::Member(account, ec2) => Scope::Act(InAccount {
                account: Some(account),
                ec2: Held::Member(ec2),
                settings: &self.member_settings,
            }),
            EventAccount::NotCovered(reason) => Scope::NotCovered(reason),
        };
        Ok(scope)
    }
}
