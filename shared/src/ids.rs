//! Identifier newtypes: `ImageId`, `SnapshotId`, `InstanceId`, `Region`, `AccountId`.
//!
//! They exist so that an image id can never be passed where a snapshot id or a region is
//! expected. Construction validates the shape loosely (prefix and allowed characters), enough
//! to reject garbage from malformed events, not to prove an id exists.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The impls every string newtype here shares: serde through `parse`, `as_str`, `Display`.
macro_rules! string_newtype {
    ($name:ident, $what:literal) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value).ok_or_else(|| format!("{value:?} is not {}", $what))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// Parses an id; `None` unless it is `<prefix><letters and digits>`.
            pub fn parse(raw: &str) -> Option<Self> {
                let raw = raw.trim();
                let rest = raw.strip_prefix($prefix)?;
                let ok = !rest.is_empty() && rest.len() <= 32 && rest.bytes().all(|b| b.is_ascii_alphanumeric());
                ok.then(|| Self(raw.to_owned()))
            }
        }

        string_newtype!($name, $what);
    };
}

prefixed_id!(
    /// An AMI id, `ami-0123456789abcdef0`.
    ImageId,
    "ami-",
    "an image id (ami-…)"
);
prefixed_id!(
    /// An EBS snapshot id, `snap-0123456789abcdef0`.
    SnapshotId,
    "snap-",
    "a snapshot id (snap-…)"
);
prefixed_id!(
    /// An EC2 instance id, `i-0123456789abcdef0`.
    InstanceId,
    "i-",
    "an instance id (i-…)"
);

/// An AWS region name such as `eu-west-1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

impl Region {
    /// Parses a region name: lower-case letters, digits and dashes, with at least one dash.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let ok = (4..=32).contains(&raw.len())
            && raw.contains('-')
            && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        ok.then(|| Self(raw.to_owned()))
    }

    /// The partition the region is in, for ARNs (`arn:<partition>:…`): `aws-cn` for China,
    /// `aws-us-gov` for GovCloud, `aws-eusc` for the European Sovereign Cloud, the isolated
    /// partitions by their prefixes, else `aws`.
    pub fn partition(&self) -> &'static str {
        const PREFIXES: [(&str, &str); 7] = [
            ("cn-", "aws-cn"),
            ("eusc-", "aws-eusc"),
            ("us-gov-", "aws-us-gov"),
            ("us-isob-", "aws-iso-b"),
            ("us-isof-", "aws-iso-f"),
            ("eu-isoe-", "aws-iso-e"),
            ("us-iso-", "aws-iso"),
        ];
        PREFIXES
            .iter()
            .find(|(prefix, _)| self.0.starts_with(prefix))
            .map_or("aws", |(_, partition)| partition)
    }
}

string_newtype!(Region, "a region name");

/// A 12-digit AWS account id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        (raw.len() == 12 && raw.bytes().all(|b| b.is_ascii_digit())).then(|| Self(raw.to_owned()))
    }
}

string_newtype!(AccountId, "a 12-digit account id");

impl AccountId {
    /// The account of a Lambda function ARN (`arn:aws:lambda:<region>:<account>:function:<name>`):
    /// the account a function acts in.
    pub fn of_function_arn(arn: &str) -> Option<Self> {
        arn.split(':').nth(4).and_then(Self::parse)
    }
}

/// An image in a region: the key of a lineage node. The same id string in two regions is two
/// different images.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ImageRef {
    pub region: Region,
    pub image_id: ImageId,
}

impl ImageRef {
    pub fn new(region: Region, image_id: ImageId) -> Self {
        Self { region, image_id }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.image_id, self.region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regions_partition_comes_from_its_prefix() {
        let partition = |r: &str| Region::parse(r).unwrap().partition();
        assert_eq!(partition("eu-west-1"), "aws");
        assert_eq!(partition("cn-northwest-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition("us-iso-east-1"), "aws-iso");
        assert_eq!(partition("us-isob-east-1"), "aws-iso-b");
        assert_eq!(partition("us-east-1"), "aws");
    }

    #[test]
    fn image_ids_need_their_prefix_and_plain_characters() {
        assert!(ImageId::parse("ami-0abc123").is_some());
        assert!(ImageId::parse("snap-0abc123").is_none());
        assert!(ImageId::parse("ami-").is_none());
        assert!(ImageId::parse("ami-12 34").is_none());
        assert!(ImageId::parse("ami-../../etc").is_none());
    }

    #[test]
    fn regions_and_accounts_reject_garbage() {
        assert!(Region::parse("eu-west-1").is_some());
        assert!(Region::parse("EU-WEST-1").is_none());
        assert!(Region::parse("x").is_none());
        assert!(AccountId::parse("123456789012").is_some());
        assert!(AccountId::parse("12345678901").is_none());
        assert!(AccountId::parse("12345678901a").is_none());
        let arn = "arn:aws:lambda:eu-west-1:123456789012:function:exposure-guard";
        assert_eq!(AccountId::of_function_arn(arn).unwrap().as_str(), "123456789012");
        assert!(AccountId::of_function_arn("garbage").is_none());
    }
}
