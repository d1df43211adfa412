//! Plots, Markdown and HTML reports from a results file — without re-running anything.
//!
//! [`write_report`] draws every chart the results have data for (SVG and PNG, one module per chart
//! in [`charts`], shared [`style`]), then writes `report.md`, a self-contained `report.html` and a
//! `report.json` digest through the [`export::Exporter`] trait. Every file is replaced atomically (a
//! temporary file in the same directory, then a rename), so an interrupted run or a full disk never
//! leaves a truncated chart or report under its real name.
//!
//! ```no_run
//! # fn main() -> Result<(), report::ReportError> {
//! let results = results::schema::ResultsFile::read(std::path::Path::new("out/results.json"))
//!     .map_err(|e| report::ReportError::Results { reason: e.to_string() })?;
//! let written = report::write_report(&results, std::path::Path::new("out"), &report::ReportOptions::default())?;
//! println!("{}", written.markdown.display());
//! # Ok(()) }
//! ```

pub mod anchors;
pub mod charts;
pub mod export;
pub mod font;
pub mod model;
pub mod pivot;
pub mod style;

use std::path::{Path, PathBuf};

use results::schema::ResultsFile;

pub use charts::{ChartOptions, Figure};
pub use export::{Exporter, Report};
pub use style::{parse_size, Theme};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "no usable font for the charts (tried {}); install Debian's fonts-dejavu-core (apt-get install fonts-dejavu-core) or pass a TTF with --font",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    FontMissing { tried: Vec<PathBuf> },
    #[error("{path} is not a TrueType/OpenType font plotters can use")]
    FontInvalid { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("drawing chart {chart}: {reason}")]
    Draw { chart: String, reason: String },
    #[error("encoding the JSON digest: {reason}")]
    Json { reason: String },
    #[error("{reason}")]
    Results { reason: String },
}

/// How the report looks.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    pub theme: Theme,
    /// Canvas in pixels (also the SVG size).
    pub size: (u32, u32),
    /// Logarithmic time axis for startup CDFs.
    pub log_x: bool,
    /// TTF to draw with; `None` looks in [`font::FONT_CANDIDATES`].
    pub font: Option<PathBuf>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            theme: Theme::Light,
            size: style::DEFAULT_SIZE,
            log_x: false,
            font: None,
        }
    }
}

/// Paths of what [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenReport {
    pub markdown: PathBuf,
    pub html: PathBuf,
    pub json: PathBuf,
    pub csv: PathBuf,
    pub figures: Vec<Figure>,
}

/// Draws every chart into `dir` and writes the Markdown, HTML, JSON and CSV exports there.
pub fn write_report(
    results: &ResultsFile,
    dir: &Path,
    opts: &ReportOptions,
) -> Result<WrittenReport, ReportError> {
    write_report_by(results, dir, opts, None)
}

/// [`write_report`] with tables pivoted on the host dimension `by` (see [`pivot`]) and the startup
/// and memory charts drawn again as grouped bars, one group per value of `by` (see
/// [`charts::by_dimension`]); an unknown dimension is refused, naming the known ones, before
/// anything is drawn.
pub fn write_report_by(
    results: &ResultsFile,
    dir: &Path,
    opts: &ReportOptions,
    by: Option<&str>,
) -> Result<WrittenReport, ReportError> {
    let pivot = match by {
        Some(by) => pivot::section(results, by).map_err(|e| ReportError::Results {
            reason: e.to_string(),
        })?,
        None => Vec::new(),
    };
    font::register(opts.font.as_deref())?;
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let model = model::Model::new(results);
    let style = style::Style::new(opts.theme, opts.size);
    let mut figures = charts::render_all(&model, &style, ChartOptions { log_x: opts.log_x }, dir)?;
    if let Some(by) = by {
        figures.extend(charts::by_dimension::render_all(results, by, &style, dir)?);
    }
    let blocks = export::document_with(&model, &figures, pivot);
    let report = Report {
        model,
        figures,
        blocks,
        style,
    };
    let write = |exporter: &dyn Exporter| -> Result<PathBuf, ReportError> {
        let bytes = exporter.export(&report)?;
        let path = dir.join(exporter.file_name());
        write_atomic(&path, &bytes)?;
        Ok(path)
    };
    Ok(WrittenReport {
        markdown: write(&export::markdown::Markdown)?,
        html: write(&export::html::Html)?,
        json: write(&export::json::Json)?,
        csv: write(&export::csv::Csv)?,
        figures: report.figures,
    })
}

/// A temporary name beside `path` in the same directory (so a rename replaces `path` atomically):
/// `.NAME.tmp-PID.EXT`, keeping the extension, which the PNG encoder goes by.
pub(crate) fn temp_beside(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    path.with_file_name(format!(".{stem}.tmp-{}{ext}", std::process::id()))
}

/// Makes the finished temporary file `tmp` durable and renames it over `path`; removes it on failure,
/// so a full disk leaves the previous `path` (or none), never half a file.
pub(crate) fn commit_temp(tmp: &Path, path: &Path) -> Result<(), ReportError> {
    let done = std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(tmp, path));
    done.map_err(|source| {
        let _ = std::fs::remove_file(tmp);
        ReportError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Writes `bytes` to `path` atomically (a temporary file in the same directory, then a rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let tmp = temp_beside(path);
    if let Err(source) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(ReportError::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    commit_temp(&tmp, path)
}
