//! Boot media assembly: the parts of `build/media` that are p2xen's own code.
//!
//! The boot loaders, file systems and the ISO come from Debian's tools
//! (syslinux, GRUB, mtools, xorriso); what no tool does the way the USB image
//! needs it, a GPT whose only partition is an ESP that legacy BIOS also boots
//! from, is written here.

pub mod cli;
pub mod fat_boot_sector;
pub mod usb_disk;
