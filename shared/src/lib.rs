//! AMI Warden's domain crate.
//!
//! Everything the Lambdas and the `ami-warden` CLI share: tolerant parsing of CloudTrail AMI
//! events ([`event`]), the lineage graph and its store ([`lineage`]), the recorder that turns
//! events into lineage ([`recorder`]), the backfill of what AWS still knows ([`backfill`]), the typed configuration ([`config`]) and the adapters
//! over the AWS SDK ([`aws`]). The binaries stay thin: they read configuration, build clients
//! once and call into here.
//!
//! Policy code takes plain data and returns decisions; it never sees an SDK type. SDK types
//! stay inside [`aws`].

pub mod aws;
pub mod backfill;
pub mod budget;
pub mod catalogue;
pub mod config;
pub mod deprecation;
pub mod event;
pub mod exposure;
pub mod handler;
pub mod idempotency;
pub mod ids;
pub mod impact;
pub mod lineage;
pub mod logging;
pub mod notify;
pub mod org;
pub mod reaper;
pub mod recorder;
pub mod recycle_bin;
pub mod routes;
pub mod sweep;
