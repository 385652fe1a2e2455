//! `diff` and `report`: access reviews from snapshot files, printed or written.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use std::path::Path;

use crate::cli::{DiffArgs, OutputFormat, ReportArgs, ReportFormat};
use crate::review::output::{DiffFormat, write_diff};
use crate::review::{self, ReviewError, csv_report, html};

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

/// Runs `report`: the page or CSV goes to `--output` (written to a temporary file in the
/// same directory and renamed, so a failure never leaves half a report), a one-line
/// note to standard error.
pub fn report(args: &ReportArgs) -> ExitCode {
    match write_report(args) {
        Ok(note) => {
            eprintln!("{note}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn write_report(args: &ReportArgs) -> Result<String, ReviewError> {
    let db = review::open(&args.snapshot)?;
    let previous = args.previous.as_deref().map(review::open).transpose()?;
    let render = |out: &mut dyn Write| -> Result<String, ReviewError> {
        Ok(match args.format {
            ReportFormat::Html => {
                let stats = html::write_report(&db, previous.as_ref(), out)?;
                format!(
                    "report: {} users in {} pages, {} admins, {} disabled users with access",
                    stats.users, stats.pages, stats.admins, stats.disabled_with_access
                )
            }
            ReportFormat::Csv => {
                let rows = csv_report::write_csv(&db, out)?;
                format!("report: {rows} rows")
            }
        })
    };
    if args.output == Path::new("-") {
        let stdout = io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let note = render(&mut out)?;
        out.flush()?;
        return Ok(note);
    }
    let dir = match args.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let mut out = BufWriter::new(tmp);
    let note = render(&mut out)?;
    let tmp = out.into_inner().map_err(|e| e.into_error())?;
    tmp.persist(&args.output).map_err(|e| e.error)?;
    Ok(format!("{note}; written to {}", args.output.display()))
}
