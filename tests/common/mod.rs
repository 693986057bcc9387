//! Helpers shared by the integration tests. Each file is one kind of helper.
#![allow(dead_code)]

pub mod fixtures;
pub mod md;
pub mod pty;
pub mod qemu;
pub mod qmp;
pub mod receiver;
pub mod terminal;
pub mod used_map;
pub mod vlan_switch;
