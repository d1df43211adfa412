//! What a command checks before its first launch: that every output path can be written and that
//! the chart font loads. A benchmark runs for minutes; finding out at the end that `--out` is a
//! file or `--json` points into `/proc` would lose every figure.
//!
//! Each check really writes (creates and removes a probe file in the target directory), because
//! permission bits do not tell the whole story (read-only mounts, procfs, root on NFS). Errors are
//! [`UsageError`]s naming the flag and the path, with the cause in words.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::cmd::UsageError;

/// `--json FILE` / `--markdown FILE`: the file may exist (a regular file, replaced or appended to);
/// its directory must already exist (it is not created: a typo in a path should not grow
/// directories) and accept new files.
pub fn output_file(flag: &str, path: &Path) -> Result<(), UsageError> {
    let fail = |why: String| UsageError(format!("{flag} {}: {why}", path.display()));
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(fail("is a directory, not a file".into())),
        Ok(m) if !m.is_file() => return Err(fail("is not a regular file".into())),
        Ok(_) | Err(_) => {}
    }
    let dir = parent_of(path);
    match fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(fail(format!("{} is not a directory", dir.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(fail(format!(
                "directory {} does not exist (create it first)",
                dir.display()
            )))
        }
        Err(e) => return Err(fail(format!("cannot reach {}: {}", dir.display(), describe(&e)))),
    }
    dir_accepts_files(&dir).map_err(fail)
}

/// `--out DIR`: created (with its parents) if missing, as the default output directory must be;
/// an existing path must be a directory that accepts new files.
pub fn output_dir(flag: &str, dir: &Path) -> Result<(), UsageError> {
    let fail = |why: String| UsageError(format!("{flag} {}: {why}", dir.display()));
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(fail("exists and is not a directory".into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create it: {}", why_not(&e, dir))))?;
        }
        Err(e) => return Err(fail(describe(&e))),
    }
    dir_accepts_files(dir).map_err(fail)
}

/// Name of the lock file in an output directory.
pub const LOCK_FILE: &str = ".cvbench.lock";

/// An exclusive `flock` on `DIR/.cvbench.lock`, held while a command writes into `DIR`; released when
/// dropped (or when the process dies, however it dies). The file itself stays: unlinking it would let
/// a third command lock a new inode while a second still holds the old one.
#[derive(Debug)]
pub struct OutputLock {
    _lock: nix::fcntl::Flock<fs::File>,
}

/// Takes the output directory's lock, or refuses when another `bench` holds it (two commands writing
/// one `results.json` would silently overwrite each other's figures). Call after [`output_dir`].
pub fn lock_output_dir(flag: &str, dir: &Path) -> Result<OutputLock, UsageError> {
    use nix::fcntl::{Flock, FlockArg};
    use std::io::{Read as _, Seek as _, Write as _};
    let path = dir.join(LOCK_FILE);
    let fail = |why: String| UsageError(format!("{flag} {}: {why}", dir.display()));
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| fail(format!("cannot open {}: {}", path.display(), describe(&e))))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another bench".to_string()
            } else {
                format!("another bench (pid {holder})")
            };
            return Err(fail(format!(
                "{who} is writing its results here; wait for it or choose another {flag}"
            )));
        }
        Err((_, errno)) => return Err(fail(format!("cannot lock {}: {}", path.display(), errno.desc()))),
    };
    // Who holds it, for the message above; best effort.
    let _ = lock.set_len(0);
    let _ = lock.rewind();
    let _ = write!(lock, "{}", std::process::id());
    Ok(OutputLock { _lock: lock })
}

/// `--font TTF` (or the default font when none is given): loads and registers it now, so a missing
/// or broken font fails before the benchmark instead of after it.
pub fn report_font(font: Option<&Path>) -> anyhow::Result<()> {
    match report::font::register(font) {
        Ok(_) => Ok(()),
        Err(e) if font.is_some() => Err(UsageError(format!("--font: {e}")).into()),
        Err(e) => Err(anyhow::anyhow!("{e} (or skip the report with --no-report)")),
    }
}

/// The directory a file path lives in (`.` for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates and removes a probe file in `dir`: the one test that covers modes, read-only mounts,
/// pseudo file systems and full disks alike.
fn dir_accepts_files(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!(".cvbench-write-test-{}", std::process::id()));
    match fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("cannot write in {}: {}", dir.display(), why_not(&e, dir))),
    }
}

/// Why a file could not be created in `dir`, in words. procfs and sysfs answer "No such file or
/// directory" to a create, which misleads; they are named instead.
fn why_not(e: &io::Error, dir: &Path) -> String {
    if let Some(fs_name) = pseudo_fs(dir) {
        return format!("it is on {fs_name}, which holds no ordinary files");
    }
    describe(e)
}

/// The name of the pseudo file system `path` (or its nearest existing ancestor) is on, if any.
fn pseudo_fs(path: &Path) -> Option<&'static str> {
    use nix::sys::statfs::{statfs, PROC_SUPER_MAGIC, SYSFS_MAGIC};
    let existing = path.ancestors().find(|p| p.exists())?;
    let kind = statfs(existing).ok()?.filesystem_type();
    if kind == PROC_SUPER_MAGIC {
        Some("procfs (/proc)")
    } else if kind == SYSFS_MAGIC {
        Some("sysfs (/sys)")
    } else {
        None
    }
}

/// An I/O error without Rust's "(os error N)" suffix: the words are enough for a user, and the
/// suffix is what made messages repeat it.
pub fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_where_a_directory_is_wanted_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, "x").unwrap();
        let err = output_dir("--out", &file).unwrap_err();
        assert!(
            err.0.starts_with("--out ") && err.0.contains("not a directory"),
            "{}",
            err.0
        );
        let err = output_file("--json", tmp.path()).unwrap_err();
        assert!(err.0.contains("is a directory"), "{}", err.0);
    }

    #[test]
    fn a_missing_parent_of_an_output_file_is_not_created() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("no/such/dir/x.json");
        let err = output_file("--json", &path).unwrap_err();
        assert!(err.0.contains("does not exist"), "{}", err.0);
        assert!(!tmp.path().join("no").exists());
        // A missing output directory is created (it is the default one's case).
        let out = tmp.path().join("a/b");
        output_dir("--out", &out).unwrap();
        assert!(out.is_dir());
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "probe file left behind");
        output_file("--json", &out.join("r.json")).unwrap();
    }

    #[test]
    fn procfs_is_named_instead_of_no_such_file() {
        if !Path::new("/proc/version").exists() {
            println!("skipped: no /proc");
            return;
        }
        for (flag, path) in [("--json", "/proc/version"), ("--markdown", "/proc/x.md")] {
            let err = output_file(flag, Path::new(path)).unwrap_err();
            assert!(err.0.contains("procfs"), "{}", err.0);
            assert!(!err.0.contains("No such file"), "{}", err.0);
        }
    }

    #[test]
    fn a_read_only_directory_is_refused_for_non_root() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let ro = tmp.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        let probe = fs::File::create(ro.join("x"));
        if probe.is_ok() {
            println!("skipped: running as root, modes do not stop writes");
            return;
        }
        let err = output_dir("--out", &ro).unwrap_err();
        assert!(err.0.contains("cannot write"), "{}", err.0);
    }

    #[test]
    fn a_second_writer_to_the_same_output_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let first = lock_output_dir("--out", tmp.path()).unwrap();
        // flock locks belong to the open file description, so a second open in this process
        // conflicts exactly as another process would.
        let err = lock_output_dir("--out", tmp.path()).unwrap_err();
        assert!(
            err.0.contains(&format!("pid {}", std::process::id())) && err.0.contains("another --out"),
            "{}",
            err.0
        );
        drop(first);
        let _again = lock_output_dir("--out", tmp.path()).unwrap();
    }

    #[test]
    fn io_errors_lose_the_os_error_suffix() {
        let e = io::Error::from_raw_os_error(libc_enotdir());
        assert!(e.to_string().contains("(os error"));
        assert!(!describe(&e).contains("os error"), "{}", describe(&e));
    }

    fn libc_enotdir() -> i32 {
        nix::errno::Errno::ENOTDIR as i32
    }

    #[test]
    fn a_missing_font_is_a_usage_error_naming_it() {
        // plotters' font table is global: another test in this process may have registered one.
        let Err(err) = report_font(Some(Path::new("/nonexistent/font.ttf"))) else {
            println!("skipped: a font is already registered in this test process");
            return;
        };
        assert!(err.chain().any(|c| c.is::<UsageError>()), "{err}");
        assert!(err.to_string().contains("/nonexistent/font.ttf"), "{err}");
    }
}
