//! Coldplug tables against the real ones of Debian's kernel package
//! (unpacked and depmod'ed once by `build/kernel-tree`, cached).

use p2xen::init::coldplug::alias::AliasTable;
use p2xen::init::coldplug::deps::ModuleDeps;
use std::path::PathBuf;
use std::process::Command;

fn moddir() -> PathBuf {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/build/kernel-tree"))
        .output()
        .expect("build/kernel-tree (needs dpkg, apt-get, kmod)");
    assert!(
        out.status.success(),
        "build/kernel-tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let modules = tree.join("lib/modules");
    let ver = std::fs::read_dir(&modules)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    modules.join(ver)
}

/// Each modalias resolves (among others) to its module.
fn assert_drivers(t: &AliasTable, cases: &[(&str, &str)]) {
    for (modalias, module) in cases {
        let found = t.lookup(modalias);
        assert!(
            found.contains(module),
            "{modalias}: {found:?}, expected {module}"
        );
    }
}

#[test]
fn real_alias_table_matches_qemu_devices() {
    let dir = moddir();
    let t = AliasTable::parse(&std::fs::read_to_string(dir.join("modules.alias")).unwrap());
    assert!(t.len() > 10_000, "only {} aliases", t.len());
    // Modaliases as QEMU's devices present them (read from a VM's sysfs).
    let cases = [
        ("virtio:d00000002v00001AF4", "virtio_blk"),
        ("virtio:d00000001v00001AF4", "virtio_net"),
        (
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
            "virtio_pci",
        ),
        (
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
            "ahci",
        ),
        (
            "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80",
            "ata_piix",
        ),
        (
            "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
            "e1000",
        ),
        (
            "pci:v00008086d000010D3sv00001AF4sd00001100bc02sc00i00",
            "e1000e",
        ),
        (
            "pci:v000010ECd00008139sv00001AF4sd00001100bc02sc00i00",
            "8139cp",
        ),
        (
            "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02",
            "nvme",
        ),
        (
            "pci:v00001000d00000060sv00001AF4sd00001100bc01sc04i00",
            "megaraid_sas",
        ),
        ("scsi:t-0x00", "sd_mod"),
    ];
    assert_drivers(&t, &cases);
    assert!(
        t.lookup("pci:v0000FFFFd0000FFFFsv0000FFFFsd0000FFFFbcFFscFFiFF")
            .is_empty()
    );
}

#[test]
fn real_dep_table_orders_dependencies() {
    let dir = moddir();
    let d = ModuleDeps::parse(&std::fs::read_to_string(dir.join("modules.dep")).unwrap()).unwrap();
    assert!(d.len() > 3000, "only {} modules", d.len());
    let order = d.load_order("virtio_blk").unwrap();
    assert_eq!(order.last().map(String::as_str), Some("virtio_blk"));
    let pos = |m: &str| {
        order
            .iter()
            .position(|x| x == m)
            .unwrap_or_else(|| panic!("{m} not in {order:?}"))
    };
    assert!(pos("virtio_ring") < pos("virtio_blk"));
    let order = d.load_order("megaraid_sas").unwrap();
    let pos = |m: &str| {
        order
            .iter()
            .position(|x| x == m)
            .unwrap_or_else(|| panic!("{m} not in {order:?}"))
    };
    assert!(pos("scsi_mod") < pos("megaraid_sas"));
    assert!(pos("scsi_common") < pos("scsi_mod"));
    // Every module's whole closure resolves: modules.dep is consistent.
    let all = d.under_dir("kernel");
    assert_eq!(all.len(), d.len());
    for m in all {
        d.load_order(&m).unwrap_or_else(|e| panic!("{m}: {e}"));
    }
}

/// The RAID controllers of the seed's era, as their PCI functions present
/// themselves (IDs from the drivers' own tables): the real alias table
/// names a driver for each, and the live image's modules.list carries it.
#[test]
fn old_raid_controllers_have_their_driver_in_the_live_image() {
    let dir = moddir();
    let t = AliasTable::parse(&std::fs::read_to_string(dir.join("modules.alias")).unwrap());
    let dep_path = dir.join("modules.dep");
    let deps = ModuleDeps::parse(&std::fs::read_to_string(&dep_path).unwrap()).unwrap();
    let list = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/initramfs/modules.list"
    ));
    let carried = p2xen::init::mkinitramfs::resolve_module_list(&list, &deps, &dep_path).unwrap();
    let cases = [
        // HP Smart Array P400 (a cciss board: hpsa claims it by class code,
        // and takes it only with hpsa_allow_any=1, which coldplug sets).
        (
            "pci:v0000103Cd00003230sv0000103Csd00003234bc01sc04i00",
            "hpsa",
        ),
        // HP Smart Array P410i.
        (
            "pci:v0000103Cd0000323Asv0000103Csd00003245bc01sc04i00",
            "hpsa",
        ),
        // 3ware 9550SX and 8006.
        (
            "pci:v000013C1d00001003sv000013C1sd00001003bc01sc04i00",
            "3w_9xxx",
        ),
        (
            "pci:v000013C1d00001001sv000013C1sd00001001bc01sc04i00",
            "3w_xxxx",
        ),
        // Adaptec 2820SA.
        (
            "pci:v00009005d00000285sv00009005sd00000298bc01sc04i00",
            "aacraid",
        ),
        // LSI SAS1068E (Fusion-MPT) and a MegaRAID SAS 8708.
        (
            "pci:v00001000d00000058sv00001000sd00003140bc01sc00i00",
            "mptsas",
        ),
        (
            "pci:v00001000d00000060sv00001000sd00001013bc01sc04i00",
            "megaraid_sas",
        ),
        // Dell PERC 4 (LSI MegaRAID, megaraid_mbox).
        (
            "pci:v00001000d00001960sv00001028sd00000518bc01sc04i00",
            "megaraid_mbox",
        ),
    ];
    assert_drivers(&t, &cases);
    for (_, module) in cases {
        assert!(
            carried.contains(module),
            "{module} is not in {}",
            list.display()
        );
    }
}
