//! Helpers shared by the integration tests; one file per concern.
#![allow(dead_code)]

pub mod qemu;
