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
    if req.policy.guest_kernel.is_some() && req.xen_type == Some(XenType::Hvm) {
        return Err(GuestError::Invalid(
            "--guest-kernel boots the guest PV (or PVH) with a kernel from dom0; drop --type hvm, \
             or drop --guest-kernel to boot the guest's own kernel on emulated hardware"
                .to_string(),
        ));
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

#[cfg(test)]
mod tests {
    use super::super::super::Machine;
    use super::super::super::machine::Options;
    use super::*;

    fn request(machine: Machine) -> ConvertRequest {
        ConvertRequest::new("/srv/p2xen/web1".into(), "web1", machine, "/etc/xen".into())
    }

    #[test]
    fn command_line_then_sender_then_machine_then_defaults() {
        let machine = Machine {
            cpus: Some(500),
            memory_bytes: Some(64 << 20),
            options: Some(Options {
                xen_type: Some(XenType::Pvh),
                bridge: Some("br,1".to_string()),
                vcpus: Some(2),
                ..Options::default()
            }),
            ..Machine::default()
        };
        let mut req = request(machine);
        let s = guest_options(&req).unwrap();
        assert_eq!(
            s,
            Settings {
                layout: Layout::Disk,
                type_override: Some(XenType::Pvh),
                // 64 MiB of the source is raised to xl's working minimum.
                memory_mib: 128,
                vcpus: 2,
                // A comma would split the vif spec: the default instead.
                bridge: "xenbr0".to_string(),
            }
        );
        req.xen_type = Some(XenType::Pv);
        req.vcpus = None;
        req.machine.options = None;
        req.bridge = Some("br1".to_string());
        let s = guest_options(&req).unwrap();
        assert_eq!(s.type_override, Some(XenType::Pv));
        assert_eq!((s.vcpus, s.bridge.as_str()), (128, "br1"));
    }

    #[test]
    fn partitions_cannot_be_hvm_and_names_are_checked() {
        let mut req = request(Machine::default());
        req.layout = Some(Layout::Partitions);
        req.xen_type = Some(XenType::Hvm);
        let e = guest_options(&req).unwrap_err().to_string();
        assert!(e.starts_with("layout partitions cannot boot as hvm"), "{e}");

        for bad in ["", ".hidden", "a/b", "x y"] {
            req.name = bad.to_string();
            assert!(validate(&req).is_err(), "{bad:?} accepted");
        }
        req.name = "web-1_2.example".to_string();
        validate(&req).unwrap();
        req.bridge = Some("br0'".to_string());
        assert_eq!(
            validate(&req).unwrap_err().to_string(),
            "bridge name \"br0'\""
        );
    }
}
