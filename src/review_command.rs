//! `diff` and `report`: access reviews from snapshot files, printed or written.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use crate::cli::{DiffArgs, OutputFormat};
use crate::review::output::{DiffFormat, write_diff};

/// Runs `diff`: the changes go to standard output, errors to standard error with a
/// non-zero exit.
pub fn diff(args: &DiffArgs) -> ExitCode {
    let format = match args.format {
        OutputFormat::Text => DiffFormat::Text,
        OutputFormat::Json => DiffFormat::Json,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = write_diff(&args.old, &args.new, format, &mut out)
        .and_then(|_| out.flush().map_err(Into::into));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
