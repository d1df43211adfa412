//! The served tree: mapping a request target to a file under the root, never outside it, and a
//! file's Content-Type.

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Why a request target does not name a servable file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// Not an origin-form path, bad percent-encoding, NUL, or a `..` component: 400.
    BadRequest,
    /// No such file (or not a regular file, or outside the root through a symlink): 404.
    NotFound,
}

/// Turn a request target (`/a/b.html?x=1`) into a path relative to the root (`a/b.html`).
/// Rejects anything that could climb out of the root; `/` and directories map to `index.html`
/// later, when the file system says it is a directory.
pub fn relative_path(target: &str) -> Result<PathBuf, TargetError> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') {
        return Err(TargetError::BadRequest);
    }
    let decoded = percent_decode(path).ok_or(TargetError::BadRequest)?;
    let mut rel = PathBuf::new();
    for component in decoded.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(TargetError::BadRequest),
            c if c.contains(&0) => return Err(TargetError::BadRequest),
            c => rel.push(std::ffi::OsStr::from_bytes(c)),
        }
    }
    Ok(rel)
}

/// Percent-decoding of a path; `None` if a `%` is not followed by two hex digits.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Content-Type by file extension (case-insensitive); unknown types are octet streams.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// The document root, held open so every lookup is resolved beneath it by the kernel.
pub struct WwwRoot {
    dir: File,
    path: PathBuf,
}

/// An opened file ready to be sent.
pub struct ServedFile {
    pub file: File,
    pub len: u64,
    pub content_type: &'static str,
}

impl WwwRoot {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let dir = File::open(path)?;
        if !dir.metadata()?.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(WwwRoot {
            dir,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open the file a request target names. `openat2(RESOLVE_BENEATH)` makes the kernel refuse any
    /// resolution (symlinks included) that leaves the root.
    pub fn lookup(&self, target: &str) -> Result<ServedFile, TargetError> {
        let rel = relative_path(target)?;
        let file = self.open_beneath(&rel)?;
        let meta = file.metadata().map_err(|_| TargetError::NotFound)?;
        if meta.is_dir() {
            let index = rel.join("index.html");
            let file = self.open_beneath(&index)?;
            let meta = file.metadata().map_err(|_| TargetError::NotFound)?;
            if !meta.is_file() {
                return Err(TargetError::NotFound);
            }
            return Ok(ServedFile {
                file,
                len: meta.len(),
                content_type: content_type(&index),
            });
        }
        if !meta.is_file() {
            return Err(TargetError::NotFound);
        }
        Ok(ServedFile {
            file,
            len: meta.len(),
            content_type: content_type(&rel),
        })
    }

    fn open_beneath(&self, rel: &Path) -> Result<File, TargetError> {
        let rel: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
            .mode(Mode::empty())
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        match openat2(&self.dir, rel, how) {
            Ok(fd) => Ok(File::from(fd)),
            Err(Errno::ENOSYS) => self.open_checked(rel),
            Err(_) => Err(TargetError::NotFound),
        }
    }

    /// Fallback for kernels without openat2 (< 5.6): open, then check the real path is beneath.
    fn open_checked(&self, rel: &Path) -> Result<File, TargetError> {
        let full = self.path.join(rel);
        let real = full.canonicalize().map_err(|_| TargetError::NotFound)?;
        let root = self.path.canonicalize().map_err(|_| TargetError::NotFound)?;
        if !real.starts_with(&root) {
            return Err(TargetError::NotFound);
        }
        File::open(&real).map_err(|_| TargetError::NotFound)
    }
}

/// Regular files directly in `root`, sorted by name, with their sizes: what the self-test requests.
pub fn list_files(root: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() {
            if let Some(name) = entry.file_name().to_str() {
                files.push((name.to_string(), meta.len()));
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_map_to_relative_paths() {
        assert_eq!(relative_path("/"), Ok(PathBuf::new()));
        assert_eq!(relative_path("/a/b.html?x=1#f"), Ok(PathBuf::from("a/b.html")));
        assert_eq!(relative_path("//a/./b"), Ok(PathBuf::from("a/b")));
        assert_eq!(
            relative_path("/with%20space.txt"),
            Ok(PathBuf::from("with space.txt"))
        );
    }

    #[test]
    fn traversal_and_garbage_are_rejected() {
        for bad in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/a/%2E%2E/%2e%2e/x",
            "/..",
            "/a%00b",
            "/bad%zz",
            "/trunc%2",
            "etc/passwd",
            "http://example/x",
            "*",
        ] {
            assert_eq!(relative_path(bad), Err(TargetError::BadRequest), "{bad}");
        }
    }

    #[test]
    fn content_types_follow_extensions() {
        assert_eq!(content_type(Path::new("index.html")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("A.HTM")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("x.css")), "text/css; charset=utf-8");
        assert_eq!(content_type(Path::new("x.json")), "application/json");
        assert_eq!(content_type(Path::new("x.PNG")), "image/png");
        assert_eq!(content_type(Path::new("1k.bin")), "application/octet-stream");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }

    #[test]
    fn lookup_stays_beneath_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("www");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), b"<p>hi</p>").unwrap();
        std::fs::write(root.join("sub/index.html"), b"sub").unwrap();
        std::fs::write(root.join("4k.bin"), vec![7u8; 4096]).unwrap();
        std::fs::write(tmp.path().join("secret"), b"no").unwrap();
        std::os::unix::fs::symlink("../secret", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("abs")).unwrap();
        let www = WwwRoot::open(&root).unwrap();

        let f = www.lookup("/").unwrap();
        assert_eq!((f.len, f.content_type), (9, "text/html; charset=utf-8"));
        assert_eq!(www.lookup("/sub").unwrap().len, 3);
        assert_eq!(www.lookup("/4k.bin").unwrap().len, 4096);
        assert_eq!(www.lookup("/missing").err(), Some(TargetError::NotFound));
        assert_eq!(www.lookup("/escape").err(), Some(TargetError::NotFound));
        assert_eq!(www.lookup("/abs").err(), Some(TargetError::NotFound));
        assert_eq!(www.lookup("/../secret").err(), Some(TargetError::BadRequest));

        let listed = list_files(&root).unwrap();
        assert_eq!(
            listed,
            vec![("4k.bin".to_string(), 4096), ("index.html".to_string(), 9)]
        );
    }
}
