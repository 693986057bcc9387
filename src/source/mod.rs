//! The source side: the server's disks as they are, read without touching them.

pub mod device;
pub mod extent;
pub mod filesystems;
