//! What the report commands share: the regions to work on, and aligned plain-text tables.

use anyhow::{anyhow, Result};
use warden::aws::Clients;
use warden::ids::{AccountId, Region};

/// The regions given (`--region a,b`), else the SDK's configured region.
pub fn regions(clients: &Clients, given: &[String]) -> Result<Vec<Region>> {
    if given.is_empty() {
        return Ok(vec![clients.home_region().ok_or_else(|| anyhow!("no region: pass --region or set AWS_REGION"))?]);
    }
    given.iter().map(|r| Region::parse(r).ok_or_else(|| anyhow!("{r:?} is not a region name"))).collect()
}

/// clap's parser for an account id argument.
pub fn parse_account(raw: &str) -> Result<AccountId, String> {
    AccountId::parse(raw).ok_or_else(|| format!("{raw:?} is not a 12-digit account id"))
}

/// Rows as columns padded to their widest cell, two spaces apart, trailing blanks trimmed.
pub fn aligned<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().enumerate().map(|(c, v)| format!("{v:w$}", w = widths[c])).collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}
