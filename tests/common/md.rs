//! md superblocks written byte by byte: this machine's kernel has no md
//! driver, so `mdadm --create` cannot make them. The layouts follow the
//! kernel's `struct mdp_superblock_1` and `mdp_super_t`
//! (include/uapi/linux/raid/md_p.h); `mdadm --examine` and blkid, which read
//! a superblock without the kernel, are the tests' judges of them.

pub const MD_MAGIC: u32 = 0xa92b_4efc;

/// The kernel's and mdadm's checksum: the little-endian words summed (a
/// trailing half word as such) and folded to 32 bits. The checksum field
/// must be zero in `sb` when it is computed.
pub fn csum(sb: &[u8]) -> u32 {
    let mut sum: u64 = sb
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .sum();
    if sb.len() % 4 == 2 {
        sum += u64::from(u16::from_le_bytes([sb[sb.len() - 2], sb[sb.len() - 1]]));
    }
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

/// Where a 1.x superblock lives in a member of `size` bytes.
pub fn sb1_offset(version: &str, size: u64) -> u64 {
    match version {
        "1.0" => (size & !4095) - 8192,
        "1.1" => 0,
        "1.2" => 4096,
        v => panic!("md metadata {v} is not 1.x"),
    }
}

/// The fields of a 1.x superblock a test chooses; sizes in 512-byte
/// sectors as the superblock holds them.
#[derive(Debug, Clone)]
pub struct Sb1 {
    pub version: &'static str,
    pub set_uuid: [u8; 16],
    /// `host:name`, at most 32 bytes.
    pub name: &'static str,
    pub level: u32,
    /// RAID0: 1 original, 2 alternate; RAID10: near | far << 8 (0x102: near=2).
    pub layout: u32,
    /// In sectors (0 for RAID1).
    pub chunk_size: u32,
    pub raid_disks: u32,
    /// The array's size on each member (`size`, word 20).
    pub size: u64,
    pub data_offset: u64,
    pub data_size: u64,
    /// This member's slot in `roles`.
    pub dev_number: u32,
    pub dev_uuid: [u8; 16],
    pub events: u64,
    /// dev_roles[]: the raid slot of each device number, 0xffff spare,
    /// 0xfffe faulty; its length is max_dev.
    pub roles: Vec<u16>,
}

impl Sb1 {
    /// An active RAID1 member of a two-slot array in a member of
    /// `member_size` bytes, laid out as mdadm 4.x makes a small array: data
    /// after a 1 MiB reserve for 1.1/1.2, at 0 for 1.0 (superblock at the
    /// end).
    pub fn raid1(version: &'static str, member_size: u64, dev_number: u32) -> Sb1 {
        let sb_off = sb1_offset(version, member_size);
        let (data_offset, data_size) = if version == "1.0" {
            (0, sb_off / 512)
        } else {
            (2048, member_size / 512 - 2048)
        };
        Sb1 {
            version,
            set_uuid: [
                0x3a, 0x1f, 0x22, 0x9c, 0x44, 0x5d, 0x6e, 0x70, 0x81, 0x92, 0xa3, 0xb4, 0xc5, 0xd6,
                0xe7, 0xf8,
            ],
            name: "seed:root",
            level: 1,
            layout: 0,
            chunk_size: 0,
            raid_disks: 2,
            size: data_size,
            data_offset,
            data_size,
            dev_number,
            dev_uuid: [0x11; 16],
            events: 0,
            roles: vec![0, 1],
        }
    }

    /// (byte offset in the member, the superblock's 256 + 2 * max_dev
    /// bytes with a valid checksum).
    pub fn build(&self, member_size: u64) -> (u64, Vec<u8>) {
        let off = sb1_offset(self.version, member_size);
        let mut sb = vec![0u8; 256 + 2 * self.roles.len()];
        let put = |sb: &mut Vec<u8>, o: usize, v: &[u8]| sb[o..o + v.len()].copy_from_slice(v);
        put(&mut sb, 0, &MD_MAGIC.to_le_bytes());
        put(&mut sb, 4, &1u32.to_le_bytes()); // major_version
        put(&mut sb, 16, &self.set_uuid);
        put(&mut sb, 32, self.name.as_bytes());
        put(&mut sb, 72, &self.level.to_le_bytes());
        put(&mut sb, 76, &self.layout.to_le_bytes());
        put(&mut sb, 80, &self.size.to_le_bytes());
        put(&mut sb, 88, &self.chunk_size.to_le_bytes());
        put(&mut sb, 92, &self.raid_disks.to_le_bytes());
        put(&mut sb, 128, &self.data_offset.to_le_bytes());
        put(&mut sb, 136, &self.data_size.to_le_bytes());
        put(&mut sb, 144, &(off / 512).to_le_bytes()); // super_offset
        put(&mut sb, 160, &self.dev_number.to_le_bytes());
        put(&mut sb, 168, &self.dev_uuid);
        put(&mut sb, 200, &self.events.to_le_bytes());
        put(&mut sb, 208, &u64::MAX.to_le_bytes()); // resync_offset: in sync
        let max_dev = u32::try_from(self.roles.len()).unwrap();
        put(&mut sb, 220, &max_dev.to_le_bytes());
        for (i, r) in self.roles.iter().enumerate() {
            put(&mut sb, 256 + 2 * i, &r.to_le_bytes());
        }
        let c = csum(&sb);
        put(&mut sb, 216, &c.to_le_bytes());
        (off, sb)
    }
}

/// A 0.90 superblock (4 KiB, in the last 64 KiB-aligned 64 KiB of the
/// member) for slot `raid_disk` of a clean two-disk RAID1 whose UUID is
/// `uuid`: (byte offset in the member, the superblock).
pub fn sb090_raid1(member_size: u64, uuid: [u8; 16], raid_disk: u32) -> (u64, Vec<u8>) {
    let off = (member_size & !65535) - 65536;
    let mut sb = vec![0u8; 4096];
    let mut put32 = |o: usize, v: u32| sb[o..o + 4].copy_from_slice(&v.to_le_bytes());
    let words: Vec<u32> = uuid
        .chunks(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    put32(0, MD_MAGIC);
    put32(8, 90); // minor_version
    put32(20, words[0]);
    put32(28, 1); // raid1
    put32(32, u32::try_from(off / 1024).unwrap()); // size in KiB
    put32(36, 2); // nr_disks
    put32(40, 2); // raid_disks
    put32(52, words[1]);
    put32(56, words[2]);
    put32(60, words[3]);
    put32(128 + 4, 1); // state: clean
    put32(128 + 8, 2); // active
    put32(128 + 12, 2); // working
    for disk in 0..2u32 {
        let base = 512 + disk as usize * 128;
        put32(base, disk);
        put32(base + 12, disk);
        put32(base + 16, 6); // active, sync
    }
    put32(3968, raid_disk);
    put32(3968 + 12, raid_disk);
    put32(3968 + 16, 6);
    let c = csum(&sb);
    sb[152..156].copy_from_slice(&c.to_le_bytes());
    (off, sb)
}
