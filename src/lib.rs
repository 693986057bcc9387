//! p2xen: migrate a powered-off physical Linux server into a Xen guest.
//!
//! Data flows one way: `source` (what is on the disks) → `send` → `wire` (the
//! protocol) → `receive` (images on dom0) → `guest` (fix-ups and the xl config).

// Outside tests: no unwrap() (data from disk, network and user gets an error
// instead), and every narrowing `as` fixed or justified, so that the 32-bit
// build stays honest. `[lints]` in Cargo.toml cannot exempt test code.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::cast_possible_truncation))]

pub mod bootparams;
pub mod guest;
pub mod image;
pub mod init;
pub mod menu;
pub mod net;
pub mod receive;
pub mod send;
pub mod source;
pub mod wire;
