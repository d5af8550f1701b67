//! What the report commands share: the regions to work on, the settings they act with, and
//! aligned plain-text tables.

use anyhow::{anyhow, Result};
use warden::aws::Clients;
use warden::config::Config;
use warden::ids::{AccountId, Region};

/// The regions given (`--region a,b`), else the SDK's configured region.
pub fn regions(clients: &Clients, given: &[String]) -> Result<Vec<Region>> {
    if given.is_empty() {
        return Ok(vec![clients
            .home_region()
            .ok_or_else(|| anyhow!("no region: pass --region or set AWS_REGION"))?]);
    }
    given
        .iter()
        .map(|r| Region::parse(r).ok_or_else(|| anyhow!("{r:?} is not a region name")))
        .collect()
}

/// The account the command acts for: `--account` (or AWS_ACCOUNT_ID) when given, else the
/// account of the credentials (STS GetCallerIdentity), as a Lambda knows its own from its ARN.
/// Said on stderr, since only that account's images and snapshots are ever changed.
pub async fn own_account(clients: &Clients, given: Option<AccountId>) -> Result<AccountId> {
    let (account, source) = match given {
        Some(account) => (account, "--account"),
        None => {
            let account = warden::aws::org::caller_account(clients).await.map_err(|e| {
                anyhow!("cannot tell which account this acts for ({e}); pass --account")
            })?;
            (account, "STS GetCallerIdentity")
        }
    };
    eprintln!("ami-warden: acting for account {account} (from {source})");
    Ok(account)
}

/// clap's parser for an account id argument.
pub fn parse_account(raw: &str) -> Result<AccountId, String> {
    AccountId::parse(raw).ok_or_else(|| format!("{raw:?} is not a 12-digit account id"))
}

/// Rows as columns padded to their widest cell, two spaces apart, trailing blanks trimmed.
pub fn aligned<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> =
        (0..N).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> =
            row.iter().enumerate().map(|(c, v)| format!("{v:w$}", w = widths[c])).collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// The settings a command acts with: the environment's, but changing nothing — report mode, no
/// remediation — unless `--enforce` was given. `MODE` and `REMEDIATE_*` are the Lambdas'
/// settings: a shell that exported them does not make the CLI deregister or delete.
pub fn acting(config: Config, enforce: bool) -> Config {
    if enforce {
        return Config { mode: warden::config::Mode::Enforce, ..config };
    }
    if config.mode == warden::config::Mode::Enforce || config.remediate_public {
        eprintln!("MODE=enforce and REMEDIATE_PUBLIC are the Lambdas' settings: this command changes nothing without --enforce");
    }
    config.report_only()
}

#[cfg(test)]
mod tests {
    use warden::config::{Config, Mode};

    use super::acting;

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::from_lookup(|name| {
            vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        })
        .unwrap()
    }

    #[test]
    fn the_cli_acts_only_with_enforce_whatever_the_environment_says() {
        let exported = config(&[
            ("MODE", "enforce"),
            ("REMEDIATE_PUBLIC", "true"),
            ("REMEDIATE_SHARES", "true"),
            ("KEEP_LATEST", "5"),
        ]);
        let reporting = acting(exported.clone(), false);
        assert_eq!(
            (
                reporting.mode,
                reporting.remediate_public,
                reporting.remediate_shares,
                reporting.keep_latest
            ),
            (Mode::Report, false, false, 5)
        );
        assert_eq!(acting(exported.clone(), true), exported);
        let enforcing = acting(config(&[]), true);
        assert_eq!(
            (enforcing.mode, enforcing.remediate_public),
            (Mode::Enforce, false),
            "--enforce does not turn remediation on"
        );
    }
}
