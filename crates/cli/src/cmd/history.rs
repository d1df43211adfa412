//! `bench history`: the startup history behind `bench trend` (`results/history.jsonl`, one JSON line
//! per measured commit; see `results::history`). `append` adds a results file's startup summary for
//! a commit — HEAD of `--repo` unless `--commit` names one, refusing uncommitted changes to tracked
//! files unless `--allow-dirty` — with the regressions and improvements of any `bench ab` / `bench
//! check` verdict file given with `--verdict`. `list` validates the history and lists it.
//!
//! Exit status: 0 appended (listed), 2 unusable input (unreadable or malformed results, verdict or
//! history file — a malformed history line is named by its number —, a dirty tree, a commit that is
//! not the one measured), 1 the history could not be written.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use harness::results::ResultsFile;
use results::history::{self, CommitInfo, HistoryEntry, HistoryError, HostClass, DEFAULT_HISTORY_FILE};

use super::ab::git;
use super::UsageError;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(subcommand)]
    pub action: HistoryAction,
}

#[derive(Debug, Subcommand)]
pub enum HistoryAction {
    /// Append a results file's startup summary (commit, date, host, each startup metric's n, median
    /// and 95% CI per cell) to the history as one JSON line.
    Append(AppendArgs),
    /// Validate the history (a malformed line is named by its number) and list its entries.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The results file (`bench compare --out DIR` writes DIR/results.json).
    #[arg(value_name = "RESULTS.json")]
    pub results: PathBuf,
    /// The history file (created with its directory when missing).
    #[arg(long, default_value = DEFAULT_HISTORY_FILE, value_name = "FILE")]
    pub history: PathBuf,
    /// The commit that was measured (default: HEAD of --repo).
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,
    /// The git repository the commit belongs to.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
    /// Record HEAD even when tracked files have uncommitted changes (the line says `dirty`).
    #[arg(long)]
    pub allow_dirty: bool,
    /// Record a partial results file (interrupted or failed part-way; the line says `partial`).
    #[arg(long)]
    pub allow_partial: bool,
    /// A `bench ab --json` or `bench check --json` verdict about this commit (repeatable): its
    /// regressions and improvements are marked on the trend.
    #[arg(long, value_name = "FILE")]
    pub verdict: Vec<PathBuf>,
    /// Free text on the conditions of the run, kept with the line (e.g. "host loaded: 4 builds").
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The history file.
    #[arg(long, default_value = DEFAULT_HISTORY_FILE, value_name = "FILE")]
    pub history: PathBuf,
}

pub fn execute(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        HistoryAction::Append(a) => append(a),
        HistoryAction::List(a) => list(a),
    }
}

/// A history error as the exit status wants it: the file could not be written (1), or it is not
/// usable input (2).
fn history_error(e: HistoryError) -> anyhow::Error {
    match e {
        HistoryError::Write { .. } => anyhow::Error::new(e),
        other => anyhow::Error::new(UsageError(other.to_string())),
    }
}

fn append(args: AppendArgs) -> anyhow::Result<ExitCode> {
    let results = ResultsFile::read(&args.results).map_err(|e| UsageError(e.to_string()))?;
    let commit = resolve_commit(&args)?;
    let verdicts = args
        .verdict
        .iter()
        .map(|path| history::read_verdict(path, &commit.sha))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UsageError(e.to_string()))?;
    let recorded_at = results::schema::rfc3339_utc(std::time::SystemTime::now());
    let entry = HistoryEntry::from_results(
        &results,
        commit,
        args.note.clone(),
        verdicts,
        args.allow_partial,
        recorded_at,
    )
    .map_err(|e| UsageError(format!("{}: {e}", args.results.display())))?;
    let line = history::append_entry(&args.history, &entry).map_err(history_error)?;
    let metrics: usize = entry.cells.iter().map(|c| c.metrics.len()).sum();
    let marks: usize = entry.verdicts.iter().map(|v| v.marks.len()).sum();
    println!(
        "{}:{line}: commit {}{} ({}), {} cell(s), {metrics} startup figure(s), {} verdict file(s) with \
         {marks} mark(s); host {}",
        args.history.display(),
        entry.short_commit(),
        if entry.dirty { " (dirty)" } else { "" },
        entry.day(),
        entry.cells.len(),
        entry.verdicts.len(),
        entry.host_class()
    );
    Ok(ExitCode::SUCCESS)
}

/// The commit the results are about: `--commit` (resolved in `--repo` when git knows it, else taken
/// as given if it looks like a commit id), or HEAD of `--repo` with a clean tree.
fn resolve_commit(args: &AppendArgs) -> anyhow::Result<CommitInfo> {
    let date_of = |sha: &str| git(&args.repo, &["show", "-s", "--format=%cI", sha]).ok();
    if let Some(given) = &args.commit {
        return match git(
            &args.repo,
            &["rev-parse", "--verify", "--quiet", &format!("{given}^{{commit}}")],
        ) {
            Ok(sha) => Ok(CommitInfo {
                date: date_of(&sha).map(|d| utc(&d)),
                sha,
                dirty: false,
            }),
            Err(_) if history::is_commit_id(given) => {
                eprintln!(
                    "bench history: commit {given} is not in {}; recorded as given, without a date",
                    args.repo.display()
                );
                Ok(CommitInfo {
                    sha: given.to_ascii_lowercase(),
                    date: None,
                    dirty: false,
                })
            }
            Err(e) => Err(UsageError(format!(
                "--commit {given:?} is neither a commit of {} nor a commit id ({e})",
                args.repo.display()
            ))
            .into()),
        };
    }
    let sha = git(&args.repo, &["rev-parse", "--verify", "HEAD^{commit}"]).map_err(|e| {
        UsageError(format!(
            "no --commit given and {} has no HEAD commit ({e}); pass --commit SHA",
            args.repo.display()
        ))
    })?;
    let changed = uncommitted_changes(&args.repo, &args.history)?;
    if !changed.is_empty() && !args.allow_dirty {
        let shown: Vec<&str> = changed.iter().take(5).map(String::as_str).collect();
        return Err(UsageError(format!(
            "{} has uncommitted changes to tracked files ({}{}), so HEAD is not what was measured; \
             commit them, pass --commit with the commit measured, or --allow-dirty to record it \
             marked dirty",
            args.repo.display(),
            shown.join(", "),
            if changed.len() > shown.len() { ", ..." } else { "" }
        ))
        .into());
    }
    Ok(CommitInfo {
        date: date_of(&sha).map(|d| utc(&d)),
        sha,
        dirty: !changed.is_empty(),
    })
}

/// Tracked files with uncommitted changes in `repo`, except the history file itself (appending
/// changes it, and that is not a change to what was measured).
fn uncommitted_changes(repo: &Path, history_file: &Path) -> anyhow::Result<Vec<String>> {
    // Tracked files whose content differs from HEAD, staged or not (NUL-separated: no quoting).
    let changed = git(repo, &["diff", "--name-only", "-z", "HEAD", "--"])
        .map_err(|e| UsageError(format!("cannot tell whether {} is clean: {e}", repo.display())))?;
    let top = git(repo, &["rev-parse", "--show-toplevel"])
        .map(PathBuf::from)
        .ok();
    let history_rel = top.and_then(|top| {
        let abs = absolute(history_file)?;
        abs.strip_prefix(absolute(&top)?).ok().map(Path::to_path_buf)
    });
    Ok(changed
        .split('\0')
        .filter(|p| !p.is_empty())
        .filter(|p| history_rel.as_deref() != Some(Path::new(p)))
        .map(str::to_string)
        .collect())
}

/// `path` made absolute with symlinks resolved; a file that does not exist yet is resolved through
/// its directory.
fn absolute(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Some(p);
    }
    let name = path.file_name()?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some(dir.canonicalize().ok()?.join(name))
}

/// git's `%cI` (`2026-11-29T22:46:10+01:00`) in UTC (`2026-11-29T21:46:10Z`), so dates from
/// committers in different zones sort as time. Text that does not parse is kept as it is.
fn utc(iso: &str) -> String {
    parse_offset_time(iso).unwrap_or_else(|| iso.to_string())
}

fn parse_offset_time(iso: &str) -> Option<String> {
    let (date, rest) = iso.split_once('T')?;
    let mut d = date.split('-').map(str::parse::<i64>);
    let (y, mo, da) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (time, offset_s) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (t, off) = rest.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let mut hm = off[1..].split(':').map(str::parse::<i64>);
        let (h, m) = (hm.next()?.ok()?, hm.next().unwrap_or(Ok(0)).ok()?);
        (t, sign * (h * 3600 + m * 60))
    };
    let mut t = time.split(':').map(str::parse::<i64>);
    let (h, mi, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    let secs = u64::try_from(secs).ok()?;
    Some(results::schema::rfc3339_utc(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
    ))
}

fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let entries = history::read(&args.history).map_err(history_error)?;
    let mut classes: Vec<HostClass> = Vec::new();
    println!(
        "{:>4}  {:<7}  {:<10}  {:<5}  {:>5}  {:>7}  {:>8}  note",
        "line", "commit", "date", "class", "cells", "figures", "verdicts"
    );
    for (i, e) in entries.iter().enumerate() {
        let class = e.host_class();
        let idx = classes.iter().position(|c| *c == class).unwrap_or_else(|| {
            classes.push(class);
            classes.len() - 1
        });
        let figures: usize = e.cells.iter().map(|c| c.metrics.len()).sum();
        let mut note = e.note.clone().unwrap_or_default();
        if e.dirty {
            note.insert_str(0, "[dirty] ");
        }
        if e.partial {
            note.insert_str(0, "[partial] ");
        }
        println!(
            "{:>4}  {:<7}  {:<10}  {:<5}  {:>5}  {:>7}  {:>8}  {}",
            i + 1,
            e.short_commit(),
            e.day(),
            report::charts::trend::class_name(idx),
            e.cells.len(),
            figures,
            e.verdicts.len(),
            note
        );
    }
    println!();
    for (i, c) in classes.iter().enumerate() {
        println!("{}: {c}", report::charts::trend::class_name(i));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cli;
    use clap::Parser;

    #[test]
    fn append_parses_its_flags_with_the_default_history() {
        let cli = Cli::try_parse_from([
            "bench",
            "history",
            "append",
            "out/results.json",
            "--commit",
            "abc1234",
            "--verdict",
            "ab.json",
            "--verdict",
            "check.json",
            "--note",
            "host loaded",
            "--allow-dirty",
        ])
        .unwrap();
        let crate::Command::History(HistoryArgs {
            action: HistoryAction::Append(a),
        }) = cli.command
        else {
            panic!("not history append: {cli:?}");
        };
        assert_eq!(a.results, PathBuf::from("out/results.json"));
        assert_eq!(a.history, PathBuf::from(DEFAULT_HISTORY_FILE));
        assert_eq!(a.commit.as_deref(), Some("abc1234"));
        assert_eq!(
            a.verdict,
            vec![PathBuf::from("ab.json"), PathBuf::from("check.json")]
        );
        assert_eq!(a.note.as_deref(), Some("host loaded"));
        assert!(a.allow_dirty && !a.allow_partial);
        // The results file is required; unknown flags are refused.
        assert!(Cli::try_parse_from(["bench", "history", "append"]).is_err());
        assert!(Cli::try_parse_from(["bench", "history", "append", "r.json", "--sha", "x"]).is_err());
        let cli = Cli::try_parse_from(["bench", "history", "list", "--history", "h.jsonl"]).unwrap();
        assert!(matches!(
            cli.command,
            crate::Command::History(HistoryArgs {
                action: HistoryAction::List(ListArgs { ref history })
            }) if history == Path::new("h.jsonl")
        ));
    }

    #[test]
    fn commit_dates_become_utc() {
        assert_eq!(utc("2026-11-29T22:46:10+01:00"), "2026-11-29T21:46:10Z");
        assert_eq!(utc("2026-11-29T21:46:10Z"), "2026-11-29T21:46:10Z");
        assert_eq!(utc("2026-03-01T01:00:00+02:30"), "2026-02-28T22:30:00Z");
        assert_eq!(utc("2026-12-31T20:00:00-05:00"), "2027-01-01T01:00:00Z");
        assert_eq!(utc("yesterday"), "yesterday");
    }
}
