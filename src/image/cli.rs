//! `p2xen mkimage`: the build step of build/media that writes the USB image.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, clap::Args)]
pub struct MkimageArgs {
    /// FAT image of the ESP, made with `mkfs.vfat -h 2048`, loaders installed.
    #[arg(long)]
    pub esp: PathBuf,
    /// MBR boot code for legacy BIOS (syslinux's gptmbr.bin).
    #[arg(long, default_value = "/usr/lib/syslinux/mbr/gptmbr.bin")]
    pub boot_code: PathBuf,
    /// The USB image to write (replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: MkimageArgs) -> ExitCode {
    let spec = super::usb_disk::UsbImageSpec {
        esp: args.esp,
        boot_code: args.boot_code,
        out: args.out,
    };
    match super::usb_disk::write_usb_image(&spec) {
        Ok(img) => {
            log::info!(
                "{}: {} bytes, ESP at sector {} ({} sectors)",
                spec.out.display(),
                img.size_bytes,
                img.esp_first_lba,
                img.esp_sectors
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("mkimage: {e}");
            ExitCode::FAILURE
        }
    }
}
