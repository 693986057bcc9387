//! The `p2xen` binary: a thin command-line layer over the library. Each
//! subcommand's arguments and exit status live in the library's `cli` modules.

#![deny(clippy::unwrap_used, clippy::cast_possible_truncation)]

use clap::{Parser, Subcommand};
use p2xen::{guest, image, init, menu, receive, send, source};
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
    Mkimage(image::cli::MkimageArgs),
    /// Write the live initramfs (zstd cpio) from initramfs/spec (used by build/live).
    #[command(hide = true)]
    Mkinitramfs(init::mkinitramfs::cli::MkinitramfsArgs),
    /// Show disks, partition tables, filesystems and the installed OS
    /// (read-only). Exit status: 0 when everything was readable, 1 when
    /// something was not (each problem is reported), 2 on usage errors.
    Inspect(source::cli::InspectArgs),
    /// Convert stored images into a bootable Xen guest (fix-ups + xl config).
    Convert(guest::cli::ConvertArgs),
    /// The serial-console menu on a given terminal, with image files as
    /// disks (for tests and trying it out; the live image starts it itself).
    #[command(hide = true)]
    Menu(menu::cli::MenuArgs),
    /// Send disks to a `p2xen receive` (run in the live image or a rescue system).
    Send(send::cli::SendArgs),
    /// Receive migrations on the Xen host (dom0).
    Receive(receive::cli::ReceiveArgs),
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
    if init::is_init() {
        init::run();
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
        Command::Mkimage(a) => image::cli::run(a),
        Command::Mkinitramfs(a) => init::mkinitramfs::cli::run(a),
        Command::Inspect(a) => source::cli::run(a),
        Command::Convert(a) => guest::cli::run(a),
        Command::Menu(a) => menu::cli::run(a),
        Command::Send(a) => send::cli::run(a),
        Command::Receive(a) => receive::cli::run(a),
    }
}
