//! `p2xen mkinitramfs` end to end on a small fake kernel tree: the archive
//! must unpack with the real tools (zstd, GNU cpio) to exactly the spec's
//! entries plus the listed modules closed over their dependencies.

use p2xen::init::mkinitramfs::{Options, build};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn builds_an_archive_the_tools_unpack() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let moddir = t.join("lib/modules/6.1.0-test");
    write(
        &moddir.join("modules.dep"),
        "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
         kernel/drivers/virtio/virtio.ko:\n\
         kernel/drivers/virtio/virtio_ring.ko:\n\
         kernel/drivers/net/ethernet/intel/e1000.ko:\n\
         kernel/drivers/net/ethernet/realtek/8139cp.ko: kernel/drivers/net/mii.ko\n\
         kernel/drivers/net/mii.ko:\n\
         kernel/fs/unused.ko:\n",
    );
    write(
        &moddir.join("modules.alias"),
        "alias virtio:d00000002v* virtio_blk\nalias fs-unused unused\nalias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n",
    );
    write(&moddir.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n");
    for ko in [
        "kernel/drivers/block/virtio_blk.ko",
        "kernel/drivers/virtio/virtio.ko",
        "kernel/drivers/virtio/virtio_ring.ko",
        "kernel/drivers/net/ethernet/intel/e1000.ko",
        "kernel/drivers/net/ethernet/realtek/8139cp.ko",
        "kernel/drivers/net/mii.ko",
        "kernel/fs/unused.ko",
    ] {
        write(&moddir.join(ko), ko);
    }
    write(
        &t.join("spec/modules.list"),
        "virtio_blk\ndir kernel/drivers/net/ethernet\n?not_in_this_kernel\n",
    );
    write(&t.join("spec/motd"), "hello\n");
    write(&t.join("bin/p2xen"), "#!fake\n");
    write(
        &t.join("spec/spec"),
        "dir /proc 0555\nfile /init ${P2XEN} 0755\nfile /etc/motd motd 0644\n\
         slink /bin/sh busybox\nnod /dev/console 0600 c 5 1\nmodules /lib/modules modules.list\n",
    );
    let out = t.join("initramfs.img");
    let summary = build(&Options {
        spec: t.join("spec/spec"),
        modules_dir: Some(moddir.clone()),
        output: out.clone(),
        vars: HashMap::from([(
            "P2XEN".to_string(),
            t.join("bin/p2xen").display().to_string(),
        )]),
        level: 3,
    })
    .unwrap();
    assert_eq!(summary.modules, 6, "{summary:?}");

    let unpack = t.join("unpacked");
    std::fs::create_dir(&unpack).unwrap();
    let sh = format!(
        "zstd -dc {} | cpio -id --quiet --no-absolute-filenames",
        out.display()
    );
    let st = Command::new("sh")
        .args(["-c", &sh])
        .current_dir(&unpack)
        .status()
        .expect("sh");
    assert!(
        st.success(),
        "zstd | cpio failed (apt-get install zstd cpio)"
    );
    assert_eq!(
        std::fs::read_to_string(unpack.join("init")).unwrap(),
        "#!fake\n"
    );
    assert_eq!(
        std::fs::read_to_string(unpack.join("etc/motd")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_link(unpack.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let m = unpack.join("lib/modules/6.1.0-test");
    assert!(
        m.join("kernel/drivers/net/mii.ko").exists(),
        "dependency of 8139cp missing"
    );
    assert!(
        !m.join("kernel/fs/unused.ko").exists(),
        "unlisted module included"
    );
    let dep = std::fs::read_to_string(m.join("modules.dep")).unwrap();
    assert_eq!(dep.lines().count(), 6, "{dep}");
    assert!(
        dep.contains("kernel/drivers/net/ethernet/realtek/8139cp.ko: kernel/drivers/net/mii.ko\n")
    );
    let alias = std::fs::read_to_string(m.join("modules.alias")).unwrap();
    assert_eq!(
        alias,
        "alias virtio:d00000002v* virtio_blk\nalias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n"
    );
    assert!(m.join("modules.builtin").exists());
}

#[test]
fn unknown_module_is_an_error_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let moddir = t.join("6.1.0-test");
    write(&moddir.join("modules.dep"), "kernel/a.ko:\n");
    write(&moddir.join("modules.alias"), "");
    write(&t.join("modules.list"), "a\nnosuch\n");
    write(&t.join("spec"), "modules /lib/modules modules.list\n");
    let err = build(&Options {
        spec: t.join("spec"),
        modules_dir: Some(moddir.clone()),
        output: t.join("out.img"),
        vars: HashMap::new(),
        level: 1,
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("modules.list:2: module nosuch is not in")
            && err.ends_with("(prefix it with ? if optional)"),
        "{err}"
    );
}
