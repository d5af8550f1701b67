//! AMI Warden's domain crate: everything the Lambdas, the `ami-warden` CLI, the benchmarks and
//! the tests share. The binaries stay thin: they read configuration, build clients once and
//! call into here.
//!
//! Policy code takes plain data and returns decisions; it never sees an SDK type. SDK types
//! stay inside [`aws`]. The modules, by what they are for:
//!
//! - Events in: [`event`] parses CloudTrail AMI and snapshot events tolerantly into typed
//!   values; [`routes`] says which function's EventBridge rule selects which event.
//! - The handlers: [`handler`] holds each function's state and its one dispatcher, the code the
//!   Lambdas, `replay`, the benchmarks and the tests all run.
//! - Lineage: [`lineage`] (the graph, ancestry, verification, rendering), [`recorder`] (events
//!   into lineage), [`backfill`] (lineage of the estate that existed before), [`impact`]
//!   (every descendant and where it is used).
//! - Exposure: [`exposure`] (is a share public or outside the allow-list; the guard, the sweep
//!   and the share ledger).
//! - Retirement and clean-up: [`deprecation`] (deadlines and which images retire),
//!   [`reaper`] (which snapshots are orphans and may go), [`recycle_bin`] (what a Recycle Bin
//!   rule keeps), [`removal`] (tag, act, confirm and untag: the one order of a recoverable
//!   removal), [`budget`] (when a Lambda run stops starting destructive actions).
//! - Organization scale: [`sweep`] (the units a daily sweep is made of, and each job's
//!   summary naming every unit that failed or was not reached).
//! - Around them: [`catalogue`] (the questions asked of EC2), [`idempotency`] (one handling
//!   per CloudTrail event), [`notify`] (notifications, email text and Slack), [`org`]
//!   (organization mode: accounts not covered), [`config`] (the one typed configuration),
//!   [`ids`] (identifier newtypes), [`logging`] (JSON logs for the Lambdas), [`metrics`]
//!   (CloudWatch metrics as embedded metric format lines), and [`aws`] (the adapters over the
//!   AWS SDK).

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
pub mod metrics;
pub mod notify;
pub mod org;
pub mod provenance;
pub mod quarantine;
pub mod reaper;
pub mod recorder;
pub mod recycle_bin;
pub mod removal;
pub mod routes;
pub mod sweep;
