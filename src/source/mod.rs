//! The source side: the server's disks as they are, read without touching them.

pub mod cli;
pub mod controllers;
pub mod device;
pub mod extent;
pub mod filesystems;
pub mod inspect;
pub mod mounts;
pub mod os;
pub mod partitions;
pub mod raid;
pub mod sysfs;
