//! The `p2xen` binary: a thin command-line layer over the library.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "p2xen",
    version,
    about = "Migrate a physical Linux server into a Xen guest"
)]
struct Cli {
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build step of build/media: write the USB image (GPT + protective MBR with
    /// BIOS boot code) around a prepared ESP image.
    Mkimage(MkimageArgs),
    /// Write the live initramfs (zstd cpio) from initramfs/spec (used by build/live).
    #[command(hide = true)]
    Mkinitramfs {
        /// The spec listing dirs, files, links, nodes, busybox and modules.
        #[arg(long)]
        spec: std::path::PathBuf,
        /// `lib/modules/VERSION` of the unpacked kernel (with modules.dep).
        #[arg(long)]
        modules_dir: Option<std::path::PathBuf>,
        /// NAME=VALUE for `${NAME}` in the spec.
        #[arg(long = "var")]
        vars: Vec<String>,
        /// zstd level.
        #[arg(long, default_value_t = 19)]
        level: i32,
        #[arg(short, long)]
        output: std::path::PathBuf,
    },
    /// Show disks, partition tables, filesystems and the installed OS
    /// (read-only). Exit status: 0 when everything was readable, 1 when
    /// something was not (each problem is reported), 2 on usage errors.
    Inspect(p2xen::source::inspect::InspectArgs),
    /// Convert stored images into a bootable Xen guest (fix-ups + xl config).
    Convert(p2xen::guest::cli::ConvertArgs),
    /// The serial-console menu on a given terminal, with image files as
    /// disks (for tests and trying it out; the live image starts it itself).
    #[command(hide = true)]
    Menu(p2xen::menu::cli::MenuArgs),
}

#[derive(clap::Args)]
struct MkimageArgs {
    /// FAT image of the ESP, made with `mkfs.vfat -h 2048`, loaders installed.
    #[arg(long)]
    esp: std::path::PathBuf,
    /// MBR boot code for legacy BIOS (syslinux's gptmbr.bin).
    #[arg(long, default_value = "/usr/lib/syslinux/mbr/gptmbr.bin")]
    boot_code: std::path::PathBuf,
    /// The USB image to write (replaced atomically).
    #[arg(long)]
    out: std::path::PathBuf,
}

fn mkimage(args: MkimageArgs) -> ExitCode {
    let spec = p2xen::image::usb_disk::UsbImageSpec {
        esp: args.esp,
        boot_code: args.boot_code,
        out: args.out,
    };
    match p2xen::image::usb_disk::write_usb_image(&spec) {
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

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Info,
        1 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let config = simplelog::ConfigBuilder::new()
        .set_time_level(log::LevelFilter::Off)
        .set_target_level(log::LevelFilter::Off)
        .set_thread_level(log::LevelFilter::Off)
        .build();
    // Logging goes to stderr so that stdout stays clean for --json output.
    let _ = simplelog::TermLogger::init(
        level,
        config,
        simplelog::TerminalMode::Stderr,
        simplelog::ColorChoice::Never,
    );
}

fn main() -> ExitCode {
    if p2xen::init::is_init() {
        p2xen::init::run();
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
        Command::Mkimage(args) => mkimage(args),
        Command::Mkinitramfs {
            spec,
            modules_dir,
            vars,
            level,
            output,
        } => {
            let vars = vars
                .iter()
                .filter_map(|v| v.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let opts = p2xen::init::mkinitramfs::Options {
                spec,
                modules_dir,
                output,
                vars,
                level,
            };
            match p2xen::init::mkinitramfs::build(&opts) {
                Ok(s) => {
                    println!(
                        "{}: {} entries, {} modules, cpio {} bytes, compressed {} bytes ({:.1} MiB)",
                        opts.output.display(),
                        s.entries,
                        s.modules,
                        s.cpio_bytes,
                        s.compressed_bytes,
                        s.compressed_bytes as f64 / 1048576.0
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("p2xen mkinitramfs: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Inspect(args) => match p2xen::source::inspect::run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                log::error!("inspect: {e}");
                ExitCode::from(1)
            }
        },
        Command::Convert(args) => match p2xen::guest::cli::run(&args) {
            Ok(report) => {
                print!("{}", p2xen::guest::cli::summary(&report));
                ExitCode::SUCCESS
            }
            Err(e) => {
                log::error!("convert {}: {e}", args.name);
                ExitCode::FAILURE
            }
        },
        Command::Menu(args) => match p2xen::menu::cli::run_cli(&args) {
            Ok(outcome) => {
                println!("menu: {outcome:?}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                log::error!("menu: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
