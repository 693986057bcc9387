//! Values given on the kernel command line (without p2xen.mode=auto) that
//! pre-fill the menu, and the command line that repeats a menu run.

use super::backend::{MigrationPlan, Net6Method, NetChoice, NetMethod};
use crate::bootparams::{Cmdline, Fingerprint, IpParam, NetDevices, Server, StaticIp6, Token};
use crate::wire::machine::{Layout, XenType};

/// Text values as the user would type them; the menu validates them like
/// typed input.
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
    pub layout: Option<Layout>,
    pub xen_type: Option<XenType>,
    pub bridge: Option<String>,
    /// The kernel's `ip=` entries (the Network screen edits the first IPv4
    /// and the first IPv6 one), repeated in the "next time" line.
    pub ip: Vec<IpParam>,
    /// The kernel's `bond=`, `vlan=` (the screen shows the first of each)
    /// and the rest of dracut's network parameters.
    pub net: NetDevices,
}

impl MenuPrefill {
    pub fn from_cmdline(c: &Cmdline) -> MenuPrefill {
        MenuPrefill {
            server: c.server.as_ref().map(Server::to_string),
            token: c.token.as_ref().map(|t| t.as_str().to_string()),
            fingerprint: c.fingerprint.as_ref().map(Fingerprint::to_string),
            name: c.name.clone(),
            memory: c.memory_mib.map(|m| m.to_string()),
            vcpus: c.vcpus.map(|v| v.to_string()),
            disks: c.disks.clone(),
            layout: Some(c.layout),
            xen_type: c.xen_type,
            bridge: c.bridge.clone(),
            ip: c.ip.clone(),
            net: c.net.clone(),
        }
    }
}

/// The terminals the menu runs on: every `console=` (tty0, the current
/// virtual terminal, is /dev/tty1 at boot), each once; `p2xen.console=`
/// restricts it to that one. None given: /dev/console.
pub fn console_paths(c: &Cmdline) -> Vec<std::path::PathBuf> {
    let names: Vec<String> = match &c.console {
        Some(one) => vec![one.clone()],
        None => c.consoles.iter().map(|k| k.device.clone()).collect(),
    };
    let mut paths: Vec<std::path::PathBuf> = Vec::new();
    for n in names {
        let n = if n == "tty0" { "tty1".to_string() } else { n };
        let p = std::path::PathBuf::from("/dev").join(n);
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    if paths.is_empty() {
        paths.push("/dev/console".into());
    }
    paths
}

fn opt(a: Option<std::net::Ipv4Addr>) -> String {
    a.map(|a| a.to_string()).unwrap_or_default()
}

/// `ip=` in the kernel's nfsroot syntax; None for the default (DHCP on
/// every interface with a link).
pub fn ip_text(ip: &IpParam) -> Option<String> {
    match ip {
        IpParam::Off => Some("off".into()),
        IpParam::Dhcp {
            device: None,
            hostname: None,
        } => None,
        IpParam::Dhcp { device, hostname } => Some(format!(
            ":::{}:{}:{}:dhcp",
            "",
            hostname.as_deref().unwrap_or(""),
            device.as_deref().unwrap_or("")
        )),
        IpParam::Auto6 { device } => Some(match device {
            Some(d) => format!("{d}:auto6"),
            None => "auto6".into(),
        }),
        IpParam::Dhcp6 { device } => Some(match device {
            Some(d) => format!("{d}:dhcp6"),
            None => "dhcp6".into(),
        }),
        IpParam::Static6(s) => Some(format!(
            "[{}]::{}:{}:{}:{}:none",
            s.address,
            s.gateway.map(|g| format!("[{g}]")).unwrap_or_default(),
            s.prefix_len,
            s.hostname.as_deref().unwrap_or(""),
            s.device.as_deref().unwrap_or("")
        )),
        IpParam::Static(s) => {
            let mask = u32::MAX
                .checked_shl(32u32.saturating_sub(u32::from(s.prefix_len)))
                .unwrap_or(0);
            let mut dns = s.dns.iter().map(|d| d.to_string());
            Some(format!(
                "{}:{}:{}:{}:{}:{}:off:{}:{}",
                s.address,
                opt(s.server),
                opt(s.gateway),
                std::net::Ipv4Addr::from(mask),
                s.hostname.as_deref().unwrap_or(""),
                s.device.as_deref().unwrap_or(""),
                dns.next().unwrap_or_default(),
                dns.next().unwrap_or_default()
            ))
        }
    }
}

/// The `ip=` entries for what was applied on the Network screen (one IPv4,
/// one IPv6, on the link the choice names). The host name and NTP server of
/// the kernel's own `ip=` (`previous`) are kept: that screen does not edit
/// them, and the next server should get them too.
pub fn ip_of_choice(c: &NetChoice, previous: &[IpParam]) -> Vec<IpParam> {
    let (hostname, ntp) = previous
        .iter()
        .find_map(|p| match p {
            IpParam::Dhcp { hostname, .. } => Some((hostname.clone(), None)),
            IpParam::Static(s) => Some((s.hostname.clone(), s.ntp)),
            _ => None,
        })
        .unwrap_or((None, None));
    let device = c.device();
    let v4 = match &c.method {
        NetMethod::Off => None,
        NetMethod::Dhcp => Some(IpParam::Dhcp {
            device: device.clone(),
            hostname,
        }),
        NetMethod::Static {
            address,
            prefix_len,
            gateway,
            dns,
        } => Some(IpParam::Static(crate::bootparams::StaticIp {
            address: *address,
            prefix_len: *prefix_len,
            gateway: *gateway,
            server: None,
            hostname,
            device: device.clone(),
            dns: dns.clone(),
            ntp,
        })),
    };
    let v6 = match &c.method6 {
        Net6Method::None => None,
        Net6Method::Auto6 => Some(IpParam::Auto6 {
            device: device.clone(),
        }),
        Net6Method::Dhcp6 => Some(IpParam::Dhcp6 {
            device: device.clone(),
        }),
        Net6Method::Static {
            address,
            prefix_len,
            gateway,
        } => Some(IpParam::Static6(StaticIp6 {
            address: *address,
            prefix_len: *prefix_len,
            gateway: *gateway,
            hostname: None,
            device: device.clone(),
            dns: Vec::new(),
        })),
    };
    let v: Vec<IpParam> = v4.into_iter().chain(v6).collect();
    if v.is_empty() { vec![IpParam::Off] } else { v }
}

/// The parameters that repeat `plan` unattended ("next time, boot with:
/// ..."), written by `Cmdline::to_cmdline` so both stay one syntax.
pub fn next_time_cmdline(plan: &MigrationPlan, ip: &[IpParam], net: &NetDevices) -> String {
    let c = Cmdline {
        server: Server::parse(&plan.server).ok(),
        token: Token::parse(&plan.token).ok(),
        fingerprint: Fingerprint::parse(&plan.fingerprint).ok(),
        name: Some(plan.name.clone()),
        memory_mib: Some(plan.memory_mib),
        vcpus: Some(plan.vcpus),
        disks: Some(
            plan.disks
                .iter()
                .map(|d| {
                    let s = d.to_string_lossy();
                    s.strip_prefix("/dev/").unwrap_or(&s).to_string()
                })
                .collect(),
        ),
        layout: plan.layout,
        xen_type: plan.xen_type,
        bridge: plan.bridge.clone(),
        mode: crate::bootparams::Mode::Auto,
        ..Cmdline::default()
    };
    let mut line = c.to_cmdline();
    for b in &net.bonds {
        line.push_str(&format!(" bond={b}"));
    }
    for v in &net.vlans {
        line.push_str(&format!(" vlan={v}"));
    }
    for ip in ip.iter().filter_map(ip_text) {
        line.push_str(&format!(" ip={ip}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consoles_from_the_kernel_command_line() {
        let c = Cmdline::parse("console=ttyS0,115200 console=tty0 console=ttyS0").unwrap();
        assert_eq!(
            console_paths(&c),
            vec![
                std::path::PathBuf::from("/dev/ttyS0"),
                std::path::PathBuf::from("/dev/tty1")
            ]
        );
        let c = Cmdline::parse("console=ttyS0 console=tty0 p2xen.console=hvc0").unwrap();
        assert_eq!(
            console_paths(&c),
            vec![std::path::PathBuf::from("/dev/hvc0")]
        );
        let c = Cmdline::parse("quiet").unwrap();
        assert_eq!(
            console_paths(&c),
            vec![std::path::PathBuf::from("/dev/console")]
        );
    }

    #[test]
    fn prefill_from_the_kernel_command_line() {
        let c = Cmdline::parse(
            "p2xen.server=dom0 p2xen.token=t p2xen.name=web p2xen.memory=2G p2xen.disks=sda,sdb p2xen.type=pvh",
        )
        .unwrap();
        let p = MenuPrefill::from_cmdline(&c);
        assert_eq!(p.server.as_deref(), Some("dom0:7460"));
        assert_eq!(p.token.as_deref(), Some("t"));
        assert_eq!(p.name.as_deref(), Some("web"));
        assert_eq!(p.memory.as_deref(), Some("2048"));
        assert_eq!(p.disks, Some(vec!["sda".to_string(), "sdb".to_string()]));
        assert_eq!(p.xen_type, Some(XenType::Pvh));
    }

    #[test]
    fn next_time_line_parses_back_to_the_plan() {
        let plan = MigrationPlan {
            server: "10.0.0.1:7460".into(),
            token: "tok".into(),
            fingerprint: format!("sha256:{}", "ab".repeat(32)),
            name: "web 1".into(),
            disks: vec!["/dev/sda".into(), "/dev/nvme0n1".into()],
            memory_mib: 2048,
            vcpus: 2,
            layout: Layout::Partitions,
            xen_type: Some(XenType::Pvh),
            bridge: Some("xenbr0".into()),
        };
        let ip = IpParam::Static(crate::bootparams::StaticIp {
            address: [192, 0, 2, 10].into(),
            prefix_len: 24,
            gateway: Some([192, 0, 2, 1].into()),
            server: None,
            hostname: None,
            device: Some("eth0".into()),
            dns: vec![[192, 0, 2, 53].into()],
            ntp: None,
        });
        let line = next_time_cmdline(&plan, std::slice::from_ref(&ip), &NetDevices::default());
        let c = Cmdline::parse(&line).expect("the line parses");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.server.map(|s| s.to_string()), Some(plan.server.clone()));
        assert_eq!(c.name.as_deref(), Some("web 1"));
        assert_eq!(c.memory_mib, Some(2048));
        assert_eq!(
            c.disks,
            Some(vec!["sda".to_string(), "nvme0n1".to_string()])
        );
        assert_eq!(c.layout, Layout::Partitions);
        assert_eq!(c.ip, [ip]);
        assert_eq!(c.mode, crate::bootparams::Mode::Auto);
    }

    #[test]
    fn next_time_line_repeats_bond_vlan_and_ipv6() {
        let boot = "bond=bond0:eth0,eth1:mode=active-backup,miimon=100 vlan=bond0.20:bond0 \
                    ip=bond0.20:dhcp6 ip=[2001:db8::5]::[2001:db8::1]:64::eth2:none";
        let c = Cmdline::parse(boot).unwrap();
        let plan = MigrationPlan {
            server: "[2001:db8::1]:7460".into(),
            token: "tok".into(),
            fingerprint: format!("sha256:{}", "ab".repeat(32)),
            name: "web".into(),
            disks: vec!["/dev/sda".into()],
            memory_mib: 1024,
            vcpus: 1,
            layout: Layout::Disk,
            xen_type: None,
            bridge: None,
        };
        let line = next_time_cmdline(&plan, &c.ip, &c.net);
        assert!(
            line.contains(" bond=bond0:eth0,eth1:mode=active-backup,miimon=100 "),
            "{line}"
        );
        let back = Cmdline::parse(&line).unwrap();
        assert_eq!(back.ip, c.ip);
        assert_eq!(back.net, c.net);
        assert_eq!(
            crate::net::NetRequest::from_cmdline(&back),
            crate::net::NetRequest::from_cmdline(&c)
        );
    }

    #[test]
    fn applied_network_keeps_the_kernels_host_name_and_ntp() {
        let kernel = Cmdline::parse(
            "ip=10.0.2.15::10.0.2.2:255.255.255.0:web01:eth0:off:10.0.2.3::10.0.2.4",
        )
        .unwrap()
        .ip
        .pop()
        .expect("ip= parsed");
        let choice = NetChoice {
            interface: Some("eth1".into()),
            method: NetMethod::Static {
                address: [192, 0, 2, 10].into(),
                prefix_len: 24,
                gateway: Some([192, 0, 2, 1].into()),
                dns: vec![[192, 0, 2, 53].into()],
            },
            ..NetChoice::default()
        };
        let [IpParam::Static(s)] = &ip_of_choice(&choice, std::slice::from_ref(&kernel))[..] else {
            panic!("static choice gave another ip=");
        };
        assert_eq!(s.hostname.as_deref(), Some("web01"));
        assert_eq!(s.ntp, Some([10, 0, 2, 4].into()));
        assert_eq!(s.address, std::net::Ipv4Addr::from([192, 0, 2, 10]));
        assert_eq!(s.device.as_deref(), Some("eth1"));
        let dhcp = NetChoice::default();
        assert_eq!(
            ip_of_choice(&dhcp, &[kernel]),
            [IpParam::Dhcp {
                device: None,
                hostname: Some("web01".into())
            }]
        );
    }
}
