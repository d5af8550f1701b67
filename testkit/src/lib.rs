//! Test and demo support for AMI Warden. Not used by any Lambda.
//!
//! Moto, the local AWS emulator, emits no CloudTrail events. This crate makes real EC2 calls on
//! the local stack and builds the CloudTrail-shaped EventBridge events those calls would
//! produce ([`cloudtrail`]), plays the seed story ([`story`]) and exposure scenarios
//! ([`exposure`]), connects tests to the local stack ([`stack`]), subscribes a queue to a topic
//! ([`inbox`]), seeds a member account for organization sweeps ([`org`]), adds Recycle Bin
//! rules to the local stack ([`recycle_bin`]), stands in for Lambda's Runtime API
//! ([`runtime_api`]) and a Slack webhook ([`webhook`]), and puts a proxy in front of the local
//! stack that injects faults and models AWS's latency and EC2's request limits ([`faults`],
//! [`aws_model`]) and can spread the accounts across several local stacks ([`shards`]), and
//! reads back the metrics a function printed ([`emf`]).

pub mod accounts;
pub mod aws_model;
pub mod cloudtrail;
pub mod emf;
pub mod estate;
pub mod exposure;
pub mod fakes;
pub mod faults;
pub mod history;
mod http;
pub mod iam;
pub mod inbox;
pub mod org;
pub mod recycle_bin;
pub mod rules;
pub mod runtime_api;
pub mod settings;
pub mod shards;
pub mod snapshots;
pub mod stack;
pub mod story;
pub mod webhook;

/// `items` in a seeded pseudo-random order (xorshift Fisher–Yates): the same seed gives the
/// same order, so a failing delivery order can be replayed.
pub fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut v = items.to_vec();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
    v
}
