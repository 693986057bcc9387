//! Boot loader configs: grub2 (`grub.cfg`, `/etc/default/grub`), grub legacy
//! (`menu.lst`, including Debian's `# kopt=` line that update-grub rebuilds
//! from) and lilo: `root=`/`resume=` devices mapped and `console=hvc0`
//! (`console=ttyS0` for HVM) added, so the kernel's console is the Xen console.
//!
//! pvgrub2 reads only grub2 syntax: for a guest with just grub legacy or lilo
//! a `/boot/grub/grub.cfg` is generated from its entries.

use super::FixupKind;
use super::change::{Change, Planned, edit, map_lines};
use super::devmap::{DevMap, map_cmdline_devices};
use super::guestfs::{GuestFs, GuestFsError};

pub const GRUB2_CFGS: [&str; 2] = ["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"];
pub const LEGACY_CFGS: [&str; 2] = ["/boot/grub/menu.lst", "/boot/grub/grub.conf"];
pub const LILO_CONF: &str = "/etc/lilo.conf";
const BLS_DIR: &str = "/boot/loader/entries";

/// `tty` is the console device: `hvc0` (PV/PVH) or `ttyS0` (HVM).
pub fn plan(gfs: &GuestFs, map: &DevMap, tty: &str) -> Result<Vec<Planned>, GuestFsError> {
    let con = format!("console={tty}");
    let con = con.as_str();
    let mut out = Vec::new();
    for path in GRUB2_CFGS {
        if let Some(old) = gfs.read(path)? {
            let new = map_lines(&old, |l| grub2_line(l, map, con));
            out.extend(edit(
                FixupKind::Bootloader,
                path,
                &old,
                new,
                format!("root= mapped, {con} added to the kernel lines"),
            ));
        }
    }
    // Boot Loader Specification entries (RHEL/Fedora grub2 with blscfg):
    // the kernel command line is in their `options` lines.
    for name in gfs.list(BLS_DIR)? {
        if !name.ends_with(".conf") {
            continue;
        }
        let path = super::guestfs::gjoin(BLS_DIR, &name);
        if let Some(old) = gfs.read(&path)? {
            let new = map_lines(&old, |l| bls_line(l, map, con));
            out.extend(edit(
                FixupKind::Bootloader,
                &path,
                &old,
                new,
                format!("root= mapped, {con} added to the entry's options"),
            ));
        }
    }
    if let Some(old) = gfs.read("/etc/default/grub")? {
        let new = map_lines(&old, |l| default_grub_line(l, map, con));
        out.extend(edit(
            FixupKind::Bootloader,
            "/etc/default/grub",
            &old,
            new,
            "kept in step with grub.cfg so update-grub in the guest keeps the change",
        ));
    }
    for path in LEGACY_CFGS {
        if let Some(old) = gfs.read(path)? {
            let new = map_lines(&old, |l| legacy_line(l, map, con));
            out.extend(edit(
                FixupKind::Bootloader,
                path,
                &old,
                new,
                format!(
                    "root= mapped, {con} added (kernel lines and the kopt= line update-grub uses)"
                ),
            ));
        }
    }
    if let Some(old) = gfs.read(LILO_CONF)? {
        out.extend(edit(
            FixupKind::Bootloader,
            LILO_CONF,
            &old,
            lilo(&old, map, con),
            format!("root=/boot= mapped, {con} appended"),
        ));
    }
    Ok(out)
}

fn with_console(line: &str, con: &str) -> String {
    if line.contains(con) {
        line.to_string()
    } else {
        format!("{} {con}", line.trim_end())
    }
}

fn first_word(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or("")
}

pub(crate) fn grub2_line(line: &str, map: &DevMap, con: &str) -> String {
    match first_word(line) {
        "linux" | "linux16" | "linuxefi" => with_console(&map_cmdline_devices(line, map), con),
        _ => line.to_string(),
    }
}

fn default_grub_line(line: &str, map: &DevMap, con: &str) -> String {
    let mapped = map_cmdline_devices(line, map);
    let t = mapped.trim_start();
    if let Some(val) = t.strip_prefix("GRUB_CMDLINE_LINUX=") {
        if val.contains(con) {
            return mapped;
        }
        let ws = &mapped[..mapped.len() - t.len()];
        let q = val.chars().next().filter(|c| *c == '"' || *c == '\'');
        return match q {
            Some(q) => {
                let inner = val.trim_matches(q);
                let sep = if inner.is_empty() { "" } else { " " };
                format!("{ws}GRUB_CMDLINE_LINUX={q}{inner}{sep}{con}{q}")
            }
            None if val.is_empty() => format!("{ws}GRUB_CMDLINE_LINUX=\"{con}\""),
            None => format!("{ws}GRUB_CMDLINE_LINUX=\"{val} {con}\""),
        };
    }
    mapped
}

fn bls_line(line: &str, map: &DevMap, con: &str) -> String {
    if first_word(line) == "options" {
        return with_console(&map_cmdline_devices(line, map), con);
    }
    line.to_string()
}

fn legacy_line(line: &str, map: &DevMap, con: &str) -> String {
    let t = line.trim_start();
    if first_word(line) == "kernel" || t.starts_with("# kopt=") {
        return with_console(&map_cmdline_devices(line, map), con);
    }
    line.to_string()
}

fn lilo(text: &str, map: &DevMap, con: &str) -> String {
    let mut has_append = false;
    let mut body = map_lines(text, |line| {
        let Some((key, val)) = line.split_once('=') else {
            return line.to_string();
        };
        let k = key.trim();
        let v = val.trim().trim_matches('"');
        match k {
            "root" | "boot" if !line.trim_start().starts_with('#') => match map.map(v) {
                super::devmap::Mapped::To(new) => format!("{key}={}", val.replace(v, &new)),
                _ => line.to_string(),
            },
            "append" => {
                has_append = true;
                let inner = map_cmdline_devices(v, map);
                if inner.contains(con) {
                    format!("{key}=\"{inner}\"")
                } else {
                    format!("{key}=\"{} {con}\"", inner.trim())
                }
            }
            _ => line.to_string(),
        }
    });
    if !has_append {
        body = format!("append=\"{con}\"\n{body}");
    }
    body
}

/// One boot entry read from grub legacy or lilo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    pub title: String,
    pub kernel: String,
    pub args: String,
    pub initrd: Option<String>,
}

/// Entries of a grub legacy `menu.lst` (after fix-ups) and its `default`.
pub fn legacy_entries(text: &str) -> (Vec<BootEntry>, usize) {
    let mut entries: Vec<BootEntry> = Vec::new();
    let mut default = 0usize;
    let mut title: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        let (cmd, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
        let rest = rest.trim();
        match cmd {
            "default" if title.is_none() && entries.is_empty() => {
                default = rest.parse().unwrap_or(0);
            }
            "title" => title = Some(rest.to_string()),
            "kernel" => {
                let (kernel, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                entries.push(BootEntry {
                    title: title.clone().unwrap_or_else(|| kernel.to_string()),
                    kernel: strip_grub_device(kernel),
                    args: args.trim().to_string(),
                    initrd: None,
                });
            }
            "initrd" => {
                if let Some(e) = entries.last_mut() {
                    e.initrd = Some(strip_grub_device(rest));
                }
            }
            _ => {}
        }
    }
    (entries, default)
}

/// Entries of a lilo.conf (after fix-ups): image= sections.
pub fn lilo_entries(text: &str) -> (Vec<BootEntry>, usize) {
    let mut entries: Vec<BootEntry> = Vec::new();
    let mut global_root = String::new();
    let mut global_append = String::new();
    let mut default_label: Option<String> = None;
    let mut roots: Vec<Option<String>> = Vec::new();
    let mut appends: Vec<Option<String>> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            continue;
        };
        let k = k.trim();
        let v = v.trim().trim_matches('"').to_string();
        let in_image = !entries.is_empty();
        match k {
            "image" => {
                entries.push(BootEntry {
                    title: v.clone(),
                    kernel: v,
                    args: String::new(),
                    initrd: None,
                });
                roots.push(None);
                appends.push(None);
            }
            "label" if in_image => {
                if let Some(e) = entries.last_mut() {
                    e.title = v;
                }
            }
            "initrd" if in_image => {
                if let Some(e) = entries.last_mut() {
                    e.initrd = Some(v);
                }
            }
            "root" if in_image => {
                if let Some(r) = roots.last_mut() {
                    *r = Some(v);
                }
            }
            "append" if in_image => {
                if let Some(a) = appends.last_mut() {
                    *a = Some(v);
                }
            }
            "root" => global_root = v,
            "append" => global_append = v,
            "default" => default_label = Some(v),
            _ => {}
        }
    }
    for (i, e) in entries.iter_mut().enumerate() {
        let root = roots
            .get(i)
            .cloned()
            .flatten()
            .unwrap_or(global_root.clone());
        let append = appends
            .get(i)
            .cloned()
            .flatten()
            .unwrap_or(global_append.clone());
        e.args = lilo_args(&root, &append);
    }
    let default = default_label
        .and_then(|l| entries.iter().position(|e| e.title == l))
        .unwrap_or(0);
    (entries, default)
}

/// A lilo image's kernel arguments: its `root=` (read-only, as lilo boots)
/// and its `append=`.
fn lilo_args(root: &str, append: &str) -> String {
    let mut args = String::new();
    if !root.is_empty() {
        args.push_str(&format!("root={root} ro"));
    }
    if !append.is_empty() {
        if !args.is_empty() {
            args.push(' ');
        }
        args.push_str(append);
    }
    args
}

/// `(hd0,0)/boot/vmlinuz` → `/boot/vmlinuz`.
fn strip_grub_device(p: &str) -> String {
    match (p.starts_with('('), p.find(')')) {
        (true, Some(i)) => p[i + 1..].to_string(),
        _ => p.to_string(),
    }
}

/// A grub2 config that pvgrub2 can read, from legacy entries. Each entry
/// finds its own partition by the kernel file, so it works whether /boot is
/// on the root filesystem or separate.
pub fn pvgrub_cfg(entries: &[BootEntry], default: usize, from: &str) -> String {
    let mut s = format!(
        "# Generated by p2xen from {from} for pvgrub2 (Xen PV boot).\n\
         # The guest's own boot loader config is kept; regenerate this file after\n\
         # changing it, or install grub2 in the guest.\n\
         set default={default}\nset timeout=5\n"
    );
    for e in entries {
        s.push_str(&format!(
            "\nmenuentry '{}' {{\n\tinsmod part_msdos\n\tinsmod part_gpt\n\tinsmod ext2\n\
             \tsearch --no-floppy --set=root --file {}\n\tlinux {} {}\n",
            e.title.replace('\'', ""),
            e.kernel,
            e.kernel,
            e.args
        ));
        if let Some(i) = &e.initrd {
            s.push_str(&format!("\tinitrd {i}\n"));
        }
        s.push_str("}\n");
    }
    s
}

/// Plans `/boot/grub/grub.cfg` generated from grub legacy or lilo, reading
/// the configs as they will be after the other fix-ups (`pending`).
pub fn plan_generated_grub_cfg(
    gfs: &GuestFs,
    pending: &[Planned],
) -> Result<Option<Planned>, GuestFsError> {
    let current = |path: &str| -> Result<Option<String>, GuestFsError> {
        for p in pending {
            if let Change::Write { path: pp, new, .. } = &p.change {
                if pp == path {
                    return Ok(Some(new.clone()));
                }
            }
        }
        gfs.read(path)
    };
    for path in LEGACY_CFGS {
        if let Some(text) = current(path)? {
            let (entries, default) = legacy_entries(&text);
            if !entries.is_empty() {
                return Ok(Some(generated(pvgrub_cfg(&entries, default, path), path)));
            }
        }
    }
    if let Some(text) = current(LILO_CONF)? {
        let (entries, default) = lilo_entries(&text);
        if !entries.is_empty() {
            return Ok(Some(generated(
                pvgrub_cfg(&entries, default, LILO_CONF),
                LILO_CONF,
            )));
        }
    }
    Ok(None)
}

fn generated(text: String, from: &str) -> Planned {
    Planned::new(
        FixupKind::Bootloader,
        Change::Write {
            path: GRUB2_CFGS[0].to_string(),
            old: None,
            new: text,
        },
        format!("generated from {from}: pvgrub2 reads only grub2 configs"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub2_and_default() {
        let m = DevMap::new(1, true);
        assert_eq!(
            grub2_line(
                "\tlinux\t/vmlinuz-6.1 root=UUID=ab ro quiet",
                &m,
                "console=hvc0"
            ),
            "\tlinux\t/vmlinuz-6.1 root=UUID=ab ro quiet console=hvc0"
        );
        assert_eq!(
            default_grub_line("GRUB_CMDLINE_LINUX=\"\"", &m, "console=hvc0"),
            "GRUB_CMDLINE_LINUX=\"console=hvc0\""
        );
        assert_eq!(
            default_grub_line(
                "GRUB_CMDLINE_LINUX=\"resume=/dev/sda2\"",
                &m,
                "console=hvc0"
            ),
            "GRUB_CMDLINE_LINUX=\"resume=/dev/xvda2 console=hvc0\""
        );
    }

    #[test]
    fn bls_options() {
        let m = DevMap::new(1, true);
        assert_eq!(
            bls_line(
                "options root=/dev/sda2 ro crashkernel=auto",
                &m,
                "console=hvc0"
            ),
            "options root=/dev/xvda2 ro crashkernel=auto console=hvc0"
        );
        assert_eq!(
            bls_line("linux /vmlinuz", &m, "console=hvc0"),
            "linux /vmlinuz"
        );
    }

    #[test]
    fn lilo_mapped_and_entries() {
        let m = DevMap::new(1, true);
        let out = lilo(
            "boot=/dev/hda\nroot=/dev/hda1\nimage=/boot/vmlinuz\n\tlabel=Linux\n\tinitrd=/boot/initrd.img\n",
            &m,
            "console=hvc0",
        );
        assert_eq!(
            out,
            "append=\"console=hvc0\"\nboot=/dev/xvda\nroot=/dev/xvda1\nimage=/boot/vmlinuz\n\tlabel=Linux\n\tinitrd=/boot/initrd.img\n"
        );
        let (e, d) = lilo_entries(&out);
        assert_eq!(d, 0);
        assert_eq!(e[0].title, "Linux");
        assert_eq!(e[0].args, "root=/dev/xvda1 ro console=hvc0");
    }

    #[test]
    fn legacy_parse() {
        let (e, d) = legacy_entries(
            "default 1\ntimeout 5\ntitle A\nroot (hd0,0)\nkernel (hd0,0)/boot/vmlinuz-a root=/dev/xvda1 ro\ninitrd /boot/initrd-a\ntitle B\nkernel /boot/vmlinuz-b root=/dev/xvda1\n",
        );
        assert_eq!(d, 1);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].kernel, "/boot/vmlinuz-a");
        assert_eq!(e[0].initrd.as_deref(), Some("/boot/initrd-a"));
        assert_eq!(e[1].args, "root=/dev/xvda1");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_guest_configs(text in "(\\PC{0,40}\n){0,8}") {
            let m = DevMap::new(1, true);
            let _ = lilo(&text, &m, "console=hvc0");
            let _ = lilo_entries(&text);
            let _ = legacy_entries(&text);
            let _ = map_lines(&text, |l| default_grub_line(l, &m, "console=hvc0"));
            let _ = map_lines(&text, |l| legacy_line(l, &m, "console=hvc0"));
        }
    }
}
