//! UEFI sources in the conversion: the firmware the source booted by, the
//! real grub.cfg behind the ESP's stub (for pvgrub2 and the dom0-kernel
//! route's kernel), and the fallback loader written into the copy's ESP.

use super::super::bootcfg::{self, GRUB2_CFGS};
use super::super::change::{Change, Fixup, Planned, map_lines};
use super::super::devmap::DevMap;
use super::super::efi::{self, EfiError, Esp, EspConfig, EspFiles};
use super::super::guestfs::{GuestFs, GuestFsError, gjoin};
use super::super::{Firmware, FixupKind, GuestError, Layout};
use super::Conversion;
use super::volumes::Volume;

const BLS_DIR: &str = "/boot/loader/entries";
/// Where pvgrub2's built-in config looks.
const PVGRUB_CFG: &str = "/boot/grub/grub.cfg";

/// What the conversion knows about the source's firmware and ESP.
#[derive(Debug, Clone)]
pub(super) struct Uefi {
    pub firmware: Firmware,
    pub reason: String,
    esp: Option<Esp>,
    /// The ESP's files and directories (empty when it could not be read).
    files: Vec<String>,
    /// The ESP's `/EFI/<vendor>/grub.cfg` files and their text.
    configs: Vec<(String, String)>,
}

/// The grub.cfg grub really boots from.
#[derive(Debug, Clone)]
pub(super) struct RealCfg {
    /// Guest path, or `ESP (...):/EFI/...` for a config in the ESP.
    pub name: String,
    pub text: String,
    pub in_esp: bool,
}

/// The ESP: a GPT partition of the EFI System type.
fn esp_volume<'v>(conv: &Conversion, vols: &'v [Volume]) -> Option<&'v Volume> {
    vols.iter().find(|v| {
        let (Some(d), Some(n)) = (conv.req.machine.disks.get(v.disk), v.part) else {
            return false;
        };
        d.table.as_deref() == Some("gpt")
            && d.partitions.iter().any(|p| {
                p.number == n
                    && p.type_id
                        .as_deref()
                        .is_some_and(|t| t.trim().eq_ignore_ascii_case(efi::ESP_TYPE_GUID))
            })
    })
}

/// An ESP's files and directories, and its grub.cfg files with their text.
type EspListing = (Vec<String>, Vec<(String, String)>);

fn read_esp(files: &EspFiles) -> Result<EspListing, EfiError> {
    let list = files.list()?;
    let mut configs = Vec::new();
    for f in &list {
        let lower = f.to_ascii_lowercase();
        let is_cfg = lower.starts_with("/efi/")
            && lower.ends_with("/grub.cfg")
            && lower.matches('/').count() == 3;
        if is_cfg {
            let text = String::from_utf8_lossy(&files.read(f)?).into_owned();
            configs.push((f.clone(), text));
        }
    }
    Ok((list, configs))
}

/// The copy's ESP (where there is one) with its files and grub.cfg
/// configs; an ESP that cannot be read is an error only for a source that
/// booted by UEFI, else a warning.
fn open_esp(conv: &mut Conversion, vols: &[Volume], uefi: &mut Uefi) -> Result<(), GuestError> {
    let Some(v) = esp_volume(conv, vols) else {
        return Ok(());
    };
    let esp = Esp {
        image: v.image.clone(),
        offset: v.offset,
        size: v.size,
        what: v.describe(),
    };
    let read = EspFiles::open(esp.clone(), true).and_then(|f| {
        let r = read_esp(&f);
        f.close()?;
        r
    });
    match read {
        Ok((files, configs)) => {
            uefi.files = files;
            uefi.configs = configs;
        }
        // A source that booted by UEFI needs the ESP read; for the
        // others it only confirms.
        Err(e) if conv.req.machine.firmware == Some(Firmware::Uefi) => return Err(e.into()),
        Err(e) => conv.warn(format!("efi: {e}")),
    }
    uefi.esp = Some(esp);
    Ok(())
}

/// The firmware the source booted by: the live system's record where the
/// sender made one, and the ESP's loaders.
pub(super) fn detect(conv: &mut Conversion, vols: &[Volume]) -> Result<Uefi, GuestError> {
    let recorded = conv.req.machine.firmware;
    let mut uefi = Uefi {
        firmware: Firmware::Bios,
        reason: String::new(),
        esp: None,
        files: Vec::new(),
        configs: Vec::new(),
    };
    open_esp(conv, vols, &mut uefi)?;
    let what = uefi.esp.as_ref().map_or("", |e| e.what.as_str());
    let evidence = efi::loaders(&uefi.files)
        .first()
        .map(|l| l.path.clone())
        .or_else(|| {
            uefi.files
                .iter()
                .find(|f| f.eq_ignore_ascii_case(efi::FALLBACK_LOADER))
                .cloned()
        });
    let sys = "/sys/firmware/efi";
    (uefi.firmware, uefi.reason) = match (recorded, &evidence) {
        (Some(Firmware::Uefi), Some(l)) => (
            Firmware::Uefi,
            format!("the live system booted by UEFI ({sys}); the ESP ({what}) holds {l}"),
        ),
        (Some(Firmware::Uefi), None) => {
            conv.warn(format!(
                "efi: the source booted by UEFI but no boot loader was found in an ESP ({}); \
                 the guest may not boot under OVMF",
                if what.is_empty() {
                    "none in the copy"
                } else {
                    what
                }
            ));
            (
                Firmware::Uefi,
                format!("the live system booted by UEFI ({sys})"),
            )
        }
        (None, Some(l)) => (
            Firmware::Uefi,
            format!("GPT disk with an ESP ({what}) holding {l}"),
        ),
        (Some(Firmware::Bios), Some(l)) => (
            Firmware::Bios,
            format!("the live system booted by BIOS (no {sys}), though the ESP ({what}) holds {l}"),
        ),
        (Some(Firmware::Bios), None) => (
            Firmware::Bios,
            format!("the live system booted by BIOS (no {sys})"),
        ),
        (None, None) => (
            Firmware::Bios,
            "no ESP with a boot loader in the copy".to_string(),
        ),
    };
    Ok(uefi)
}

/// A guest file as it will be after the changes planned so far.
fn pending_text(
    gfs: &GuestFs,
    pending: &[Planned],
    path: &str,
) -> Result<Option<String>, GuestFsError> {
    for p in pending.iter().rev() {
        if let Change::Write { path: pp, new, .. } = &p.change {
            if pp == path {
                return Ok(Some(new.clone()));
            }
        }
    }
    gfs.read(path)
}

/// The real grub.cfg: the one the ESP's stub hands over to, the ESP's own
/// where it is a full config, else the guest's grub2 config; and warnings
/// about stubs that lead nowhere.
pub(super) fn real_grub_cfg(
    gfs: &GuestFs,
    uefi: &Uefi,
    vols: &[Volume],
    root: &Volume,
    pending: &[Planned],
) -> Result<(Option<RealCfg>, Vec<String>), GuestError> {
    let mut warnings = Vec::new();
    for (path, text) in &uefi.configs {
        let esp = uefi.esp.as_ref().map_or("", |e| e.what.as_str());
        match efi::classify_esp_config(text) {
            EspConfig::Full => {
                let real = RealCfg {
                    name: format!("ESP ({esp}):{path}"),
                    text: text.clone(),
                    in_esp: true,
                };
                return Ok((Some(real), warnings));
            }
            EspConfig::Stub { uuid, path: target } => {
                let same = |v: &Volume, u: &str| {
                    v.uuid.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(u))
                };
                let guest_path = match uuid.as_deref() {
                    None => Some(target.clone()),
                    Some(u) if same(root, u) => Some(target.clone()),
                    // Only /boot is mounted besides the root.
                    Some(u) if vols.iter().any(|v| same(v, u)) => Some(format!("/boot{target}")),
                    Some(u) => {
                        warnings.push(format!(
                            "efi: {path} in the ESP hands over to {target} on the filesystem \
                             with UUID {u}, which is in none of the copied volumes"
                        ));
                        None
                    }
                };
                if let Some(gp) = guest_path {
                    if let Some(text) = pending_text(gfs, pending, &gp)? {
                        let real = RealCfg {
                            name: gp,
                            text,
                            in_esp: false,
                        };
                        return Ok((Some(real), warnings));
                    }
                    warnings.push(format!(
                        "efi: {path} in the ESP hands over to {gp}, which the copy lacks"
                    ));
                }
            }
        }
    }
    for p in GRUB2_CFGS {
        if let Some(text) = pending_text(gfs, pending, p)? {
            let real = RealCfg {
                name: p.to_string(),
                text,
                in_esp: false,
            };
            return Ok((Some(real), warnings));
        }
    }
    Ok((None, warnings))
}

/// The kernel file name the real config boots by default.
pub(super) fn default_kernel(gfs: &GuestFs, real: &RealCfg) -> Option<String> {
    let kernel = if efi::uses_blscfg(&real.text) {
        bls_entries(gfs, &[]).ok()?.into_iter().next()?.kernel
    } else {
        let (entries, default) = efi::grub2_entries(&real.text);
        entries.into_iter().nth(default)?.kernel
    };
    if kernel.is_empty() {
        return None;
    }
    kernel.rsplit('/').next().map(str::to_string)
}

/// The BLS entries as they will be after the planned changes, in grub's order.
fn bls_entries(
    gfs: &GuestFs,
    pending: &[Planned],
) -> Result<Vec<bootcfg::BootEntry>, GuestFsError> {
    let mut all = Vec::new();
    for name in gfs.list(BLS_DIR)? {
        if !name.ends_with(".conf") {
            continue;
        }
        let path = gjoin(BLS_DIR, &name);
        if let Some(text) = pending_text(gfs, pending, &path)? {
            if let Some(e) = efi::bls_entry(&text, &name) {
                all.push((name, e));
            }
        }
    }
    efi::sort_bls(&mut all);
    Ok(all.into_iter().map(|(_, e)| e).collect())
}

/// For pvgrub2, which reads `/boot/grub/grub.cfg` with the Xen platform's
/// commands only: that file made from the real config where that is
/// elsewhere (the ESP, `/boot/grub2`), uses `linuxefi`, or boots BLS
/// entries through `blscfg`.
pub(super) fn plan_pvgrub_cfg(
    gfs: &GuestFs,
    real: &RealCfg,
    map: &DevMap,
    tty: &str,
    pending: &[Planned],
) -> Result<Option<Planned>, GuestError> {
    let old = pending_text(gfs, pending, PVGRUB_CFG)?;
    let new = if efi::uses_blscfg(&real.text) {
        let entries = bls_entries(gfs, pending)?;
        if entries.is_empty() {
            return Ok(None);
        }
        bootcfg::pvgrub_cfg(&entries, 0, &format!("the BLS entries in {BLS_DIR}"))
    } else {
        let efi_cmds = real.text.lines().any(|l| {
            let w = l.split_whitespace().next();
            matches!(w, Some("linuxefi" | "initrdefi"))
        });
        if real.name == PVGRUB_CFG && !efi_cmds {
            return Ok(None);
        }
        let con = format!("console={tty}");
        let body = map_lines(&real.text, |l| {
            let l = efi::efi_to_pv_commands(l);
            // Configs outside the guest's filesystems (the ESP) were not
            // mapped by the bootloader fix-up.
            if real.in_esp {
                bootcfg::grub2_line(&l, map, &con)
            } else {
                l
            }
        });
        format!(
            "# Copied by p2xen from {} for pvgrub2 (Xen PV boot): linuxefi/initrdefi\n\
             # made linux/initrd. Regenerate after changing the guest's boot config.\n{body}",
            real.name
        )
    };
    if old.as_deref() == Some(new.as_str()) {
        return Ok(None);
    }
    Ok(Some(Planned::new(
        FixupKind::Bootloader,
        Change::Write {
            path: PVGRUB_CFG.to_string(),
            old,
            new,
        },
        format!(
            "pvgrub2 reads {PVGRUB_CFG}; made from the real config {}",
            real.name
        ),
    )))
}

/// Writes the fallback `\EFI\BOOT\BOOTX64.EFI` (and, behind a shim, its
/// grubx64.efi) into the copy's ESP of a UEFI source; recorded as a fix-up
/// like the file changes. A `dry_run` reads but writes nothing.
pub(super) fn add_fallback_loader(conv: &mut Conversion, uefi: &Uefi) -> Result<(), GuestError> {
    if uefi.firmware != Firmware::Uefi
        || conv.settings.layout != Layout::Disk
        || conv.skips(FixupKind::Efi)
    {
        return Ok(());
    }
    let Some(esp) = &uefi.esp else {
        return Ok(());
    };
    let copies = efi::plan_fallback(&uefi.files);
    if copies.is_empty() {
        return Ok(());
    }
    let dry_run = conv.req.dry_run;
    let files = EspFiles::open(esp.clone(), dry_run)?;
    let result = (|| -> Result<Vec<Fixup>, EfiError> {
        let mut out = Vec::new();
        for (from, to) in &copies {
            let data = files.read(from)?;
            if !dry_run {
                files.write(to, &data)?;
                let back = files.read(to)?;
                if back != data {
                    return Err(EfiError::Tool {
                        esp: esp.what.clone(),
                        cmd: format!("read back {to}"),
                        stderr: format!("{} bytes differ from {from}", back.len()),
                    });
                }
            }
            let sha = sha256_hex(&data);
            out.push(Fixup {
                kind: FixupKind::Efi,
                file: format!("ESP ({}):{to}", esp.what),
                action: "create".to_string(),
                note: "NVRAM boot entries stay in the source's firmware: UEFI firmware without \
                       them boots \\EFI\\BOOT\\BOOTX64.EFI"
                    .to_string(),
                diff: format!(
                    "copied {from} ({} bytes, sha256 {sha}) to {to}\n",
                    data.len()
                ),
            });
        }
        Ok(out)
    })();
    let closed = files.close();
    for f in result? {
        conv.fixup(f);
    }
    closed?;
    Ok(())
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn vol(part: u32, uuid: &str) -> Volume {
        Volume {
            disk: 0,
            part: Some(part),
            image: PathBuf::from("/srv/p2xen/g/disk0.img"),
            offset: 0,
            size: 0,
            fs_kind: Some("ext4".to_string()),
            uuid: Some(uuid.to_string()),
            label: None,
            has_os: part == 2,
            raid_member: false,
            inner_uuid: None,
            md_flattened_from: None,
            lv: None,
        }
    }

    fn uefi(configs: &[(&str, &str)]) -> Uefi {
        Uefi {
            firmware: Firmware::Uefi,
            reason: String::new(),
            esp: Some(Esp {
                image: PathBuf::from("/srv/p2xen/g/disk0.img"),
                offset: 1 << 20,
                size: 1 << 20,
                what: "disk0 partition 1".to_string(),
            }),
            files: Vec::new(),
            configs: configs
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
        }
    }

    use crate::guest::guestfs::test_guest as guest;

    const MENU: &str = "menuentry 'x' {\n\tlinux /vmlinuz-6.1 root=/dev/sda2 ro\n}\n";

    #[test]
    fn stubs_lead_to_the_root_or_boot_filesystem_or_warn() {
        let (_t, gfs) = guest(&[
            ("/boot/grub/grub.cfg", MENU),
            ("/boot/grub2/grub.cfg", "blscfg\n"),
        ]);
        let (root, boot) = (vol(2, "r-1"), vol(1, "b-1"));
        let vols = [boot.clone(), root.clone()];
        let stub = |uuid: &str, prefix: &str| {
            format!(
                "search.fs_uuid {uuid} root\nset prefix=($root)'{prefix}'\nconfigfile $prefix/grub.cfg\n"
            )
        };
        let debian = stub("r-1", "/boot/grub");
        let rhel9 = stub("b-1", "/grub2");
        let lost = stub("0-0", "/boot/grub");
        let cases = [
            (debian.as_str(), "/boot/grub/grub.cfg", 0),
            (rhel9.as_str(), "/boot/grub2/grub.cfg", 0),
            // The UUID is nowhere: the guest's own grub.cfg, and a warning.
            (lost.as_str(), "/boot/grub/grub.cfg", 1),
        ];
        for (text, want, warnings) in cases {
            let u = uefi(&[("/EFI/debian/grub.cfg", text)]);
            let (real, w) = real_grub_cfg(&gfs, &u, &vols, &root, &[]).unwrap();
            let real = real.unwrap();
            assert_eq!((real.name.as_str(), real.in_esp), (want, false), "{text}");
            assert_eq!(w.len(), warnings, "{w:?}");
        }
        assert_eq!(
            default_kernel(
                &gfs,
                &RealCfg {
                    name: String::new(),
                    text: MENU.to_string(),
                    in_esp: false,
                }
            )
            .as_deref(),
            Some("vmlinuz-6.1")
        );
    }

    #[test]
    fn an_esp_menu_with_linuxefi_becomes_pvgrub2s_grub_cfg() {
        let (_t, gfs) = guest(&[]);
        let text = "set default=0\nmenuentry 'CentOS 7' {\n\tlinuxefi /vmlinuz-3.10 root=/dev/sda2 ro\n\tinitrdefi /initramfs-3.10.img\n}\n";
        let u = uefi(&[("/EFI/centos/grub.cfg", text)]);
        let root = vol(2, "r-1");
        let (real, _) = real_grub_cfg(&gfs, &u, std::slice::from_ref(&root), &root, &[]).unwrap();
        let real = real.unwrap();
        assert!(real.in_esp);
        assert_eq!(real.name, "ESP (disk0 partition 1):/EFI/centos/grub.cfg");
        let map = DevMap::new(1, true);
        let p = plan_pvgrub_cfg(&gfs, &real, &map, "hvc0", &[])
            .unwrap()
            .unwrap();
        let Change::Write { path, old, new } = &p.change else {
            panic!("{:?}", p.change)
        };
        assert_eq!((path.as_str(), old), ("/boot/grub/grub.cfg", &None));
        assert!(
            new.ends_with(
                "menuentry 'CentOS 7' {\n\tlinux /vmlinuz-3.10 root=/dev/xvda2 ro console=hvc0\n\tinitrd /initramfs-3.10.img\n}\n"
            ),
            "{new}"
        );
        assert!(
            new.starts_with("# Copied by p2xen from ESP (disk0 partition 1):/EFI/centos/grub.cfg"),
            "{new}"
        );
    }

    #[test]
    fn blscfg_configs_get_a_menu_of_the_bls_entries() {
        let (_t, gfs) = guest(&[
            (
                "/boot/grub2/grub.cfg",
                "set default=\"${saved_entry}\"\nblscfg\n",
            ),
            (
                "/boot/loader/entries/m-5.14.0-70.el9.x86_64.conf",
                "title old\nlinux /vmlinuz-5.14.0-70.el9.x86_64\noptions root=UUID=r-1 ro\n",
            ),
            (
                "/boot/loader/entries/m-5.14.0-162.el9.x86_64.conf",
                "title new\nlinux /vmlinuz-5.14.0-162.el9.x86_64\ninitrd /initramfs-5.14.0-162.el9.x86_64.img\noptions root=UUID=r-1 ro\n",
            ),
        ]);
        let root = vol(2, "r-1");
        let (real, _) =
            real_grub_cfg(&gfs, &uefi(&[]), std::slice::from_ref(&root), &root, &[]).unwrap();
        let real = real.unwrap();
        assert_eq!(real.name, "/boot/grub2/grub.cfg");
        assert_eq!(
            default_kernel(&gfs, &real).as_deref(),
            Some("vmlinuz-5.14.0-162.el9.x86_64")
        );
        let p = plan_pvgrub_cfg(&gfs, &real, &DevMap::new(1, true), "hvc0", &[])
            .unwrap()
            .unwrap();
        let Change::Write { new, .. } = &p.change else {
            panic!("{:?}", p.change)
        };
        let (a, b) = (
            new.find("menuentry 'new'").unwrap(),
            new.find("menuentry 'old'").unwrap(),
        );
        assert!(a < b, "{new}");
        assert!(new.contains("\tlinux /vmlinuz-5.14.0-162.el9.x86_64 root=UUID=r-1 ro\n\tinitrd /initramfs-5.14.0-162.el9.x86_64.img\n"), "{new}");
    }
}
