//! `bench ab`: same-host A/B testing of two builds. Each side is a `bench` binary or a git revision
//! (built once into a cached worktree). The chosen backends × workloads run interleaved, A and B once
//! per trial and cell in a seeded random order, each as `BIN run --backend B --workload W --runs R
//! --json F`; the startup metrics are then judged by `results::ab` (permutation test on the
//! difference of medians AND a change beyond the noise). Exit status: 0 no regression, 1 a
//! regression or a failed trial, 2 unusable input (bad path or revision, builds that measured
//! different things), 130 or 143 after Ctrl-C or SIGTERM.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use harness::results::{BenchmarkResult, ResultsFile};
use results::ab::{self, AbOptions, AbReport, Side, SideInfo, Slot, TrialFailure};
use results::comparable::{cell_differences, host_class_differences, CellMismatch, Difference};

use super::check::fraction;
use super::{UsageError, EXIT_FAILURE};

/// Where revisions are built, one directory per commit.
pub const DEFAULT_CACHE: &str = "/var/cache/cvbench/ab";

#[derive(Debug, Args)]
pub struct AbArgs {
    /// Build A: a `bench` binary, or a git revision of the repository (`--repo`) to build.
    #[arg(long, value_name = "PATH|REV")]
    pub a: String,
    /// Build B: a `bench` binary, or a git revision.
    #[arg(long, value_name = "PATH|REV")]
    pub b: String,
    /// Extra environment for A's runs, `KEY=VALUE` (repeatable): e.g. `PATH=/opt/runc-branch:$PATH`
    /// to A/B two runtimes under one `bench`.
    #[arg(long, value_name = "KEY=VALUE", value_parser = env_pair)]
    pub a_env: Vec<(String, String)>,
    /// Extra environment for B's runs, `KEY=VALUE` (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = env_pair)]
    pub b_env: Vec<(String, String)>,
    /// Comma-separated backends.
    #[arg(long, default_value = "container", value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Comma-separated workloads.
    #[arg(long, default_value = "idle", value_delimiter = ',')]
    pub workloads: Vec<String>,
    /// Trials: each runs A and B once per backend × workload.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub trials: u32,
    /// Measured runs per invocation (`bench run --runs`); the samples of a metric are trials × runs.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Warm-up runs per invocation (`bench run --warmup`), not measured. The first container start in
    /// a fresh `bench` process is cold (here 2-16 ms against a warm ~2.2 ms): measured, it spreads the
    /// samples so far that a 10% slowdown went undetected in 20 of 20 A/Bs with `--runs 1 --warmup 0`.
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
    /// Relative change of the medians treated as noise (5% or 0.05).
    #[arg(long, default_value = "5%", value_parser = fraction, value_name = "PCT")]
    pub noise: f64,
    /// Significance level of the permutation test.
    #[arg(long, default_value_t = 0.01, value_parser = super::check::alpha, value_name = "P")]
    pub alpha: f64,
    /// Fewer samples than this on either side gives "not enough samples".
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..), value_name = "N")]
    pub min_samples: u32,
    /// Seed of the run order and the permutation tests (default: from the clock; recorded).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Append the Markdown table to this file (e.g. "$GITHUB_STEP_SUMMARY").
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write the JSON verdict here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The git repository revisions are taken from.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
    /// Where revisions are checked out and built (one directory per commit, reused).
    #[arg(long, default_value = DEFAULT_CACHE, value_name = "DIR")]
    pub cache_dir: PathBuf,
    /// Keep each invocation's results file here (default: a temporary directory, removed).
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Passed to every `bench run` (an existing rootfs directory).
    #[arg(long, value_name = "DIR")]
    pub image: Option<PathBuf>,
    /// Compare even when A and B recorded a different host class, isolation or workload spec
    /// (label differences, such as another runtime version, are always listed, never refused).
    #[arg(long)]
    pub allow_mismatch: bool,
}

fn env_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// A side resolved to a binary.
struct Build {
    info: SideInfo,
    binary: PathBuf,
    env: Vec<(String, String)>,
}

pub fn execute(args: AbArgs) -> anyhow::Result<ExitCode> {
    harness::interrupt::install().context("installing the Ctrl-C handler")?;
    let a = resolve(&args.a, "A", &args.a_env, &args)?;
    let b = resolve(&args.b, "B", &args.b_env, &args)?;
    let seed = args.seed.unwrap_or_else(clock_seed);
    let cells: Vec<(String, String)> = args
        .backends
        .iter()
        .flat_map(|b| args.workloads.iter().map(move |w| (b.clone(), w.clone())))
        .collect();
    if cells.is_empty() {
        return Err(UsageError("no backend × workload to run".into()).into());
    }
    let temp;
    let work = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let order = ab::schedule(args.trials, cells.len(), seed);
    eprintln!(
        "bench ab: {} trials × {} cell(s), A then B in random order (seed {seed})",
        args.trials,
        cells.len()
    );
    let started = Instant::now();
    let mut samples: BTreeMap<(usize, String, Side), Vec<f64>> = BTreeMap::new();
    let mut first: BTreeMap<(usize, Side), (ResultsFile, BenchmarkResult)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut interrupted = false;
    for slot in &order {
        if harness::interrupt::requested() {
            interrupted = true;
            break;
        }
        let (backend, workload) = &cells[slot.cell];
        let build = match slot.side {
            Side::A => &a,
            Side::B => &b,
        };
        let json = work.join(format!(
            "{}-{backend}-{workload}-{}.json",
            slot.trial,
            slot.side.as_str()
        ));
        match invoke(build, &args, backend, workload, &json) {
            Ok(file) => {
                let Some(cell) = file.benchmarks.first().cloned() else {
                    failures.push(failure(slot, &cells, "the results file has no benchmark".into()));
                    continue;
                };
                let names: BTreeSet<String> = cell
                    .runs
                    .iter()
                    .filter(|r| !r.warmup)
                    .flat_map(|r| r.metrics.keys())
                    .filter(|m| harness::metrics::is_startup(m))
                    .cloned()
                    .collect();
                for metric in names {
                    let values = cell.measured_samples(&metric);
                    samples
                        .entry((slot.cell, metric, slot.side))
                        .or_default()
                        .extend(values);
                }
                first.entry((slot.cell, slot.side)).or_insert((file, cell));
            }
            Err(e) => {
                eprintln!(
                    "bench ab: trial {} {} {backend}/{workload}: {e:#}",
                    slot.trial,
                    slot.side.as_str()
                );
                failures.push(failure(slot, &cells, format!("{e:#}")));
            }
        }
    }
    let elapsed_s = started.elapsed().as_secs_f64();

    let (host_differences, cell_diffs, host) = differences(&cells, &first);
    let refused = !host_differences.is_empty()
        || cell_diffs
            .iter()
            .flat_map(|c| &c.differences)
            .any(|d| !d.dimension.starts_with("labels."));
    let opts = AbOptions {
        alpha: args.alpha,
        noise: args.noise,
        min_samples: args.min_samples as usize,
        seed,
    };
    let mut rows = Vec::new();
    let measured: BTreeSet<(usize, &str)> = samples.keys().map(|(i, m, _)| (*i, m.as_str())).collect();
    for (i, metric) in measured {
        let (backend, workload) = &cells[i];
        let side = |s| {
            samples
                .get(&(i, metric.to_string(), s))
                .map_or(&[][..], Vec::as_slice)
        };
        rows.push(ab::judge(
            backend,
            workload,
            metric,
            side(Side::A),
            side(Side::B),
            &opts,
        ));
    }
    let mut report = AbReport {
        a: a.info,
        b: b.info,
        host,
        alpha: args.alpha,
        noise: args.noise,
        seed,
        trials: args.trials,
        runs_per_trial: args.runs,
        order,
        rows,
        failures,
        host_differences,
        cell_differences: cell_diffs,
        verdict: String::new(),
        elapsed_s,
    };
    report.decide();
    if refused && !args.allow_mismatch {
        report.verdict = "not comparable".to_string();
    }
    let table = report.to_markdown();
    print!("{table}");
    if let Some(path) = &args.markdown {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.write_all(table.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("serialising the verdict")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("bench ab: {:.1} s", report.elapsed_s);
    if interrupted {
        return Ok(ExitCode::from(harness::interrupt::exit_status()));
    }
    if report.verdict == "not comparable" {
        return Err(UsageError(
            "A and B measured different things (see the table); pass --allow-mismatch to judge anyway".into(),
        )
        .into());
    }
    if report.rows.is_empty() {
        anyhow::bail!("no startup metric was measured on either side");
    }
    if report.has_regression() || !report.failures.is_empty() {
        return Ok(ExitCode::from(EXIT_FAILURE));
    }
    Ok(ExitCode::SUCCESS)
}

fn failure(slot: &Slot, cells: &[(String, String)], error: String) -> TrialFailure {
    let (backend, workload) = &cells[slot.cell];
    TrialFailure {
        trial: slot.trial,
        side: slot.side,
        backend: backend.clone(),
        workload: workload.clone(),
        error,
    }
}

/// What differs between A's and B's first results of each cell, and the host line.
fn differences(
    cells: &[(String, String)],
    first: &BTreeMap<(usize, Side), (ResultsFile, BenchmarkResult)>,
) -> (Vec<Difference>, Vec<CellMismatch>, String) {
    let mut host = Vec::new();
    let mut mismatches = Vec::new();
    let mut host_line = String::from("(no run completed)");
    for (i, (backend, workload)) in cells.iter().enumerate() {
        let (Some((fa, ca)), Some((fb, cb))) = (first.get(&(i, Side::A)), first.get(&(i, Side::B))) else {
            continue;
        };
        host_line = format!(
            "{} ({}, {} cores, kernel {}, KVM {}, cgroup {})",
            fa.host.hostname,
            fa.host.cpu_model,
            fa.host.cores,
            fa.host.kernel,
            fa.host.kvm,
            fa.host.cgroup_version
        );
        if host.is_empty() {
            host = host_class_differences(&fa.host, &fb.host);
        }
        let differences = cell_differences(ca, cb);
        if !differences.is_empty() {
            mismatches.push(CellMismatch {
                backend: backend.clone(),
                workload: workload.clone(),
                differences,
            });
        }
    }
    (host, mismatches, host_line)
}

/// Runs one `bench run` of `build` and reads its results file.
fn invoke(
    build: &Build,
    args: &AbArgs,
    backend: &str,
    workload: &str,
    json: &Path,
) -> anyhow::Result<ResultsFile> {
    let mut cmd = Command::new(&build.binary);
    cmd.args(["run", "--backend", backend, "--workload", workload])
        .args([
            "--runs",
            &args.runs.to_string(),
            "--warmup",
            &args.warmup.to_string(),
        ])
        .arg("--json")
        .arg(json)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(image) = &args.image {
        cmd.arg("--image").arg(image);
    }
    for (k, v) in &build.env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .with_context(|| format!("starting {}", build.binary.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        anyhow::bail!("{} ({last})", out.status);
    }
    ResultsFile::read(json).map_err(anyhow::Error::from)
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() ^ u64::from(d.subsec_nanos()))
}

/// A side as given: an existing file is a binary; anything else must be a git revision of `--repo`,
/// built into `--cache-dir/<commit>/` (reused when already built).
fn resolve(spec: &str, name: &str, env: &[(String, String)], args: &AbArgs) -> anyhow::Result<Build> {
    let env_text = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let path = Path::new(spec);
    if path.is_file() {
        let binary = path
            .canonicalize()
            .with_context(|| format!("resolving {}", path.display()))?;
        eprintln!("bench ab: {name} = binary {}", binary.display());
        return Ok(Build {
            info: SideInfo {
                spec: spec.to_string(),
                binary: binary.display().to_string(),
                commit: None,
                env: env_text,
            },
            binary,
            env: env.to_vec(),
        });
    }
    let commit = git(
        &args.repo,
        &["rev-parse", "--verify", "--quiet", &format!("{spec}^{{commit}}")],
    )
    .map_err(|e| {
        UsageError(format!(
            "--{}: {spec:?} is neither a file nor a git revision of {} ({e})",
            name.to_lowercase(),
            args.repo.display()
        ))
    })?;
    let binary = build_revision(&args.repo, &args.cache_dir, &commit)?;
    eprintln!(
        "bench ab: {name} = {spec} (commit {commit}), binary {}",
        binary.display()
    );
    Ok(Build {
        info: SideInfo {
            spec: spec.to_string(),
            binary: binary.display().to_string(),
            commit: Some(commit),
            env: env_text,
        },
        binary,
        env: env.to_vec(),
    })
}

/// `git -C repo ARGS`: its trimmed stdout, or an error with git's stderr.
pub(crate) fn git(repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running git")?;
    if !out.status.success() {
        anyhow::bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Checks `commit` out into `CACHE/<commit>/src` (a detached git worktree) and builds every binary
/// of the workspace there with `cargo build --release --workspace --bins`: `bench` alone is not
/// enough, because the images it builds take that revision's `cvbench-workload` and guest init, and
/// its VM backends run that revision's `cvbench-vmm`, found beside `bench`. All are copied to
/// `CACHE/<commit>/`, `bench` last, so its presence means a complete build that later calls reuse.
/// The cargo target directory `CACHE/target` is shared, so the second revision builds incrementally.
fn build_revision(repo: &Path, cache: &Path, commit: &str) -> anyhow::Result<PathBuf> {
    let dir = cache.join(commit);
    let binary = dir.join("bench");
    if binary.is_file() {
        eprintln!("bench ab: {commit} already built in {}", dir.display());
        return Ok(binary);
    }
    let src = dir.join("src");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if !src.join("Cargo.toml").is_file() {
        let src_text = src.display().to_string();
        // A stale registration of this path (its directory removed) would make `worktree add` fail.
        let _ = git(repo, &["worktree", "prune"]);
        git(
            repo,
            &["worktree", "add", "--force", "--detach", &src_text, commit],
        )?;
    }
    // Cargo decides freshness by mtime and names a workspace crate's artifacts by its path relative
    // to the workspace root, so in the shared target directory an artifact compiled from another
    // revision's worktree counts as fresh whenever this worktree's files are older than it (a
    // worktree checked out earlier, rebuilt later): the binary would mix revisions. Touching every
    // source file first makes cargo compile each workspace crate from this worktree.
    touch_tree(&src).with_context(|| format!("updating the file times under {}", src.display()))?;
    let target = cache.join("target");
    eprintln!(
        "bench ab: building {commit} in {} (cargo build --release --workspace --bins, target {})",
        src.display(),
        target.display()
    );
    // The binary's path depends on the checkout's cargo configuration (a `build.target` puts it under
    // target/<triple>/release): take it from cargo's own artifact messages.
    let out = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--workspace",
            "--bins",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(&src)
        .env("CARGO_TARGET_DIR", &target)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo")?;
    if !out.status.success() {
        anyhow::bail!("building {commit} in {} failed: {}", src.display(), out.status);
    }
    let messages = String::from_utf8_lossy(&out.stdout);
    let built = built_executable(&messages, "bench")
        .ok_or_else(|| anyhow::anyhow!("cargo built {commit} but reported no `bench` executable"))?;
    let copy = |from: &Path, to: &Path| {
        let tmp = to.with_extension("tmp");
        std::fs::copy(from, &tmp)
            .and_then(|_| std::fs::rename(&tmp, to))
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))
    };
    for (name, path) in built_executables(&messages) {
        if name != "bench" {
            copy(&path, &dir.join(&name))?;
        }
    }
    copy(&built, &binary)?;
    Ok(binary)
}

/// Sets the modification time of every file under `dir` (except `.git`) to now.
fn touch_tree(dir: &Path) -> std::io::Result<()> {
    let now = std::time::SystemTime::now();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() && entry.file_name() != ".git" {
                pending.push(entry.path());
            } else if kind.is_file() {
                // futimens on a read-only descriptor: the owner may set the times of a read-only file.
                std::fs::File::open(entry.path())?.set_modified(now)?;
            }
        }
    }
    Ok(())
}

/// Every binary target's (name, executable) in cargo's `--message-format=json` output.
fn built_executables(messages: &str) -> Vec<(String, PathBuf)> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| {
            let name = m["target"]["name"].as_str()?.to_string();
            let exe = m["executable"].as_str()?;
            Some((name, PathBuf::from(exe)))
        })
        .collect()
}

/// The executable of binary target `name` in cargo's `--message-format=json` output.
fn built_executable(messages: &str, name: &str) -> Option<PathBuf> {
    messages
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_binary_is_found_in_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"results"},"executable":null}
{"reason":"compiler-artifact","target":{"name":"bench"},"executable":"/c/target/x86_64-unknown-linux-gnu/release/bench"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            built_executable(messages, "bench"),
            Some(PathBuf::from("/c/target/x86_64-unknown-linux-gnu/release/bench"))
        );
        assert_eq!(built_executable(messages, "cvbench-vmm"), None);
        assert_eq!(
            built_executables(messages),
            vec![(
                "bench".to_string(),
                PathBuf::from("/c/target/x86_64-unknown-linux-gnu/release/bench")
            )]
        );
    }

    #[test]
    fn touching_a_tree_makes_every_file_newer_and_leaves_git_alone() {
        let dir = tempfile::tempdir().unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for rel in ["Cargo.toml", "crates/a/src/lib.rs", ".git"] {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "x").unwrap();
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        touch_tree(dir.path()).unwrap();
        let mtime = |rel: &str| {
            std::fs::metadata(dir.path().join(rel))
                .unwrap()
                .modified()
                .unwrap()
        };
        assert!(mtime("Cargo.toml") > old && mtime("crates/a/src/lib.rs") > old);
        // A worktree's `.git` is a file pointing at the repository: touching it is harmless, but
        // a `.git` directory is never walked.
        let git_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(git_dir.path().join(".git/objects")).unwrap();
        std::fs::write(git_dir.path().join(".git/objects/x"), "x").unwrap();
        std::fs::File::options()
            .write(true)
            .open(git_dir.path().join(".git/objects/x"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        touch_tree(git_dir.path()).unwrap();
        let inside = std::fs::metadata(git_dir.path().join(".git/objects/x"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(inside, old);
    }

    #[test]
    fn env_pairs_parse() {
        assert_eq!(env_pair("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(env_pair("=x").is_err() && env_pair("novalue").is_err());
    }
}
