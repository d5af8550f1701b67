//! Test and demo support for AMI Warden. Not used by any Lambda.
//!
//! Moto, the local AWS emulator, emits no CloudTrail events. This crate makes real EC2 calls on
//! the local stack and builds the CloudTrail-shaped EventBridge events those calls would
//! produce ([`cloudtrail`]), plays the seed story ([`story`]), and connects tests to the local
//! stack ([`stack`]).

pub mod cloudtrail;
pub mod runtime_api;
pub mod stack;
pub mod story;
