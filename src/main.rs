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
    /// Send disks to a `p2xen receive` (run in the live image or a rescue system).
    Send(SendArgs),
    /// Receive migrations on the Xen host (dom0).
    Receive(ReceiveArgs),
}

#[derive(clap::Args)]
struct SendArgs {
    /// Receiver address HOST:PORT.
    #[arg(long)]
    server: String,
    /// Token printed by `p2xen receive`.
    #[arg(long)]
    token: String,
    /// Receiver certificate fingerprint, sha256:HEX.
    #[arg(long)]
    fingerprint: String,
    /// Migration name on the receiver (default: the hostname).
    #[arg(long)]
    name: Option<String>,
    /// Send every block (forensic copy), not only used filesystem blocks.
    #[arg(long)]
    all_blocks: bool,
    /// One JSON event per line on stdout instead of text on stderr.
    #[arg(long)]
    json: bool,
    /// Keep reconnecting for this many seconds after a connection loss.
    #[arg(long, default_value_t = 600)]
    retry_for: u64,
    /// Disks or images to send (disk0, disk1, ... in this order); default:
    /// all fixed disks of this machine.
    sources: Vec<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct ReceiveArgs {
    /// Address to listen on, ADDR:PORT.
    #[arg(long, required_unless_present = "list")]
    listen: Option<String>,
    /// Where images go: a directory (sparse STORE/NAME/diskN.img) or lvm:VG.
    #[arg(long, required_unless_present = "list")]
    store: Option<String>,
    /// Certificate, key, token and resume journals.
    #[arg(long, default_value = p2xen::receive::DEFAULT_STATE_DIR)]
    state_dir: std::path::PathBuf,
    /// Take the token from FILE (created with a new token if missing).
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// Exit after the first migration finishes (0 = verified, 1 = failed).
    #[arg(long)]
    once: bool,
    /// Replace an existing migration of the same name.
    #[arg(long)]
    force: bool,
    /// JSON events on stdout.
    #[arg(long)]
    json: bool,
    /// List interrupted migrations and exit.
    #[arg(long)]
    list: bool,
    /// Directory for the guests' xl configs written by the conversion.
    #[arg(long, default_value = "/etc/xen")]
    xen_dir: std::path::PathBuf,
    /// Only copy and verify; skip the guest conversion (run `p2xen convert` later).
    #[arg(long)]
    no_convert: bool,
}

fn cmd_send(a: SendArgs) -> ExitCode {
    use p2xen::send::{self, ProgressEvent, SendOptions};
    let mut opts = SendOptions::new(&a.server, &a.token, &a.fingerprint, a.sources);
    opts.name = a.name;
    opts.all_blocks = a.all_blocks;
    opts.retry_for = std::time::Duration::from_secs(a.retry_for);
    let json = a.json;
    opts.progress = Some(std::sync::Arc::new(move |ev: &ProgressEvent| {
        if json {
            println!("{}", serde_json::to_string(ev).unwrap_or_default());
        } else {
            log::info!("{}", send::progress::text(ev));
        }
    }));
    match send::run(&opts) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"event": "error", "error": e.to_string()})
                );
            }
            log::error!("send failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cmd_receive(a: ReceiveArgs) -> ExitCode {
    use p2xen::receive;
    if a.list {
        let list = receive::list_interrupted(&a.state_dir);
        if a.json {
            println!("{}", serde_json::to_string(&list).unwrap_or_default());
        } else if list.is_empty() {
            println!("no interrupted migrations in {}", a.state_dir.display());
        } else {
            for m in list {
                println!(
                    "{}: {} disk(s), {} of {} MiB committed, {} session(s), store {}",
                    m.name,
                    m.disks,
                    m.committed_bytes >> 20,
                    m.plan_bytes >> 20,
                    m.sessions,
                    m.store.display()
                );
            }
        }
        return ExitCode::SUCCESS;
    }
    let (Some(listen), Some(store)) = (a.listen, a.store) else {
        log::error!("--listen and --store are required");
        return ExitCode::FAILURE;
    };
    let opts = receive::ReceiveOptions {
        listen,
        store,
        state_dir: a.state_dir,
        token_file: a.token_file,
        once: a.once,
        force: a.force,
        json: a.json,
        xen_dir: (!a.no_convert).then_some(a.xen_dir),
    };
    match receive::run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("receive: {e}");
            ExitCode::FAILURE
        }
    }
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
        Command::Send(a) => cmd_send(a),
        Command::Receive(a) => cmd_receive(a),
    }
}
