//! Failures of the `lvm:VG` backend (`lvm.rs`), each with the lvm2 command
//! or the volume it concerns and what the admin can do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    /// An lvm2 tool failed or could not run; `msg` is its stderr.
    #[error("{cmd}: {msg}")]
    Command { cmd: String, msg: String },
    #[error(
        "volume group {vg} not found ({msg}): create it (vgcreate {vg} /dev/DISK) or start the receiver with --store lvm:<a VG listed by vgs>"
    )]
    NoVg { vg: String, msg: String },
    #[error(
        "volume group {vg}: {lv} needs {need} bytes but only {free} are free: extend the VG (vgextend {vg} /dev/DISK) or free space in it (lvremove), then run the sender again"
    )]
    VgFull {
        vg: String,
        lv: String,
        need: u64,
        free: u64,
    },
    #[error(
        "{path} is {have} bytes, smaller than the {need} bytes of the disk it would receive: remove it (lvremove) or start the receiver with --force"
    )]
    LvTooSmall { path: PathBuf, have: u64, need: u64 },
}
