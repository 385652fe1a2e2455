//! `confluence-operator`: wiring only; the work lives in the library.

use std::process::ExitCode;

use clap::Parser;
use confluence_operator::cli::{Cli, Command};
use confluence_operator::{api, run_command, sync_command, telemetry};

fn main() -> ExitCode {
    // kube and reqwest share one rustls provider; installing it first avoids rustls
    // picking (or panicking over) a process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match api::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: could not render the CRDs: {err}");
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
    }
}
