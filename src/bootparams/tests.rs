use super::*;
use proptest::prelude::*;

fn parse(line: &str) -> Cmdline {
    Cmdline::parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

fn err(line: &str) -> String {
    match Cmdline::parse(line) {
        Ok(c) => panic!("{line:?} parsed: {c:?}"),
        Err(e) => e.to_string(),
    }
}

const FP: &str = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#[test]
fn a_full_unattended_line() {
    let c = parse(&format!(
        "BOOT_IMAGE=/vmlinuz console=tty0 console=ttyS0,115200n8 quiet ip=dhcp \
         p2xen.server=dom0.lan:7000 p2xen.token=abc123 p2xen.fingerprint={FP} \
         p2xen.name=\"web server\" p2xen.memory=2G p2xen.vcpus=4 p2xen.disks=sda,/dev/nvme0n1 \
         p2xen.layout=partitions p2xen.type=pvh p2xen.bridge=xenbr0 p2xen.post=reboot \
         p2xen.fail=wait p2xen.console=ttyS0 p2xen.debug\n"
    ));
    assert_eq!(
        c.server,
        Some(Server {
            host: "dom0.lan".into(),
            port: 7000
        })
    );
    assert_eq!(c.token.as_ref().map(Token::as_str), Some("abc123"));
    assert_eq!(c.fingerprint.unwrap().to_string(), FP);
    assert_eq!(c.name.as_deref(), Some("web server"));
    assert_eq!(c.memory_mib, Some(2048));
    assert_eq!(c.vcpus, Some(4));
    assert_eq!(
        c.disks,
        Some(vec!["sda".to_string(), "nvme0n1".to_string()])
    );
    assert_eq!(c.layout, Layout::Partitions);
    assert_eq!(c.xen_type, Some(XenType::Pvh));
    assert_eq!(c.bridge.as_deref(), Some("xenbr0"));
    assert_eq!(c.post, EndAction::Reboot);
    assert_eq!(c.fail, EndAction::Wait);
    assert_eq!(c.mode, Mode::Auto);
    assert_eq!(c.console.as_deref(), Some("ttyS0"));
    assert!(c.debug);
    assert_eq!(
        c.consoles
            .iter()
            .map(|c| c.device.as_str())
            .collect::<Vec<_>>(),
        ["tty0", "ttyS0"]
    );
    assert_eq!(c.consoles[1].baud, Some(115200));
    assert_eq!(
        c.ip,
        [IpParam::Dhcp {
            device: None,
            hostname: None
        }]
    );
    assert_eq!(c.warnings, vec![]);
}

#[test]
fn defaults() {
    let c = parse("root=/dev/sda1 ro\n");
    assert_eq!(c, Cmdline::default());
    assert_eq!(c.post, EndAction::Poweroff);
    assert_eq!(c.fail, EndAction::Shell);
    assert_eq!(c.bootdev, None);
    assert_eq!(c.settle, DEFAULT_SETTLE);
    assert_eq!(c.mode, Mode::Menu);
    assert_eq!(c.layout, Layout::Disk);
    assert_eq!(parse("p2xen.server=h").server.unwrap().port, DEFAULT_PORT);
    assert_eq!(parse("p2xen.server=h").mode, Mode::Auto);
    assert_eq!(parse("p2xen.server=h p2xen.mode=menu").mode, Mode::Menu);
}

#[test]
fn whole_param_quoting() {
    let c = parse(r#""p2xen.name=db 2" p2xen.debug=no"#);
    assert_eq!(c.name.as_deref(), Some("db 2"));
    assert!(!c.debug);
}

#[test]
fn repeated_keys_last_wins_and_are_reported() {
    let c = parse("p2xen.name=a ip=off p2xen.name=b p2xen.name=c ip=dhcp");
    assert_eq!(c.name.as_deref(), Some("c"));
    assert!(matches!(c.ip[..], [IpParam::Dhcp { .. }]));
    assert_eq!(
        c.warnings,
        vec![
            CmdlineWarning::Repeated {
                key: "p2xen.name".into(),
                count: 3
            },
            CmdlineWarning::Repeated {
                key: "ip".into(),
                count: 2
            },
        ]
    );
    assert_eq!(
        c.warnings[0].to_string(),
        "p2xen.name is given 3 times; the last one is used"
    );
    // Only the value that is used must be valid.
    assert_eq!(parse("p2xen.vcpus=zero p2xen.vcpus=2").vcpus, Some(2));
}

#[test]
fn unknown_keys_are_reported_not_ignored() {
    let c = parse("p2xen.sever=dom0 p2xen.name=x foo.bar=1");
    assert_eq!(
        c.warnings,
        vec![CmdlineWarning::UnknownKey {
            key: "p2xen.sever".into()
        }]
    );
    let text = c.warnings[0].to_string();
    assert!(
        text.starts_with("unknown parameter p2xen.sever is ignored (known: p2xen.server, "),
        "{text}"
    );
}

#[test]
fn bad_values_name_the_key_and_accepted_values() {
    assert_eq!(
        err("p2xen.post=halt"),
        "kernel command line: p2xen.post=\"halt\": \"halt\" is not one of them (accepted: poweroff|reboot|shell|wait)"
    );
    assert_eq!(
        err("p2xen.fail=reboot"),
        "kernel command line: p2xen.fail=\"reboot\": \"reboot\" is not one of them (a reboot would repeat the failed run) (accepted: shell|wait|poweroff)"
    );
    assert_eq!(
        err("p2xen.settle=0"),
        "kernel command line: p2xen.settle=\"0\": \"0\" is not a number of seconds from 1 to 600 (accepted: seconds from 1 to 600)"
    );
    assert!(err("p2xen.settle=10s").contains("p2xen.settle=\"10s\""));
    assert!(
        err("p2xen.bootdev=\"sd b\"")
            .contains("p2xen.bootdev=\"sd b\": \"sd b\" is not a block device name")
    );
    assert!(err("p2xen.bootdev").contains("p2xen.bootdev needs a value"));
    assert!(err("p2xen.mode=batch").contains("(accepted: auto|menu|shell)"));
    assert!(err("p2xen.type=kvm").contains("p2xen.type=\"kvm\""));
    assert!(err("p2xen.layout=lvm").contains("accepted: disk|partitions"));
    assert!(err("p2xen.memory=2K").contains("p2xen.memory=\"2K\": unit \"K\""));
    assert!(err("p2xen.vcpus=0").contains("p2xen.vcpus"));
    assert!(err("p2xen.fingerprint=abc").contains("sha256:<64 hex digits>"));
    assert!(err("p2xen.server=a:b:c").contains("p2xen.server"));
    assert!(err("p2xen.disks=sda,,sdb").contains("empty disk name"));
    assert!(err("p2xen.disks=sda,sda").contains("sda is listed twice"));
    assert!(err("p2xen.bridge=br/0").contains("p2xen.bridge"));
    assert!(err("p2xen.debug=maybe").contains("p2xen.debug=\"maybe\""));
    assert!(err("ip=10.0.0.1:::255.0.255.0").contains("ip=\"10.0.0.1:::255.0.255.0\": netmask"));
    assert_eq!(
        err("p2xen.server"),
        "kernel command line: p2xen.server needs a value (accepted: p2xen.server=HOST[:PORT], [IPV6][:PORT])"
    );
}

#[test]
fn the_token_never_appears_in_errors_or_debug() {
    let e = err("p2xen.token=\"sec ret\"");
    assert!(e.contains("p2xen.token=\"<redacted>\""), "{e}");
    assert!(!e.contains("sec"), "{e}");
    let c = parse("p2xen.token=hunter2");
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn auto_mode_needs_a_server() {
    assert!(matches!(
        Cmdline::parse("p2xen.mode=auto"),
        Err(CmdlineError::AutoWithoutServer)
    ));
}

#[test]
fn consoles_all_in_order_with_bad_ones_reported() {
    let c = parse("console=ttyS1,9600 console=hvc0 console= console=tty0");
    assert_eq!(
        c.consoles
            .iter()
            .map(|c| c.device.as_str())
            .collect::<Vec<_>>(),
        ["ttyS1", "hvc0", "tty0"]
    );
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0]
            .to_string()
            .starts_with("console: no device name")
    );
}

#[test]
fn static_ip_from_the_command_line() {
    let c = parse("ip=192.168.10.5::192.168.10.1:255.255.255.0:src:eth0:off:192.168.10.53");
    let [IpParam::Static(s)] = &c.ip[..] else {
        panic!("{:?}", c.ip)
    };
    assert_eq!(s.address.to_string(), "192.168.10.5");
    assert_eq!(s.prefix_len, 24);
    assert_eq!(s.device.as_deref(), Some("eth0"));
    assert_eq!(s.dns.len(), 1);
}

#[test]
fn boot_medium_and_settle_time() {
    let c = parse("p2xen.bootdev=/dev/sdc p2xen.settle=5");
    assert_eq!(c.bootdev.as_deref(), Some("sdc"));
    assert_eq!(c.settle, std::time::Duration::from_secs(5));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.to_cmdline(), "p2xen.bootdev=sdc p2xen.settle=5");
    assert_eq!(parse("p2xen.settle=600").settle.as_secs(), MAX_SETTLE_SECS);
}

#[test]
fn blacklist() {
    let c = parse("p2xen.blacklist=e1000,virtio-blk");
    assert_eq!(c.blacklist, ["e1000", "virtio_blk"]);
    assert_eq!(c.to_cmdline(), "p2xen.blacklist=e1000,virtio_blk");
    assert_eq!(
        err("p2xen.blacklist=e1000,,igb"),
        "kernel command line: p2xen.blacklist=\"e1000,,igb\": \"\" is not a module name of 1 to 55 characters (accepted: module names separated by commas: e1000,mpt3sas)"
    );
}

#[test]
fn bandwidth_limit() {
    let c = parse("p2xen.limit=100Mbit");
    assert_eq!(c.limit.map(|r| r.bytes_per_sec()), Some(12_500_000));
    assert_eq!(c.to_cmdline(), "p2xen.limit=12500000");
    assert_eq!(parse("p2xen.limit=50M p2xen.limit=off").limit, None);
    let e = err("p2xen.limit=fast");
    assert!(
        e.starts_with("kernel command line: p2xen.limit=\"fast\": bandwidth limit \"fast\"")
            && e.contains("(accepted: a rate: 50M (MiB/s), 800Mbit (bits/s), or off)"),
        "{e}"
    );
}

#[test]
fn init_arguments_after_double_dash_are_read_too() {
    assert_eq!(parse("quiet -- p2xen.name=x").name.as_deref(), Some("x"));
}

#[test]
fn to_cmdline_renders_what_parse_reads() {
    let line = format!(
        "p2xen.server=[fd00::1]:7461 p2xen.token=t0k p2xen.fingerprint={FP} p2xen.name=\"a b\" \
         p2xen.memory=512M p2xen.vcpus=2 p2xen.disks=sda,sdb p2xen.layout=partitions p2xen.type=hvm \
         p2xen.bridge=br0 p2xen.post=shell p2xen.fail=poweroff p2xen.mode=menu p2xen.console=ttyS1 \
         p2xen.bootdev=sdd p2xen.settle=90 p2xen.debug"
    );
    let c = parse(&line);
    assert_eq!(c.to_cmdline(), line);
    assert_eq!(parse(&c.to_cmdline()), c);
    assert_eq!(Cmdline::default().to_cmdline(), "");
    assert_eq!(parse("p2xen.server=h").to_cmdline(), "p2xen.server=h:7460");
}

#[test]
fn read_names_the_path() {
    let e = Cmdline::read(Path::new("/nonexistent/cmdline")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/cmdline: cannot read the kernel command line")
    );
}

fn known_param() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.-]{1,20}(:[0-9]{1,5})?".prop_map(|v| format!("p2xen.server={v}")),
        "[A-Za-z0-9]{1,20}".prop_map(|v| format!("p2xen.token={v}")),
        "[a-z0-9 ]{1,20}".prop_map(|v| format!("p2xen.name=\"{v}\"")),
        "[0-9]{1,6}[MGT]?".prop_map(|v| format!("p2xen.memory={v}")),
        "[0-9]{1,3}".prop_map(|v| format!("p2xen.vcpus={v}")),
        "[a-z0-9]{1,6}(,[a-z0-9]{1,6}){0,3}".prop_map(|v| format!("p2xen.disks={v}")),
        prop::sample::select(vec!["disk", "partitions"]).prop_map(|v| format!("p2xen.layout={v}")),
        prop::sample::select(vec!["pv", "pvh", "hvm"]).prop_map(|v| format!("p2xen.type={v}")),
        prop::sample::select(vec!["poweroff", "reboot", "shell", "wait"])
            .prop_map(|v| format!("p2xen.post={v}")),
        prop::sample::select(vec!["shell", "wait", "poweroff"])
            .prop_map(|v| format!("p2xen.fail={v}")),
        Just("p2xen.mode=menu".to_string()),
        "[a-z]{2,4}[0-9]?".prop_map(|v| format!("p2xen.bootdev={v}")),
        "[0-9]{1,3}".prop_map(|v| format!("p2xen.settle={v}")),
        "[a-z0-9]{1,10}".prop_map(|v| format!("p2xen.bridge={v}")),
        "[1-9][0-9]{0,3}(M|Mbit|G)".prop_map(|v| format!("p2xen.limit={v}")),
        Just("p2xen.debug".to_string()),
    ]
}

proptest! {
    #[test]
    fn parse_never_panics(line in ".{0,300}") {
        let _ = Cmdline::parse(&line);
    }

    #[test]
    fn parse_never_panics_on_near_misses(
        parts in prop::collection::vec("(p2xen\\.[a-z]{0,12}|ip|console)(=\"?[^ ]{0,24}\"?)?", 0..8)
    ) {
        let _ = Cmdline::parse(&parts.join(" "));
    }

    #[test]
    fn to_cmdline_roundtrips(parts in prop::collection::vec(known_param(), 0..10)) {
        if let Ok(c) = Cmdline::parse(&parts.join(" ")) {
            let mut again = Cmdline::parse(&c.to_cmdline()).unwrap();
            let mut c = c;
            c.warnings.clear();
            again.warnings.clear();
            prop_assert_eq!(again, c);
        }
    }
}

#[test]
fn mode_shell_is_the_rescue_entry() {
    let c = Cmdline::parse("console=ttyS0 p2xen.mode=shell").unwrap();
    assert_eq!(c.mode, Mode::Shell);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.to_cmdline(), "p2xen.mode=shell");
}

#[test]
fn dracut_network_parameters() {
    let c = parse(
        "ifname=lan0:52:54:00:12:34:56 bond=bond0:lan0,eth1:mode=active-backup vlan=bond0.20:bond0 \
         ip=bond0.20:dhcp ip=bond0.20:auto6 ip=[2001:db8::5]::[2001:db8::1]:64::eth2:none \
         ip=bond0.20:dhcp nameserver=10.0.0.53 nameserver=2001:db8::53 \
         rd.route=192.168.0.0/16:10.20.0.1:bond0.20 rd.net.timeout.carrier=20",
    );
    assert_eq!(c.net.ifnames[0].name, "lan0");
    assert_eq!(c.net.bonds[0].slaves, ["lan0", "eth1"]);
    assert_eq!(c.net.vlans[0].id, 20);
    assert_eq!(c.net.nameservers.len(), 2);
    assert_eq!(c.net.routes[0].device.as_deref(), Some("bond0.20"));
    assert_eq!(c.carrier_timeout, Some(std::time::Duration::from_secs(20)));
    // One entry per interface and family; the repeated DHCP one is reported.
    assert_eq!(c.ip.len(), 3, "{:?}", c.ip);
    assert!(matches!(&c.ip[1], IpParam::Auto6 { device: Some(d) } if d == "bond0.20"));
    assert!(matches!(&c.ip[2], IpParam::Static6(s) if s.prefix_len == 64));
    assert_eq!(
        c.warnings,
        [CmdlineWarning::Repeated {
            key: "ip".into(),
            count: 2
        }]
    );
    assert!(err("vlan=eth0.5000:eth0").contains("vlan=\"eth0.5000:eth0\": VLAN id \"5000\""));
    assert!(err("bond=bond0:eth0:mode=fast").contains("accepted: <name>[:<slave>"));
    assert!(err("rd.net.timeout.carrier=0").contains("rd.net.timeout.carrier"));
}
