//! Coldplug over a fake sysfs tree and module directory, with a fake loader
//! whose `p2xt_stuckblk` blocks like a driver whose probe never returns.
//! Module names are `p2xt_*` so the host's /sys/module cannot match.

use super::*;
use std::sync::Mutex;
use std::sync::mpsc;

const ALIASES: &str = "\
alias pci:v00001AF4d00001001sv*sd*bc*sc*i* p2xt_stuckblk
alias pci:v00008086d0000100Esv*sd*bc*sc*i* p2xt_nic
alias virtio:d00000009v* p2xt_needs_stuck
alias pci:v0000DEADd*sv*sd*bc*sc*i* p2xt_banned
";

const DEPS: &str = "\
kernel/p2xt_core.ko:
kernel/p2xt_stuckblk.ko: kernel/p2xt_core.ko
kernel/p2xt_nic.ko:
kernel/p2xt_needs_stuck.ko: kernel/p2xt_stuckblk.ko kernel/p2xt_core.ko
kernel/p2xt_banned.ko:
";

/// Two disks wanting the stuck driver, a NIC, a device whose driver needs
/// the stuck one, and a blacklisted one.
const DEVICES: &[(&str, &str)] = &[
    (
        "pci0/0000:00:02.0",
        "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
    ),
    (
        "pci0/0000:00:03.0",
        "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
    ),
    (
        "pci0/0000:00:05.0",
        "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
    ),
    (
        "pci0/0000:00:06.0",
        "pci:v0000DEADd00000001sv00000000sd00000000bc02sc00i00",
    ),
    ("pci0/0000:00:07.0/virtio9", "virtio:d00000009v00001AF4"),
];

struct Fixture {
    _dir: tempfile::TempDir,
    devices: PathBuf,
    cp: Coldplug,
    calls: Arc<Mutex<Vec<String>>>,
    /// Sending (or dropping) lets the stuck load finish.
    release: mpsc::Sender<()>,
}

fn fixture(blacklist: &[&str], timeout: Duration) -> Fixture {
    fixture_with(blacklist, timeout, "")
}

/// The fixture with module parameters from kernel command line `cmdline`;
/// the loader records `NAME PARAMS` for a load with parameters.
fn fixture_with(blacklist: &[&str], timeout: Duration, cmdline: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let moddir = dir.path().join("modules");
    std::fs::create_dir_all(&moddir).unwrap();
    std::fs::write(moddir.join("modules.alias"), ALIASES).unwrap();
    std::fs::write(moddir.join("modules.dep"), DEPS).unwrap();
    let devices = dir.path().join("devices");
    for (path, alias) in DEVICES {
        let d = devices.join(path);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("modalias"), format!("{alias}\n")).unwrap();
    }
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let seen = Arc::clone(&calls);
    let loader: Arc<LoadFn> = Arc::new(move |path: &Path, params: &str| {
        let name = deps::module_name(&path.to_string_lossy());
        seen.lock().unwrap().push(if params.is_empty() {
            name.clone()
        } else {
            format!("{name} {params}")
        });
        if name == "p2xt_stuckblk" {
            let _ = gate.lock().unwrap().recv();
        }
        Ok(())
    });
    let policy = Policy {
        blacklist: blacklist.iter().map(|s| s.to_string()).collect(),
        load_timeout: timeout,
        options: options::ModuleOptions::from_cmdline(&crate::bootparams::split(cmdline)),
    };
    let cp = Coldplug::open(&moddir, &policy)
        .unwrap()
        .with_loader(loader);
    Fixture {
        _dir: dir,
        devices,
        cp,
        calls,
        release,
    }
}

#[test]
fn a_stuck_driver_is_skipped_and_the_rest_loads() {
    let mut f = fixture(&["p2xt-banned"], Duration::from_millis(200));
    let loaded = f.cp.settle_in(
        &f.devices,
        None,
        Duration::from_millis(10),
        Duration::from_secs(30),
    );
    assert_eq!(loaded, ["p2xt_core", "p2xt_nic"]);
    // The stuck driver was started once: the second disk and the module
    // that needs it did not wait for it again; the banned one never ran.
    assert_eq!(
        *f.calls.lock().unwrap(),
        ["p2xt_core", "p2xt_stuckblk", "p2xt_nic"]
    );
    let problems = f.cp.problems();
    assert!(
        problems.starts_with(" | stuck: p2xt_stuckblk (0 s, 3 device(s))"),
        "{problems}"
    );
    assert!(
        problems.ends_with(" | blacklisted: p2xt_banned"),
        "{problems}"
    );
    let devices = &f.cp.stuck_for["p2xt_stuckblk"];
    assert!(
        devices[0]
            .ends_with("pci0/0000:00:02.0 (pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00)")
    );
    assert!(devices[2].ends_with("virtio9 (virtio:d00000009v00001AF4)"));

    // Asked again while still stuck: an error at once, naming the module.
    match f.cp.load("p2xt_needs_stuck", &mut Vec::new()) {
        Err(e @ ColdplugError::Stuck { first: false, .. }) => assert!(
            e.to_string().starts_with(
                "module p2xt_stuckblk (needed by p2xt_needs_stuck) has not finished loading after"
            ),
            "{e}"
        ),
        other => panic!("expected stuck, got {other:?}"),
    }

    // The probe returns at last: the next request collects the success and
    // loads what needed it.
    f.release.send(()).unwrap();
    let t0 = Instant::now();
    let mut inserted = Vec::new();
    loop {
        match f.cp.load("p2xt_needs_stuck", &mut inserted) {
            Ok(()) => break,
            Err(ColdplugError::Stuck { .. }) => {
                assert!(t0.elapsed() < Duration::from_secs(10), "late load lost");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(inserted, ["p2xt_stuckblk", "p2xt_needs_stuck"]);
    assert_eq!(f.cp.problems(), " | blacklisted: p2xt_banned");
}

#[test]
fn blacklisted_dependency_stops_its_dependants() {
    let mut f = fixture(&["p2xt_core"], Duration::from_secs(5));
    let mut inserted = Vec::new();
    match f.cp.load("p2xt-stuckblk", &mut inserted) {
        Err(e) => assert_eq!(
            e.to_string(),
            "module p2xt_core (needed by p2xt_stuckblk) is not loaded: p2xen.blacklist"
        ),
        Ok(()) => panic!("loaded {inserted:?} despite the blacklist"),
    }
    assert!(f.calls.lock().unwrap().is_empty());
    f.cp.load("p2xt_nic", &mut inserted).unwrap();
    assert_eq!(inserted, ["p2xt_nic"]);
    assert_eq!(f.cp.problems(), " | blacklisted: p2xt_core");
    drop(f.release);
}

#[test]
fn command_line_parameters_reach_the_module_load() {
    let mut f = fixture_with(
        &[],
        Duration::from_secs(5),
        "quiet p2xt-core.debug=1 p2xt_nic.mode=\"x y\" p2xen.settle=5 p2xt_nic.fast",
    );
    let mut inserted = Vec::new();
    f.cp.load("p2xt_stuckblk", &mut inserted).ok();
    f.release.send(()).ok();
    f.cp.load("p2xt_nic", &mut inserted).unwrap();
    assert_eq!(
        *f.calls.lock().unwrap(),
        [
            "p2xt_core debug=1",
            "p2xt_stuckblk",
            "p2xt_nic mode=\"x y\" fast"
        ]
    );
}
