//! The guest's settings: the command line's, else what the sender chose,
//! else the defaults; and the checks on the request's names.

use super::super::xlcfg::safe_value;
use super::super::{ConvertRequest, GuestError, Layout, XenType};

/// Settings of the guest, settled before anything is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::guest) struct Settings {
    pub layout: Layout,
    /// The type asked for; `None` lets the boot route decide.
    pub type_override: Option<XenType>,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub bridge: String,
}

/// The guest name becomes a file name and the xl domain name; the bridge
/// goes into a quoted vif spec.
pub(super) fn validate(req: &ConvertRequest) -> Result<(), GuestError> {
    let ok_name = !req.name.is_empty()
        && req.name.len() <= 64
        && req
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !req.name.starts_with('.');
    if !ok_name {
        return Err(GuestError::Invalid(format!(
            "guest name {:?}: use letters, digits, '-', '_' and '.' (at most 64)",
            req.name
        )));
    }
    if let Some(b) = &req.bridge {
        if !safe_value(b) {
            return Err(GuestError::Invalid(format!("bridge name {b:?}")));
        }
    }
    Ok(())
}

pub(super) fn guest_options(req: &ConvertRequest) -> Result<Settings, GuestError> {
    let m = &req.machine;
    let opts = m.options.clone().unwrap_or_default();
    let layout = req.layout.or(opts.layout).unwrap_or_default();
    let type_override = req.xen_type.or(opts.xen_type);
    if layout == Layout::Partitions && type_override == Some(XenType::Hvm) {
        return Err(GuestError::Invalid(
            "layout partitions cannot boot as hvm (no disk with a boot loader); use --layout disk"
                .to_string(),
        ));
    }
    let memory_mib = req
        .memory_mib
        .or(opts.memory_mib)
        .or(m.memory_bytes.map(|b| b / (1024 * 1024)))
        .unwrap_or(512)
        .max(128);
    let vcpus = req
        .vcpus
        .or(opts.vcpus)
        .or(m.cpus)
        .unwrap_or(1)
        .clamp(1, 128);
    // The sender's bridge is not validated by `validate`: one that would
    // break the config falls back to the default.
    let bridge = req
        .bridge
        .clone()
        .or(opts.bridge.filter(|b| safe_value(b)))
        .unwrap_or_else(|| "xenbr0".to_string());
    Ok(Settings {
        layout,
        type_override,
        memory_mib,
        vcpus,
        bridge,
    })
}
