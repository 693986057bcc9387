//! The storage controller a disk hangs off: the PCI function its sysfs
//! device path passes through, the kernel driver bound to it, and a name an
//! administrator recognises from the machine's spec sheet. Old RAID boards
//! (Smart Array, 3ware, PERC) show their arrays as plain disks; naming the
//! board tells the administrator which array a disk is.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The host adapter of one disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Controller {
    /// The kernel driver bound to the PCI function ("hpsa", "3w-9xxx").
    pub driver: String,
    /// The PCI function ("0000:03:00.0").
    pub pci_address: String,
    /// What the driver drives, for the boards servers carry; `None` for a
    /// driver not in p2xen's table.
    pub name: Option<String>,
}

/// Drivers of RAID controllers and HBAs, by normalised name ('-' as '_').
const NAMES: &[(&str, &str)] = &[
    ("hpsa", "HP Smart Array"),
    ("cciss", "HP Smart Array (cciss)"),
    ("smartpqi", "Microchip/HPE Smart Array SmartPQI"),
    (
        "megaraid_sas",
        "LSI/Broadcom MegaRAID SAS (Dell PERC 5 and later)",
    ),
    ("megaraid_mbox", "LSI MegaRAID (Dell PERC 4)"),
    ("megaraid", "LSI MegaRAID (legacy)"),
    ("mptsas", "LSI Fusion-MPT SAS"),
    ("mptspi", "LSI Fusion-MPT parallel SCSI"),
    ("mptfc", "LSI Fusion-MPT Fibre Channel"),
    ("mpt3sas", "LSI/Broadcom SAS HBA"),
    ("mpi3mr", "Broadcom MPI3 RAID/HBA"),
    ("aacraid", "Adaptec RAID (Dell PERC 2/3, IBM ServeRAID 8)"),
    ("ips", "IBM ServeRAID"),
    ("3w_9xxx", "3ware 9000 series RAID"),
    ("3w_xxxx", "3ware Escalade 5000-8000 RAID"),
    ("3w_sas", "3ware/LSI 9750 SAS RAID"),
    ("arcmsr", "Areca RAID"),
    ("aic79xx", "Adaptec Ultra320 SCSI"),
    ("aic7xxx", "Adaptec SCSI"),
    ("sym53c8xx", "LSI/Symbios SCSI"),
    ("hptiop", "HighPoint RocketRAID"),
    ("mvsas", "Marvell SAS"),
    ("pm80xx", "PMC-Sierra/Microchip SAS"),
    ("isci", "Intel C600 SAS"),
    ("esas2r", "ATTO ExpressSAS RAID"),
    ("qla1280", "QLogic parallel SCSI"),
    ("ahci", "AHCI SATA"),
    ("ata_piix", "Intel PIIX IDE/SATA"),
    ("nvme", "NVMe"),
    ("virtio_pci", "virtio"),
];

/// The name of what `driver` drives, if p2xen knows the driver.
pub fn describe(driver: &str) -> Option<&'static str> {
    let key = driver.replace('-', "_");
    NAMES.iter().find(|(d, _)| *d == key).map(|(_, n)| *n)
}

/// The controller of the device whose sysfs directory is `dev` (a
/// canonical path under `/sys/devices`): the nearest ancestor bound to a
/// PCI driver. `None` for image files, platform devices and unbound ones.
pub fn of_device(dev: &Path) -> Option<Controller> {
    dev.ancestors().find_map(|dir| {
        let target = fs::read_link(dir.join("driver")).ok()?;
        // .../bus/pci/drivers/NAME: a driver of another bus (scsi, virtio)
        // is a layer below the controller.
        let bus = target.parent()?.parent()?;
        if bus.file_name()? != "pci" {
            return None;
        }
        let driver = target.file_name()?.to_string_lossy().into_owned();
        Some(Controller {
            name: describe(&driver).map(str::to_string),
            pci_address: dir.file_name()?.to_string_lossy().into_owned(),
            driver,
        })
    })
}

impl Controller {
    /// "hpsa at 0000:03:00.0 (HP Smart Array)".
    pub fn summary(&self) -> String {
        match &self.name {
            Some(n) => format!("{} at {} ({n})", self.driver, self.pci_address),
            None => format!("{} at {}", self.driver, self.pci_address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs device tree: `pci` functions bound to `driver`, and below
    /// one of them a SCSI device bound to the scsi bus's sd driver.
    #[test]
    fn the_nearest_pci_driver_names_the_controller() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let bind = |dev: &Path, bus: &str, driver: &str| {
            let d = root.join("bus").join(bus).join("drivers").join(driver);
            fs::create_dir_all(&d).unwrap();
            fs::create_dir_all(dev).unwrap();
            symlink(&d, dev.join("driver")).unwrap();
        };
        let bridge = root.join("devices/pci0000:00/0000:00:1c.0");
        let hba = bridge.join("0000:03:00.0");
        let sdev = hba.join("host0/target0:0:0/0:0:0:0");
        bind(&bridge, "pci", "pcieport");
        bind(&hba, "pci", "3w-9xxx");
        bind(&sdev, "scsi", "sd");
        let block = sdev.join("block/sda");
        fs::create_dir_all(&block).unwrap();

        let c = of_device(&block).unwrap();
        assert_eq!(c.driver, "3w-9xxx");
        assert_eq!(c.pci_address, "0000:03:00.0");
        assert_eq!(
            c.summary(),
            "3w-9xxx at 0000:03:00.0 (3ware 9000 series RAID)"
        );

        // An unbound function and a driver p2xen does not know.
        let other = root.join("devices/pci0000:00/0000:00:1f.2");
        let disk = other.join("ata1/host1/target1:0:0/1:0:0:0/block/sdb");
        fs::create_dir_all(&disk).unwrap();
        assert_eq!(of_device(&disk), None);
        bind(&other, "pci", "acme_raid");
        assert_eq!(
            of_device(&disk).unwrap().summary(),
            "acme_raid at 0000:00:1f.2"
        );
    }

    #[test]
    fn names_follow_modprobe_spelling() {
        assert_eq!(describe("hpsa"), Some("HP Smart Array"));
        assert_eq!(describe("3w-xxxx"), describe("3w_xxxx"));
        assert_eq!(describe("e1000"), None);
    }
}
