//! The real DHCP client, netlink configuration and resolv.conf against
//! dnsmasq, in two network namespaces joined by a veth pair. Everything
//! (links, addresses, DHCP and DNS traffic) stays inside namespaces the test
//! creates and deletes; the host's own network namespace is never touched,
//! and resolv.conf is written to a temp file, not the host's /etc.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use p2xen::bootparams::{Cmdline, StaticIp};
use p2xen::net::{self, Configured, NetMethod, NetRequest, NetStatus};

const SERVER_IP: &str = "10.213.7.1";
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 213, 7, 254);

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (is package iproute2 installed?)"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces `<id>-s` (server, link `vs`) and `<id>-c` (client, link
/// `vc`), and dnsmasq if started; all removed on drop, also after a failure.
struct Lab {
    server_ns: String,
    client_ns: String,
    dnsmasq: Option<Child>,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "p2xen-t{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let lab = Lab {
            server_ns: format!("{id}-s"),
            client_ns: format!("{id}-c"),
            dnsmasq: None,
            dir: tempfile::tempdir().unwrap(),
        };
        run(&["ip", "netns", "add", &lab.server_ns]);
        run(&["ip", "netns", "add", &lab.client_ns]);
        // Created inside the server namespace, the client end moved straight
        // into its own: neither end ever exists in the host's namespace.
        run(&[
            "ip",
            "-n",
            &lab.server_ns,
            "link",
            "add",
            "vs",
            "type",
            "veth",
            "peer",
            "name",
            "vc",
            "netns",
            &lab.client_ns,
        ]);
        run(&[
            "ip",
            "-n",
            &lab.server_ns,
            "addr",
            "add",
            &format!("{SERVER_IP}/24"),
            "dev",
            "vs",
        ]);
        run(&["ip", "-n", &lab.server_ns, "link", "set", "vs", "up"]);
        run(&["ip", "-n", &lab.server_ns, "link", "set", "lo", "up"]);
        lab
    }

    fn start_dnsmasq(&mut self) {
        let leases = self.dir.path().join("leases");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server_ns,
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
            ])
            .args([
                "--user=root",
                "--pid-file",
                "--no-resolv",
                "--no-hosts",
                "--interface=vs",
            ])
            .args(["--bind-interfaces", "--dhcp-authoritative", "--log-dhcp"])
            .arg("--dhcp-range=10.213.7.50,10.213.7.60,255.255.255.0,1h")
            .arg(format!("--dhcp-option=option:router,{ROUTER}"))
            .arg(format!("--dhcp-option=option:dns-server,{SERVER_IP}"))
            .arg("--domain=p2xen.test")
            .arg("--host-record=dom0.p2xen.test,10.213.7.9")
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .stdout(Stdio::null())
            .stderr(File::create(self.dir.path().join("dnsmasq.log")).unwrap())
            .spawn()
            .expect("ip netns exec dnsmasq");
        self.dnsmasq = Some(child);
        // Fail loudly when dnsmasq is missing instead of timing out in DHCP.
        std::thread::sleep(Duration::from_millis(300));
        if let Some(status) = self.dnsmasq.as_mut().unwrap().try_wait().unwrap() {
            panic!(
                "dnsmasq exited ({status}); is package dnsmasq-base installed? log:\n{}",
                self.log()
            );
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }

    fn request(&self) -> NetRequest {
        NetRequest {
            interfaces: Some(vec!["vc".into()]),
            carrier_timeout: Duration::from_secs(5),
            dhcp_timeout: Duration::from_secs(20),
            dhcp_first_retry: Duration::from_millis(500),
            dhcp_max_retry: Duration::from_secs(2),
            resolv_conf: self.dir.path().join("etc/resolv.conf"),
            ..NetRequest::default()
        }
    }

    /// Runs `f` on a thread that has joined the client namespace (setns
    /// affects the calling thread only).
    fn in_client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_ns(&self.client_ns, f)
    }

    fn server(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.server_ns];
        full.extend_from_slice(args);
        run(&full)
    }

    /// dnsmasq as an IPv6 router only: router advertisements for
    /// 2001:db8:7::/64, no DHCP of either family.
    fn start_router_advertisements(&mut self) {
        self.server(&[
            "-6",
            "addr",
            "add",
            "2001:db8:7::1/64",
            "dev",
            "vs",
            "nodad",
        ]);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server_ns, "dnsmasq", "--no-daemon"])
            .args([
                "--conf-file=/dev/null",
                "--user=root",
                "--pid-file",
                "--port=0",
            ])
            .args(["--interface=vs", "--bind-interfaces", "--enable-ra"])
            .arg("--dhcp-range=2001:db8:7::,ra-only,64,1h")
            .stdout(Stdio::null())
            .stderr(File::create(self.dir.path().join("dnsmasq.log")).unwrap())
            .spawn()
            .expect("ip netns exec dnsmasq");
        self.dnsmasq = Some(child);
    }

    /// dnsmasq as a DHCPv6 server of 2001:db8:7::100-1ff with a name
    /// server, and router advertisements with the managed flag that give the
    /// on-link prefix and default route (DHCPv6 carries neither).
    fn start_dhcp6(&mut self) {
        self.server(&[
            "-6",
            "addr",
            "add",
            "2001:db8:7::1/64",
            "dev",
            "vs",
            "nodad",
        ]);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server_ns, "dnsmasq", "--no-daemon"])
            .args([
                "--conf-file=/dev/null",
                "--user=root",
                "--pid-file",
                "--port=0",
                "--log-dhcp",
            ])
            .args(["--interface=vs", "--bind-interfaces", "--enable-ra"])
            .arg("--dhcp-range=2001:db8:7::100,2001:db8:7::1ff,64,1h")
            .arg("--dhcp-option=option6:dns-server,[2001:db8:7::53]")
            .arg("--dhcp-option=option6:domain-search,lab6.example")
            .stdout(Stdio::null())
            .stderr(File::create(self.dir.path().join("dnsmasq.log")).unwrap())
            .spawn()
            .expect("ip netns exec dnsmasq");
        self.dnsmasq = Some(child);
    }

    fn client(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.client_ns];
        full.extend_from_slice(args);
        run(&full)
    }
}

/// Runs `f` on a thread that has joined namespace `ns` (setns affects the
/// calling thread only).
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = PathBuf::from("/run/netns").join(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = File::open(&path).unwrap();
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn vc(status: &NetStatus) -> &net::InterfaceStatus {
    assert_eq!(status.interfaces.len(), 1, "{status:?}");
    &status.interfaces[0]
}

/// Looks `host` up with std's resolver after bind-mounting `resolv` over
/// /etc/resolv.conf in a private mount namespace of this thread only.
fn resolve_with(resolv: &Path, host: &str) -> Result<Vec<std::net::SocketAddr>, net::ResolvError> {
    use nix::mount::{MsFlags, mount};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare mount namespace");
    // Private first, so the bind mount cannot propagate to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make / private");
    assert!(
        Path::new("/etc/resolv.conf").exists(),
        "/etc/resolv.conf is needed as a mount point"
    );
    mount(
        Some(resolv),
        "/etc/resolv.conf",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .expect("bind resolv.conf");
    net::resolve(host, 7460)
}

#[test]
fn dhcp_lease_lands_on_interface_routes_and_resolv_conf() {
    let mut lab = Lab::new();
    lab.start_dnsmasq();
    let req = lab.request();
    let resolv = req.resolv_conf.clone();
    let (status, resolved) = lab.in_client(|| {
        let status = net::configure(&req);
        let resolved = status
            .as_ref()
            .ok()
            .map(|_| resolve_with(&resolv, "dom0.p2xen.test"));
        (status, resolved)
    });
    let status = status.unwrap_or_else(|e| panic!("{e}\ndnsmasq log:\n{}", lab.log()));
    let i = vc(&status);
    let addr = i
        .address
        .unwrap_or_else(|| panic!("no address: {status:?}\n{}", lab.log()));
    assert!(
        (50..=60).contains(&addr.octets()[3]) && addr.octets()[..3] == [10, 213, 7],
        "{addr}"
    );
    assert_eq!(i.prefix_len, Some(24));
    assert_eq!(i.gateway, Some(ROUTER));
    assert_eq!(i.dns, vec![Ipv4Addr::new(10, 213, 7, 1)]);
    assert!(i.carrier);
    assert_eq!(
        i.configured,
        Configured::Dhcp {
            server: Ipv4Addr::new(10, 213, 7, 1),
            lease_secs: Some(3600)
        }
    );
    assert!(status.is_up());

    // What the kernel has, seen by iproute2.
    let addrs = lab.client(&["-4", "-o", "addr", "show", "dev", "vc"]);
    assert!(
        addrs.contains(&format!("inet {addr}/24 brd 10.213.7.255")),
        "{addrs}"
    );
    let routes = lab.client(&["-4", "route", "show", "default"]);
    assert_eq!(
        routes.trim(),
        format!("default via {ROUTER} dev vc proto dhcp metric 100")
    );
    assert!(lab.client(&["link", "show", "lo"]).contains(",UP"));

    // The server's lease file names our MAC and the same address.
    let leases = std::fs::read_to_string(lab.dir.path().join("leases")).unwrap();
    assert!(leases.contains(&format!(" {} {addr} ", i.mac)), "{leases}");

    assert_eq!(
        std::fs::read_to_string(&resolv).unwrap(),
        "# written by p2xen\nsearch p2xen.test\nnameserver 10.213.7.1\n"
    );
    assert_eq!(status.resolv_conf.as_deref(), Some(resolv.as_path()));
    assert_eq!(status.search, vec!["p2xen.test".to_string()]);

    // Name resolution through the written resolv.conf reaches dnsmasq.
    let resolved = resolved
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.log()));
    assert_eq!(resolved, vec!["10.213.7.9:7460".parse().unwrap()]);

    // Configuring again (a retry after a failure) must not fail on what exists.
    let again = lab.in_client(|| net::configure(&req)).unwrap();
    assert_eq!(vc(&again).address, Some(addr));
}

#[test]
fn static_configuration_from_ip_param() {
    let lab = Lab::new();
    let mut req = lab.request();
    req.methods = vec![NetMethod::Static(StaticIp {
        address: Ipv4Addr::new(10, 213, 7, 20),
        prefix_len: 24,
        gateway: Some(ROUTER),
        server: None,
        hostname: Some("src1".into()),
        device: Some("vc".into()),
        dns: vec![Ipv4Addr::new(10, 213, 7, 1), Ipv4Addr::new(10, 213, 7, 2)],
        ntp: None,
    })];
    let status = lab.in_client(|| net::configure(&req)).unwrap();
    let i = vc(&status);
    assert_eq!(i.configured, Configured::Static);
    assert_eq!(i.address, Some(Ipv4Addr::new(10, 213, 7, 20)));
    let addrs = lab.client(&["-4", "-o", "addr", "show", "dev", "vc"]);
    assert!(addrs.contains("inet 10.213.7.20/24"), "{addrs}");
    // iproute2 hides the default "proto boot" unless asked for details.
    let routes = lab.client(&["-4", "-d", "route", "show", "default"]);
    assert_eq!(
        routes.trim(),
        format!("unicast default via {ROUTER} dev vc proto boot scope global metric 100")
    );
    assert_eq!(
        std::fs::read_to_string(&req.resolv_conf).unwrap(),
        "# written by p2xen\nnameserver 10.213.7.1\nnameserver 10.213.7.2\n"
    );
    assert_eq!(status.hostname.as_deref(), Some("src1"));
}

#[test]
fn no_dhcp_server_is_reported_per_interface() {
    let lab = Lab::new();
    let mut req = lab.request();
    req.dhcp_timeout = Duration::from_secs(2);
    let status = lab.in_client(|| net::configure(&req)).unwrap();
    let i = vc(&status);
    match &i.configured {
        Configured::Failed { error } => {
            assert!(
                error.starts_with("vc: DHCP: no lease within 2 s ("),
                "{error}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(!status.is_up());
    assert_eq!(status.resolv_conf, None);
    assert!(
        !req.resolv_conf.exists(),
        "no DNS known: resolv.conf left alone"
    );
}

#[test]
fn interface_without_carrier_is_reported_not_configured() {
    let lab = Lab::new();
    // The peer down: the client end has no carrier.
    run(&["ip", "-n", &lab.server_ns, "link", "set", "vs", "down"]);
    let mut req = lab.request();
    req.carrier_timeout = Duration::from_secs(1);
    let status = lab.in_client(|| net::configure(&req)).unwrap();
    let i = vc(&status);
    assert!(!i.carrier);
    assert_eq!(i.configured, Configured::NoCarrier);
    assert_eq!(i.address, None);
    assert!(
        status.summary()[0].ends_with(": no carrier"),
        "{:?}",
        status.summary()
    );
}

#[test]
fn missing_interface_is_an_error_naming_the_others() {
    let lab = Lab::new();
    let mut req = lab.request();
    req.methods = vec![NetMethod::Dhcp {
        device: Some("eth9".into()),
    }];
    let e = lab.in_client(|| net::configure(&req)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "network: interface eth9 (from ip=) does not exist; interfaces: lo, vc"
    );
}

/// A TCP connection from the client namespace reaches a listener on the
/// server's 2001:db8:7::1 with `source` as its peer address.
fn assert_connects_from(lab: &Lab, source: std::net::Ipv6Addr) {
    let listener = in_ns(&lab.server_ns, || {
        std::net::TcpListener::bind("[2001:db8:7::1]:0").unwrap()
    });
    let port = listener.local_addr().unwrap().port();
    let accept = std::thread::spawn(move || listener.accept().unwrap().1);
    lab.in_client(|| std::net::TcpStream::connect(("2001:db8:7::1", port)).unwrap());
    assert_eq!(accept.join().unwrap().ip(), std::net::IpAddr::V6(source));
}

#[test]
fn static_ipv6_from_ip_param_reaches_the_receiver_side() {
    let lab = Lab::new();
    lab.server(&[
        "-6",
        "addr",
        "add",
        "2001:db8:7::1/64",
        "dev",
        "vs",
        "nodad",
    ]);
    let c = Cmdline::parse(
        "ip=[2001:db8:7::5]::[2001:db8:7::1]:64:src6:vc:none nameserver=[2001:db8:7::53] nameserver=10.213.7.1",
    )
    .unwrap();
    let mut req = lab.request();
    req.methods = NetRequest::from_cmdline(&c).methods;
    req.devices = c.net.clone();
    let status = lab.in_client(|| net::configure(&req)).unwrap();
    let i = vc(&status);
    let want: std::net::Ipv6Addr = "2001:db8:7::5".parse().unwrap();
    assert_eq!(i.ipv6, vec![(want, 64)]);
    assert_eq!(i.configured6, Some(Configured::Static));
    assert_eq!(i.address, None);
    assert!(status.is_up());
    let addrs = lab.client(&["-6", "-o", "addr", "show", "dev", "vc", "scope", "global"]);
    assert!(
        addrs.contains("inet6 2001:db8:7::5/64 scope global"),
        "{addrs}"
    );
    assert!(!addrs.contains("tentative"), "{addrs}");
    let routes = lab.client(&["-6", "-d", "route", "show", "default"]);
    assert!(
        routes.starts_with(
            "unicast default via 2001:db8:7::1 dev vc proto boot scope global metric 100"
        ),
        "{routes}"
    );
    // nameserver= first, in the order given, then the ip= entry's own.
    assert_eq!(
        std::fs::read_to_string(&req.resolv_conf).unwrap(),
        "# written by p2xen\nnameserver 2001:db8:7::53\nnameserver 10.213.7.1\n"
    );
    assert_connects_from(&lab, want);
}

#[test]
fn slaac_address_and_default_route_from_router_advertisements() {
    let mut lab = Lab::new();
    lab.start_router_advertisements();
    let c = Cmdline::parse("ip=vc:auto6").unwrap();
    let mut req = lab.request();
    req.methods = NetRequest::from_cmdline(&c).methods;
    let status = lab.in_client(|| net::configure(&req)).unwrap();
    let i = vc(&status);
    assert_eq!(
        i.configured6,
        Some(Configured::Slaac),
        "{status:?}\ndnsmasq log:\n{}",
        lab.log()
    );
    let (addr, len) = i.ipv6[0];
    assert_eq!(len, 64);
    assert_eq!(addr.segments()[..4], [0x2001, 0xdb8, 7, 0], "{addr}");
    let routes = lab.client(&["-6", "route", "show", "default"]);
    assert!(
        routes.starts_with("default via fe80::") && routes.contains("dev vc proto ra"),
        "{routes}"
    );
    assert_connects_from(&lab, addr);
}

/// `ip=vc:dhcp6`: the leased address is on the interface (a /128, past
/// DAD), dnsmasq's name server is in resolv.conf, and the receiver side
/// sees connections from that address.
#[test]
fn dhcp6_lease_lands_on_the_interface_and_reaches_the_receiver_side() {
    let mut lab = Lab::new();
    lab.start_dhcp6();
    let c = Cmdline::parse("ip=vc:dhcp6").unwrap();
    let mut req = lab.request();
    req.methods = NetRequest::from_cmdline(&c).methods;
    let started = std::time::Instant::now();
    let status = lab.in_client(|| net::configure(&req)).unwrap();
    let took = started.elapsed();
    let i = vc(&status);
    let Some(Configured::Dhcp6 { valid_secs, .. }) = &i.configured6 else {
        panic!("{status:?}\ndnsmasq log:\n{}", lab.log());
    };
    assert_eq!(*valid_secs, 3600);
    assert_eq!(i.address, None, "no IPv4 was asked for");
    let [(leased, 128)] = i.ipv6[..] else {
        panic!("{:?}", i.ipv6)
    };
    let seg = leased.segments();
    assert_eq!(seg[..7], [0x2001, 0xdb8, 7, 0, 0, 0, 0], "{leased}");
    assert!((0x100..=0x1ff).contains(&seg[7]), "{leased}");
    let addrs = lab.client(&["-6", "-o", "addr", "show", "dev", "vc", "scope", "global"]);
    assert!(
        addrs.contains(&format!("inet6 {leased}/128 scope global")),
        "{addrs}"
    );
    assert!(!addrs.contains("tentative"), "{addrs}");
    assert_eq!(
        std::fs::read_to_string(&req.resolv_conf).unwrap(),
        "# written by p2xen\nsearch lab6.example\nnameserver 2001:db8:7::53\n"
    );
    assert!(
        lab.log().contains(&format!("DHCPREPLY(vs) {leased}")),
        "{}",
        lab.log()
    );
    eprintln!("dhcp6: {leased} leased and configured in {took:?}");
    // DHCPv6 gives no prefix: the on-link route comes from dnsmasq's router
    // advertisements, which may still be on their way when the lease is in
    // (the live system's sender retries its connection meanwhile).
    let t0 = std::time::Instant::now();
    let route = loop {
        let r = lab.client(&["-6", "route", "show", "dev", "vc"]);
        if r.contains("2001:db8:7::/64") || t0.elapsed() > std::time::Duration::from_secs(20) {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        route.contains("2001:db8:7::/64"),
        "no on-link route from router advertisements after 20 s: {route}"
    );
    assert_connects_from(&lab, leased);
}

/// No DHCPv6 server: the interface reports the timeout with the counts.
#[test]
fn no_dhcp6_server_is_reported_per_interface() {
    let mut lab = Lab::new();
    lab.start_router_advertisements();
    let c = Cmdline::parse("ip=vc:dhcp6").unwrap();
    let mut req = lab.request();
    req.methods = NetRequest::from_cmdline(&c).methods;
    req.dhcp_timeout = Duration::from_secs(3);
    let status = lab.in_client(|| net::configure(&req)).unwrap();
    let Some(Configured::Failed { error }) = &vc(&status).configured6 else {
        panic!("{status:?}")
    };
    assert!(
        error.starts_with("vc: DHCPv6: no address within 3 s (")
            && error.contains(" Solicit, 0 Advertise, 0 Request"),
        "{error}"
    );
}

#[test]
fn no_router_advertisement_is_reported_per_interface() {
    let lab = Lab::new();
    let mut req = lab.request();
    req.methods = vec![NetMethod::Auto6 { device: None }];
    req.ra_timeout = Duration::from_secs(2);
    let status = lab.in_client(|| net::configure(&req)).unwrap();
    let i = vc(&status);
    assert_eq!(
        i.configured6,
        Some(Configured::Failed {
            error: "vc: no router advertisement gave an address within 2 s (is a router sending RAs on this link?)".into()
        })
    );
    assert!(!status.is_up());
}

#[test]
fn ifname_renames_by_mac_and_rd_route_follows_the_new_name() {
    let lab = Lab::new();
    let link = lab.client(&["-o", "link", "show", "vc"]);
    let mac = link
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {link}"))
        .to_string();
    let c = Cmdline::parse(&format!(
        "ifname=lan0:{mac} ip=10.213.7.21::10.213.7.1:24::lan0:none rd.route=192.0.2.0/24:10.213.7.254:lan0"
    ))
    .unwrap();
    let mut req = NetRequest::from_cmdline(&c);
    req.interfaces = None;
    req.carrier_timeout = Duration::from_secs(5);
    req.resolv_conf = lab.dir.path().join("etc/resolv.conf");
    let status = lab.in_client(|| net::configure(&req)).unwrap();
    let i = vc_named(&status, "lan0");
    assert_eq!(i.address, Some(Ipv4Addr::new(10, 213, 7, 21)));
    assert_eq!(i.mac, mac);
    let links = lab.client(&["-o", "link", "show"]);
    assert!(
        links.contains(": lan0@") && !links.contains(": vc@"),
        "{links}"
    );
    // iproute2 hides "proto boot", the default protocol.
    let routes = lab.client(&["-4", "route", "show", "192.0.2.0/24"]);
    assert_eq!(
        routes.trim(),
        "192.0.2.0/24 via 10.213.7.254 dev lan0 metric 100"
    );
    // Running again (a retry) finds lan0 already named and changes nothing.
    let again = lab.in_client(|| net::configure(&req)).unwrap();
    assert_eq!(vc_named(&again, "lan0").address, i.address);

    let wrong = Cmdline::parse("ifname=lan1:02:00:00:00:00:99").unwrap();
    let mut req = NetRequest::from_cmdline(&wrong);
    req.resolv_conf = lab.dir.path().join("etc/resolv.conf");
    let e = lab.in_client(|| net::configure(&req)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "network: ifname=lan1:02:00:00:00:00:99: no interface has MAC 02:00:00:00:00:99; interfaces: lo, lan0"
    );
}

fn vc_named<'a>(status: &'a NetStatus, name: &str) -> &'a net::InterfaceStatus {
    status
        .interfaces
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no {name} in {status:?}"))
}
