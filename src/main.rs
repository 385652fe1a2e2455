//! `confluence-operator`: wiring only; the work lives in the library.

use std::process::ExitCode;

use clap::Parser;
use confluence_operator::cli::{Cli, Command};
use confluence_operator::{api, review_command, run_command, sync_command, telemetry};

/// glibc's allocator gives every thread that allocates an arena of its own and keeps
/// what is freed in it: with the async runtime's workers, the snapshot writer and the
/// grant loader's threads, that held about 100 MiB more than the live data of a sync.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // kube and reqwest share one rustls provider; installing it first avoids rustls
    // picking (or panicking over) a process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Crd(args) => match print_or_write_crds(args.output_dir.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            telemetry::init(args.log_format);
            run_command::run(args)
        }
        Command::Sync(args) => {
            telemetry::init(args.log_format);
            sync_command::run(args)
        }
        Command::Diff(args) => review_command::diff(&args),
        Command::Report(args) => review_command::report(&args),
    }
}

fn print_or_write_crds(dir: Option<&std::path::Path>) -> Result<(), String> {
    let render = |e: serde_yaml::Error| format!("could not render the CRDs: {e}");
    match dir {
        None => {
            print!("{}", api::crds_yaml().map_err(render)?);
            Ok(())
        }
        Some(dir) => {
            for (name, yaml) in api::crd_files().map_err(render)? {
                let path = dir.join(name);
                std::fs::write(&path, yaml)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            Ok(())
        }
    }
}
