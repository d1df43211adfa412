//! The services image: Debian bookworm with `nginx-light` and `mariadb-server`, their dependencies,
//! the cvbench supervisor (`/bin/cvbench-workload`), and a MariaDB data directory initialised at
//! build time. Built once per recipe, cached under `<cache_root>/images/<digest>/` like the default
//! image, and given to every backend with `--image services` (VMs get an ext4 disk made from the
//! same directory by [`crate::ext4_disk_image`]).
//!
//! # Why debootstrap
//!
//! `debootstrap --variant=minbase --include=nginx-light,mariadb-server` rather than `apt-get
//! download` plus `dpkg-deb -x`: the daemons must start *as their packages start them*, and that
//! needs what the maintainer scripts do (the `mysql` and `www-data` users, the owners and modes of
//! `/var/lib/mysql` and `/var/log/nginx`, `/etc/mysql/my.cnf`'s alternatives, the nginx site link,
//! the shell and coreutils `mariadb-install-db` runs on). Unpacking `.deb`s would mean re-writing
//! those scripts by hand, and resolving dependencies by hand, where debootstrap runs Debian's own.
//! It also keeps the downloaded packages in `<cache_root>/debs`, so a rebuild needs no network.
//!
//! # Determinism
//!
//! The digest is SHA-256 over every path, file type, mode, owner, symlink target and file byte,
//! in name order, after the tree is normalised: logs, apt lists and archives, `*-old` and `*-`
//! backups, the ld.so auxiliary cache and the host's `resolv.conf` are removed, `/etc/hostname`,
//! `/etc/hosts` and `/etc/machine-id` are written by the recipe, the password-change day in
//! `/etc/shadow` is fixed, and every mtime is set to 2024-01-01. The one exception is MariaDB's
//! data directory: `mariadb-install-db` writes table UUIDs and creation times into every `.frm`,
//! Aria and InnoDB file, so two initialisations never agree byte for byte. The digest covers how it
//! was made instead: the server's version and the exact SQL and flags ([`DATADIR_RECIPE`]). Two
//! builds from the same packages therefore have the same digest (a test builds the normalisation
//! twice), and the manifest lists every file's length, checked on reuse.
//!
//! # Cache
//!
//! ```text
//! <cache_root>/services/<input key>    the digest built from these inputs (recipe, suite, mirror,
//!                                      packages, supervisor binary)
//! <cache_root>/images/<digest>/        the image itself, its manifest at etc/cvbench-image.json
//! <cache_root>/debs/                   debootstrap's package cache
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};
use workload::spec::{
    MARIADB_DATABASE, MARIADB_INIT_DATADIR, MARIADB_PASSWORD, MARIADB_USER, WORKLOAD_PATH_IN_IMAGE,
};

use crate::image::{Image, FIXED_MTIME_S, IMAGE_MANIFEST_PATH};
use crate::locate::check_static_executable;
use crate::publish::{cache_dir, discard, rename_into_place, temp_sibling, TempGuard};
use crate::RootfsError;

/// The name `--image` and `bench image build` know this image by.
pub const SERVICES_IMAGE: &str = "services";
/// Bump when the recipe changes: part of the digest and of the input key.
pub const SERVICES_RECIPE_VERSION: &str = "cvbench-services-v1";
pub const SERVICES_SUITE: &str = "bookworm";
pub const SERVICES_MIRROR: &str = "http://deb.debian.org/debian";
/// What is installed on top of `minbase`.
pub const SERVICES_PACKAGES: [&str; 2] = ["nginx-light", "mariadb-server"];
/// MariaDB's data directory in the image (initialised at build time).
pub const MARIADB_DATADIR: &str = "/var/lib/mysql";
/// Where the login for clients from outside is created (also the `--init-file` of a first start).
pub const USERS_SQL_PATH: &str = "etc/mysql/cvbench-users.sql";
/// cvbench's server options, read after Debian's `50-server.cnf`.
pub const SERVER_CNF_PATH: &str = "etc/mysql/mariadb.conf.d/60-cvbench.cnf";
/// How the data directory is made, hashed in place of its bytes (see the module docs).
pub const DATADIR_RECIPE: &str =
    "postinst mariadb-install-db, then mariadbd --bootstrap --user=mysql < cvbench-users.sql";
/// Directories every cvbench image has (VM mount points, the oltp data dir).
const EXTRA_DIRS: [&str; 4] = ["mnt/root", "mnt/scratch", "var/lib/cvbench", "srv/www"];

/// What the build reports as it goes (the command line draws it with indicatif).
pub trait BuildProgress {
    /// A new stage: `index` of `total`.
    fn stage(&self, index: usize, total: usize, what: &str);
    /// A line of the current stage's tool output (debootstrap's `I: Unpacking ...`).
    fn detail(&self, line: &str);
}

/// Progress that goes nowhere (tests).
pub struct NoProgress;
impl BuildProgress for NoProgress {
    fn stage(&self, _: usize, _: usize, _: &str) {}
    fn detail(&self, _: &str) {}
}

/// How a call to [`services_image`] went.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicesBuild {
    pub image: Image,
    /// Whether a cached image was reused (nothing was built).
    pub cached: bool,
    /// Wall time of the call.
    pub seconds: f64,
    /// `package version` lines of the installed daemons (from the image's dpkg status).
    pub versions: Vec<String>,
}

/// The SQL that creates the client login and database, idempotent. The leading `FLUSH PRIVILEGES`
/// loads the grant tables, which `mariadbd --bootstrap` starts without (`CREATE USER` would fail).
pub fn users_sql() -> String {
    format!(
        "FLUSH PRIVILEGES;\n\
         CREATE DATABASE IF NOT EXISTS {MARIADB_DATABASE};\n\
         CREATE USER IF NOT EXISTS '{MARIADB_USER}'@'%' IDENTIFIED BY '{MARIADB_PASSWORD}';\n\
         GRANT ALL PRIVILEGES ON {MARIADB_DATABASE}.* TO '{MARIADB_USER}'@'%';\n\
         FLUSH PRIVILEGES;\n"
    )
}

/// Server options: listen on the instance's address (Debian binds 127.0.0.1, which the client
/// namespace cannot reach; the official image does the same), and no reverse DNS per connection.
pub fn server_cnf() -> String {
    "# cvbench: reached from the harness's client network namespace\n[mysqld]\nbind-address = 0.0.0.0\nskip-name-resolve\n".to_string()
}

/// The key of the inputs: same key, same recipe, so a cached digest can be reused without building.
pub fn input_key(workload_binary: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [
        SERVICES_RECIPE_VERSION,
        SERVICES_SUITE,
        SERVICES_MIRROR,
        &SERVICES_PACKAGES.join(","),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(users_sql().as_bytes());
    h.update(server_cnf().as_bytes());
    h.update(DATADIR_RECIPE.as_bytes());
    h.update(workload_binary);
    hex::encode(h.finalize())
}

/// Builds the services image with `workload_bin` as its supervisor, or reuses the cached one for
/// the same inputs (unless `rebuild`).
pub fn services_image(
    cache_root: &Path,
    workload_bin: &Path,
    rebuild: bool,
    progress: &dyn BuildProgress,
) -> Result<ServicesBuild, RootfsError> {
    let started = Instant::now();
    check_static_executable(workload_bin)?;
    let binary = fs::read(workload_bin).map_err(RootfsError::io("reading", workload_bin))?;
    let key = input_key(&binary);
    let pointers = cache_dir(cache_root, "services")?;
    let pointer = pointers.join(&key);
    if !rebuild {
        if let Some(image) = cached(&pointer)? {
            let versions = daemon_versions(&image.dir);
            return Ok(ServicesBuild {
                image,
                cached: true,
                seconds: started.elapsed().as_secs_f64(),
                versions,
            });
        }
    }
    let images = cache_dir(cache_root, "images")?;
    // `.tmp-`: a build killed outright is pruned by the next `cache_dir` an hour later.
    let tmp = TempGuard::new(temp_sibling(&images.join(format!("services-{key}")), "tmp"));
    let _mounts = UnmountBelow(tmp.path().to_path_buf());
    let debs = cache_dir(cache_root, "debs")?;
    const STAGES: usize = 5;
    progress.stage(
        1,
        STAGES,
        "debootstrap --variant=minbase (nginx-light, mariadb-server)",
    );
    debootstrap(tmp.path(), &debs, progress)?;
    progress.stage(2, STAGES, "adding the supervisor and cvbench's configuration");
    add_cvbench_files(tmp.path(), &binary)?;
    progress.stage(
        3,
        STAGES,
        "creating the sbtest login in the data directory (mariadbd --bootstrap)",
    );
    bootstrap_users(tmp.path())?;
    progress.stage(4, STAGES, "normalising (logs, caches, backups, times)");
    normalise(tmp.path())?;
    progress.stage(5, STAGES, "hashing and publishing");
    let digest = tree_digest(tmp.path())?;
    write_manifest(tmp.path(), &digest)?;
    set_fixed_times(tmp.path())?;
    let dir = images.join(&digest);
    if dir.exists() {
        discard(&dir)?;
    }
    if rename_into_place(tmp.path(), &dir)? {
        tmp.keep();
    } else {
        drop(tmp);
    }
    fs::write(&pointer, format!("{digest}\n")).map_err(RootfsError::io("writing", &pointer))?;
    let image = crate::image_from_dir(&dir)?;
    let versions = daemon_versions(&image.dir);
    Ok(ServicesBuild {
        image,
        cached: false,
        seconds: started.elapsed().as_secs_f64(),
        versions,
    })
}

/// On drop (before the build directory is removed): unmounts whatever a failed debootstrap left
/// mounted below the directory (its `/proc` and `/sys`), deepest first, so removing the tree can
/// never walk into a live proc or sysfs.
struct UnmountBelow(PathBuf);

impl Drop for UnmountBelow {
    fn drop(&mut self) {
        for m in mounts_below(
            &self.0,
            &fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        ) {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Mount points below `dir` in a mountinfo text, deepest first.
fn mounts_below(dir: &Path, mountinfo: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

/// The services image already built for these inputs, if its pointer and directory are intact.
fn cached(pointer: &Path) -> Result<Option<Image>, RootfsError> {
    let Ok(text) = fs::read_to_string(pointer) else {
        return Ok(None);
    };
    let digest = text.trim();
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let Some(images) = pointer.parent().and_then(Path::parent).map(|r| r.join("images")) else {
        return Ok(None);
    };
    match crate::image_from_dir(&images.join(digest)) {
        Ok(image) if image.digest == digest => Ok(Some(image)),
        _ => Ok(None),
    }
}

/// The cached services image for the supervisor at `workload_bin`, without building.
pub fn cached_services_image(cache_root: &Path, workload_bin: &Path) -> Result<Option<Image>, RootfsError> {
    let binary = fs::read(workload_bin).map_err(RootfsError::io("reading", workload_bin))?;
    cached(&cache_root.join("services").join(input_key(&binary)))
}

/// Any services image under `<cache_root>/images` (the newest), whichever supervisor built it: for
/// tests, which must not download a Debian system themselves.
pub fn find_cached_services_image(cache_root: &Path) -> Option<Image> {
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(cache_root.join("images"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|dir| {
            fs::read_to_string(dir.join(IMAGE_MANIFEST_PATH))
                .is_ok_and(|m| m.contains(&format!("\"recipe\": \"{SERVICES_RECIPE_VERSION}\"")))
        })
        .filter_map(|dir| Some((fs::metadata(&dir).ok()?.ctime_time(), dir)))
        .collect();
    found.sort();
    let (_, dir) = found.pop()?;
    crate::image_from_dir(&dir).ok()
}

trait CtimeTime {
    fn ctime_time(&self) -> std::time::SystemTime;
}
impl CtimeTime for fs::Metadata {
    fn ctime_time(&self) -> std::time::SystemTime {
        let secs = u64::try_from(self.ctime()).unwrap_or(0);
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
    }
}

fn tool_failed(what: &str, status: impl std::fmt::Display, tail: &[String]) -> RootfsError {
    RootfsError::Io {
        op: "building the services image:",
        path: PathBuf::from(what),
        source: std::io::Error::other(format!("failed ({status}); last output: {}", tail.join(" | "))),
    }
}

/// Runs `cmd`, passing each output line to `progress`; an error carries the last lines.
fn run_streamed(mut cmd: Command, what: &str, progress: &dyn BuildProgress) -> Result<(), RootfsError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(RootfsError::io("running", what))?;
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        stderr
            .map(|s| {
                BufReader::new(s)
                    .lines()
                    .map_while(Result::ok)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    });
    let mut tail: Vec<String> = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            progress.detail(&line);
            tail.push(line);
            if tail.len() > 15 {
                tail.remove(0);
            }
        }
    }
    let status = child.wait().map_err(RootfsError::io("waiting for", what))?;
    let errs = err_thread.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    tail.extend(
        errs.into_iter()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .into_iter()
            .rev(),
    );
    Err(tool_failed(what, status, &tail))
}

fn debootstrap(root: &Path, debs: &Path, progress: &dyn BuildProgress) -> Result<(), RootfsError> {
    if Command::new("debootstrap").arg("--version").output().is_err() {
        return Err(RootfsError::Io {
            op: "building the services image needs",
            path: PathBuf::from("debootstrap"),
            source: std::io::Error::other("not installed (apt-get install debootstrap)"),
        });
    }
    let mut cmd = Command::new("debootstrap");
    cmd.arg("--variant=minbase")
        .arg(format!("--include={}", SERVICES_PACKAGES.join(",")))
        .arg(format!("--cache-dir={}", debs.display()))
        .arg(SERVICES_SUITE)
        .arg(root)
        .arg(SERVICES_MIRROR)
        // Maintainer scripts must not ask anything.
        .env("DEBIAN_FRONTEND", "noninteractive");
    run_streamed(cmd, "debootstrap", progress)
}

fn write_file(root: &Path, rel: &str, bytes: &[u8], mode: u32) -> Result<(), RootfsError> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(RootfsError::io("creating", parent))?;
    }
    fs::write(&path, bytes).map_err(RootfsError::io("writing", &path))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(RootfsError::io("chmod", &path))
}

fn rel(p: &str) -> &str {
    p.trim_start_matches('/')
}

fn add_cvbench_files(root: &Path, binary: &[u8]) -> Result<(), RootfsError> {
    write_file(root, rel(WORKLOAD_PATH_IN_IMAGE), binary, 0o755)?;
    write_file(root, "etc/hostname", b"cvbench\n", 0o644)?;
    // mariadb-install-db looks up the host name.
    write_file(
        root,
        "etc/hosts",
        b"127.0.0.1\tlocalhost cvbench\n::1\tlocalhost\n",
        0o644,
    )?;
    write_file(root, "etc/machine-id", b"", 0o444)?;
    let _ = fs::remove_file(root.join("etc/resolv.conf"));
    write_file(root, USERS_SQL_PATH, users_sql().as_bytes(), 0o644)?;
    write_file(root, SERVER_CNF_PATH, server_cnf().as_bytes(), 0o644)?;
    for d in EXTRA_DIRS {
        let p = root.join(d);
        fs::create_dir_all(&p).map_err(RootfsError::io("creating", &p))?;
    }
    // The first-start-with-init data directory: empty, the mysql user's (as /var/lib/mysql).
    let init = root.join(rel(MARIADB_INIT_DATADIR));
    fs::create_dir_all(&init).map_err(RootfsError::io("creating", &init))?;
    let data = root.join(rel(MARIADB_DATADIR));
    let meta = fs::metadata(&data).map_err(RootfsError::io("reading", &data))?;
    nix::unistd::chown(
        &init,
        Some(nix::unistd::Uid::from_raw(meta.uid())),
        Some(nix::unistd::Gid::from_raw(meta.gid())),
    )
    .map_err(|e| RootfsError::io("chown", &init)(e.into()))?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o700)).map_err(RootfsError::io("chmod", &init))
}

/// `mariadbd --bootstrap` in the new root, fed the users SQL: the login exists in the image's data
/// directory, so starting the server measures only the server starting.
fn bootstrap_users(root: &Path) -> Result<(), RootfsError> {
    use std::io::Write;
    let mut child = Command::new("chroot")
        .arg(root)
        .args([
            "/usr/sbin/mariadbd",
            "--bootstrap",
            "--user=mysql",
            "--datadir=/var/lib/mysql",
            "--skip-networking",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RootfsError::io("running", "chroot mariadbd --bootstrap"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(users_sql().as_bytes())
            .map_err(RootfsError::io("writing to", "mariadbd --bootstrap"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(RootfsError::io("waiting for", "mariadbd --bootstrap"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tail: Vec<String> = text
        .lines()
        .rev()
        .take(10)
        .map(str::to_string)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(tool_failed("mariadbd --bootstrap", out.status, &tail))
}

/// Removes what varies between two builds from the same packages (see the module docs).
pub fn normalise(root: &Path) -> Result<(), RootfsError> {
    // Whole directories emptied (kept, with their modes).
    for dir in [
        "var/log",
        "var/cache/apt",
        "var/lib/apt/lists",
        "tmp",
        "run",
        "var/tmp",
        "var/cache/man",
    ] {
        empty_files_under(&root.join(dir))?;
    }
    for file in [
        "var/cache/ldconfig/aux-cache",
        "etc/resolv.conf",
        "var/lib/dbus/machine-id",
        "var/lib/mysql/ib_buffer_pool",
        "var/lib/mysql/mysql_upgrade_info",
    ] {
        remove_if_there(&root.join(file))?;
    }
    // Backups dpkg, debconf and shadow tools leave: `*-old` and `etc/*-`.
    for dir in ["var/lib/dpkg", "var/cache/debconf", "etc"] {
        let d = root.join(dir);
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.map_while(Result::ok) {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let is_file = e.file_type().is_ok_and(|t| t.is_file());
            if is_file && (name.ends_with("-old") || (dir == "etc" && name.ends_with('-'))) {
                remove_if_there(&e.path())?;
            }
        }
    }
    fix_shadow_days(&root.join("etc/shadow"))?;
    Ok(())
}

fn remove_if_there(p: &Path) -> Result<(), RootfsError> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RootfsError::io("removing", p)(e)),
        _ => Ok(()),
    }
}

/// Removes every regular file and symlink below `dir`, keeping the directories.
fn empty_files_under(dir: &Path) -> Result<(), RootfsError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries {
        let e = e.map_err(RootfsError::io("listing", dir))?;
        let t = e.file_type().map_err(RootfsError::io("reading", e.path()))?;
        if t.is_dir() {
            empty_files_under(&e.path())?;
        } else {
            remove_if_there(&e.path())?;
        }
    }
    Ok(())
}

/// `/etc/shadow`'s third field is the day of the last password change: the build day. Fixed to the
/// day of [`FIXED_MTIME_S`].
fn fix_shadow_days(path: &Path) -> Result<(), RootfsError> {
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(());
    };
    let day = (FIXED_MTIME_S / 86_400).to_string();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut f: Vec<&str> = line.split(':').collect();
        if f.len() > 2 && !f[2].is_empty() {
            f[2] = &day;
        }
        out.push_str(&f.join(":"));
        out.push('\n');
    }
    let mode = fs::metadata(path)
        .map_err(RootfsError::io("reading", path))?
        .mode();
    fs::write(path, out).map_err(RootfsError::io("writing", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
        .map_err(RootfsError::io("chmod", path))
}

/// SHA-256 of the normalised tree (see the module docs): the data directory by its recipe and the
/// server's version, the manifest left out.
pub fn tree_digest(root: &Path) -> Result<String, RootfsError> {
    let mut h = Sha256::new();
    h.update(SERVICES_RECIPE_VERSION.as_bytes());
    h.update([0]);
    hash_entry(root, Path::new(""), &mut h)?;
    h.update(b"datadir\0");
    h.update(DATADIR_RECIPE.as_bytes());
    h.update(users_sql().as_bytes());
    Ok(hex::encode(h.finalize()))
}

fn hash_entry(root: &Path, rel: &Path, h: &mut Sha256) -> Result<(), RootfsError> {
    let path = root.join(rel);
    if rel == Path::new(IMAGE_MANIFEST_PATH) {
        return Ok(());
    }
    let meta = fs::symlink_metadata(&path).map_err(RootfsError::io("reading", &path))?;
    h.update(rel.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(meta.mode().to_le_bytes());
    h.update(meta.uid().to_le_bytes());
    h.update(meta.gid().to_le_bytes());
    let ft = meta.file_type();
    if ft.is_dir() {
        if rel == Path::new(rel_datadir()) {
            // Its bytes vary per initialisation; the recipe is hashed instead (tree_digest).
            return Ok(());
        }
        let mut names: Vec<_> = fs::read_dir(&path)
            .map_err(RootfsError::io("listing", &path))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(RootfsError::io("listing", &path))?;
        names.sort();
        for name in names {
            hash_entry(root, &rel.join(name), h)?;
        }
    } else if ft.is_symlink() {
        let target = fs::read_link(&path).map_err(RootfsError::io("reading", &path))?;
        h.update(target.as_os_str().as_encoded_bytes());
    } else if ft.is_file() {
        h.update(meta.len().to_le_bytes());
        let mut f = File::open(&path).map_err(RootfsError::io("opening", &path))?;
        std::io::copy(&mut f, h).map_err(RootfsError::io("reading", &path))?;
    } else {
        // Device nodes debootstrap made in /dev: their numbers.
        h.update(meta.rdev().to_le_bytes());
    }
    Ok(())
}

fn rel_datadir() -> &'static str {
    rel(MARIADB_DATADIR)
}

/// Every regular file and its length, relative to `root` (manifest left out).
fn file_lengths(root: &Path, rel: &Path, out: &mut BTreeMap<String, u64>) -> Result<(), RootfsError> {
    let path = root.join(rel);
    let meta = fs::symlink_metadata(&path).map_err(RootfsError::io("reading", &path))?;
    if meta.is_dir() {
        for e in fs::read_dir(&path).map_err(RootfsError::io("listing", &path))? {
            let e = e.map_err(RootfsError::io("listing", &path))?;
            file_lengths(root, &rel.join(e.file_name()), out)?;
        }
    } else if meta.is_file() && rel != Path::new(IMAGE_MANIFEST_PATH) {
        out.insert(rel.to_string_lossy().into_owned(), meta.len());
    }
    Ok(())
}

fn write_manifest(root: &Path, digest: &str) -> Result<(), RootfsError> {
    let mut files = BTreeMap::new();
    file_lengths(root, Path::new(""), &mut files)?;
    crate::image::write_manifest_files(root, SERVICES_RECIPE_VERSION, digest, files)
}

/// Every mtime and atime set to [`FIXED_MTIME_S`] (symlinks themselves, not their targets).
fn set_fixed_times(root: &Path) -> Result<(), RootfsError> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let t = TimeSpec::new(i64::try_from(FIXED_MTIME_S).unwrap_or(0), 0);
    fn walk(p: &Path, t: &TimeSpec) -> Result<(), RootfsError> {
        let meta = fs::symlink_metadata(p).map_err(RootfsError::io("reading", p))?;
        if meta.is_dir() {
            for e in fs::read_dir(p).map_err(RootfsError::io("listing", p))? {
                walk(&e.map_err(RootfsError::io("listing", p))?.path(), t)?;
            }
        }
        utimensat(nix::fcntl::AT_FDCWD, p, t, t, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| RootfsError::io("setting times on", p)(e.into()))
    }
    walk(root, &t)
}

/// `nginx-light 1.22.1-9+deb12u11`-style lines for the daemons, from the image's dpkg status.
pub fn daemon_versions(root: &Path) -> Vec<String> {
    let Ok(status) = fs::read_to_string(root.join("var/lib/dpkg/status")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for para in status.split("\n\n") {
        let field = |name: &str| {
            para.lines()
                .find_map(|l| l.strip_prefix(name).map(str::trim).map(str::to_string))
        };
        if let (Some(pkg), Some(ver)) = (field("Package:"), field("Version:")) {
            if SERVICES_PACKAGES.contains(&pkg.as_str())
                || pkg == "mariadb-server-core"
                || pkg == "nginx-common"
            {
                out.push(format!("{pkg} {ver}"));
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small tree with the kinds of things a debootstrap leaves that vary between builds.
    fn fake_build(root: &Path, day: &str, log: &str, datadir_bytes: &[u8]) {
        for d in [
            "etc",
            "var/log/nginx",
            "var/lib/dpkg",
            "var/cache/apt/archives",
            "var/lib/mysql/mysql",
            "tmp",
            "usr/bin",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(
            root.join("etc/shadow"),
            format!("root:*:{day}:0:99999:7:::\nmysql:!:{day}::::::\n"),
        )
        .unwrap();
        fs::write(root.join("etc/passwd-"), log).unwrap();
        fs::write(root.join("etc/resolv.conf"), log).unwrap();
        fs::write(root.join("var/log/dpkg.log"), log).unwrap();
        fs::write(root.join("var/log/nginx/error.log"), log).unwrap();
        fs::write(root.join("var/lib/dpkg/status-old"), log).unwrap();
        fs::write(root.join("var/cache/apt/archives/x.deb"), log).unwrap();
        fs::write(root.join("var/lib/mysql/mysql/user.frm"), datadir_bytes).unwrap();
        fs::write(root.join("usr/bin/tool"), b"same").unwrap();
        std::os::unix::fs::symlink("tool", root.join("usr/bin/link")).unwrap();
    }

    #[test]
    fn two_builds_that_differ_only_in_what_varies_have_one_digest() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        fake_build(a.path(), "20001", "built at 22:03", b"uuid-1");
        fake_build(b.path(), "20002", "built at 22:05 with more", b"uuid-2 longer");
        normalise(a.path()).unwrap();
        normalise(b.path()).unwrap();
        let (da, db) = (tree_digest(a.path()).unwrap(), tree_digest(b.path()).unwrap());
        assert_eq!(da, db);
        // Logs are gone but their directories stay (nginx needs /var/log/nginx).
        assert!(a.path().join("var/log/nginx").is_dir());
        assert!(!a.path().join("var/log/nginx/error.log").exists());
        assert!(fs::read_to_string(a.path().join("etc/shadow"))
            .unwrap()
            .contains(":19723:"));
        // What is content does count.
        fs::write(b.path().join("usr/bin/tool"), b"diff").unwrap();
        assert_ne!(da, tree_digest(b.path()).unwrap());
        fs::write(b.path().join("usr/bin/tool"), b"same").unwrap();
        fs::set_permissions(b.path().join("usr/bin/tool"), fs::Permissions::from_mode(0o700)).unwrap();
        assert_ne!(da, tree_digest(b.path()).unwrap());
    }

    #[test]
    fn leftover_mounts_below_a_build_are_found_deepest_first() {
        let info = "22 1 0:21 / /proc rw - proc proc rw\n\
                    90 1 0:5 / /c/images/.tmp-x/proc rw - proc proc rw\n\
                    91 90 0:6 / /c/images/.tmp-x/proc/sys/fs/binfmt_misc rw - binfmt_misc b rw\n\
                    92 1 0:7 / /c/images/.tmp-xy/sys rw - sysfs sysfs rw\n";
        let m = mounts_below(Path::new("/c/images/.tmp-x"), info);
        assert_eq!(
            m,
            [
                PathBuf::from("/c/images/.tmp-x/proc/sys/fs/binfmt_misc"),
                PathBuf::from("/c/images/.tmp-x/proc")
            ]
        );
    }

    #[test]
    fn the_input_key_covers_the_supervisor() {
        assert_eq!(input_key(b"a"), input_key(b"a"));
        assert_ne!(input_key(b"a"), input_key(b"b"));
    }

    #[test]
    fn daemon_versions_come_from_dpkg_status() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("var/lib/dpkg")).unwrap();
        fs::write(
            d.path().join("var/lib/dpkg/status"),
            "Package: bash\nVersion: 5.2\n\nPackage: nginx-light\nStatus: install ok installed\nVersion: 1.22.1-9\n\nPackage: mariadb-server\nVersion: 1:10.11.18\n",
        )
        .unwrap();
        assert_eq!(
            daemon_versions(d.path()),
            ["mariadb-server 1:10.11.18", "nginx-light 1.22.1-9"]
        );
    }
}
