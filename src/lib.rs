//! p2xen: migrate a powered-off physical Linux server into a Xen guest.
//!
//! Data flows one way: `source` (what is on the disks) → `wire` (the protocol)
//! → `receive` (images on dom0) → `guest` (fix-ups and the xl config).

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
