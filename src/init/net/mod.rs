//! Network bring-up for the live image.

pub mod dhcp;
pub mod netlink;
