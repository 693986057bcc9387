//! `p2xen mkinitramfs` (hidden; used by build/live).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, clap::Args)]
pub struct MkinitramfsArgs {
    /// The spec listing dirs, files, links, nodes, busybox and modules.
    #[arg(long)]
    pub spec: PathBuf,
    /// `lib/modules/VERSION` of the unpacked kernel (with modules.dep).
    #[arg(long)]
    pub modules_dir: Option<PathBuf>,
    /// NAME=VALUE for `${NAME}` in the spec.
    #[arg(long = "var", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// zstd level.
    #[arg(long, default_value_t = 19)]
    pub level: i32,
    #[arg(short, long)]
    pub output: PathBuf,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))
}

pub fn run(a: MkinitramfsArgs) -> ExitCode {
    let opts = super::Options {
        spec: a.spec,
        modules_dir: a.modules_dir,
        output: a.output,
        vars: a.vars.into_iter().collect(),
        level: a.level,
    };
    match super::build(&opts) {
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
