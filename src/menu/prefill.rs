//! Values given on the kernel command line (without p2xen.mode=auto) that
//! pre-fill the menu, and the command line that repeats a menu run.

use super::backend::MigrationPlan;

/// Raw text values as the user would type them; the menu validates them
/// like typed input, so a bad value on the command line shows a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MenuPrefill {
    pub server: Option<String>,
    pub token: Option<String>,
    pub fingerprint: Option<String>,
    pub name: Option<String>,
    /// MiB or with a unit, as p2xen.memory=.
    pub memory: Option<String>,
    pub vcpus: Option<String>,
    /// Disk names as p2xen.disks= (`sda` or `/dev/sda`); None: all.
    pub disks: Option<Vec<String>>,
    pub layout: Option<String>,
    pub xen_type: Option<String>,
    pub bridge: Option<String>,
    /// The `ip=` value, to show and repeat.
    pub ip: Option<String>,
}

/// The `p2xen.*` parameters that repeat `plan` unattended ("next time,
/// boot with: ..."), in the syntax of docs/cmdline.md.
// Once init::cmdline (branch net) is merged this can build a `Cmdline` and
// call its to_cmdline(); the key names and quoting are the same.
pub fn next_time_cmdline(plan: &MigrationPlan, ip: Option<&str>) -> String {
    let mut parts = vec![
        format!("p2xen.server={}", plan.server),
        format!("p2xen.token={}", plan.token),
        format!("p2xen.fingerprint={}", plan.fingerprint),
        format!("p2xen.name={}", plan.name),
        format!("p2xen.memory={}M", plan.memory_mib),
        format!("p2xen.vcpus={}", plan.vcpus),
    ];
    let disks: Vec<String> = plan
        .disks
        .iter()
        .map(|d| {
            let s = d.to_string_lossy();
            s.strip_prefix("/dev/").unwrap_or(&s).to_string()
        })
        .collect();
    if !disks.is_empty() {
        parts.push(format!("p2xen.disks={}", disks.join(",")));
    }
    if plan.layout != "disk" {
        parts.push(format!("p2xen.layout={}", plan.layout));
    }
    if let Some(t) = &plan.xen_type {
        parts.push(format!("p2xen.type={t}"));
    }
    if let Some(b) = &plan.bridge {
        parts.push(format!("p2xen.bridge={b}"));
    }
    parts.push(format!("ip={}", ip.unwrap_or("dhcp")));
    parts.join(" ")
}
