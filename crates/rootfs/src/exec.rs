//! Whether a program in an image can be executed with nothing but the image around it. The kernel
//! answers `ENOENT` both for a missing program and for a program whose interpreter is missing (the
//! `#!` line of a script, the `PT_INTERP` loader of a dynamically linked ELF), so a dynamic binary
//! as the workload used to fail as "could not exec ... No such file or directory". This names the
//! real cause before any launch.
//!
//! Paths are resolved inside the image: absolute symlinks point into the image root, never at the
//! host's files.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Why `program` (an absolute path inside `image_dir`) cannot be executed, or `None` when it can as
/// far as a static look tells: a static ELF, or a program whose interpreter is in the image.
pub fn exec_problem(image_dir: &Path, program: &str) -> Option<String> {
    let Some(host_path) = resolve_in_image(image_dir, program) else {
        return Some(format!("{program} is not in the image"));
    };
    let meta = match fs::metadata(&host_path) {
        Ok(m) => m,
        Err(e) => return Some(format!("{program} cannot be read: {e}")),
    };
    if !meta.is_file() {
        return Some(format!("{program} is not a regular file"));
    }
    let mut head = Vec::new();
    if let Err(e) = fs::File::open(&host_path).and_then(|f| f.take(64 * 1024).read_to_end(&mut head)) {
        return Some(format!("{program} cannot be read: {e}"));
    }
    let (interpreter, what) = if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
        let text = String::from_utf8_lossy(line);
        match text.split_whitespace().next() {
            Some(interp) => (interp.to_string(), "a #! script"),
            None => return Some(format!("{program} is a #! script without an interpreter")),
        }
    } else if head.starts_with(b"\x7fELF") {
        match elf_interpreter(&head) {
            Some(interp) => (interp, "a dynamically linked ELF"),
            None => return None,
        }
    } else {
        return None;
    };
    if resolve_in_image(image_dir, &interpreter).is_some_and(|p| p.is_file()) {
        return None;
    }
    Some(format!(
        "{program} is {what} and its interpreter {interpreter} is not in the image; \
         the image's workload must be a static binary (or the image must hold its interpreter)"
    ))
}

/// The `PT_INTERP` path of an ELF whose program headers lie in `head`; `None` for a static ELF (or
/// headers beyond `head`, which no real loader path needs).
fn elf_interpreter(head: &[u8]) -> Option<String> {
    const PT_INTERP: u64 = 3;
    let class64 = *head.get(4)? == 2;
    let little = *head.get(5)? == 1;
    let u16_at = |o: usize| -> Option<u64> {
        let b: [u8; 2] = head.get(o..o + 2)?.try_into().ok()?;
        Some(u64::from(if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }))
    };
    let u32_at = |o: usize| -> Option<u64> {
        let b: [u8; 4] = head.get(o..o + 4)?.try_into().ok()?;
        Some(u64::from(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }))
    };
    let u64_at = |o: usize| -> Option<u64> {
        let b: [u8; 8] = head.get(o..o + 8)?.try_into().ok()?;
        Some(if little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    };
    let (phoff, phentsize, phnum) = if class64 {
        (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?)
    } else {
        (u32_at(0x1c)?, u16_at(0x2a)?, u16_at(0x2c)?)
    };
    for i in 0..phnum {
        let ph = usize::try_from(phoff.checked_add(i.checked_mul(phentsize)?)?).ok()?;
        if u32_at(ph)? != PT_INTERP {
            continue;
        }
        let (offset, size) = if class64 {
            (u64_at(ph + 8)?, u64_at(ph + 32)?)
        } else {
            (u32_at(ph + 4)?, u32_at(ph + 16)?)
        };
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        let bytes = head.get(start..end)?;
        let bytes = bytes.split(|&b| b == 0).next().unwrap_or_default();
        return Some(String::from_utf8_lossy(bytes).into_owned());
    }
    None
}

/// `path` (absolute, as the instance sees it) as a host path under `image_dir`, following symlinks
/// inside the image component by component; `None` when something on the way does not exist or the
/// links loop.
fn resolve_in_image(image_dir: &Path, path: &str) -> Option<PathBuf> {
    let mut pending: Vec<String> = components(path);
    pending.reverse();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(name) = pending.pop() {
        match name.as_str() {
            "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let host = resolved
            .iter()
            .fold(image_dir.to_path_buf(), |p, c| p.join(c))
            .join(&name);
        let meta = fs::symlink_metadata(&host).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = fs::read_link(&host).ok()?;
            let target = target.to_string_lossy();
            if target.starts_with('/') {
                resolved.clear();
            }
            let mut more = components(&target);
            more.reverse();
            pending.extend(more);
        } else {
            resolved.push(name);
        }
    }
    Some(resolved.iter().fold(image_dir.to_path_buf(), |p, c| p.join(c)))
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            Component::CurDir => Some(".".to_string()),
            Component::RootDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn image_with(program: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        let path = dir.path().join("bin/cvbench-workload");
        fs::write(&path, program).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn a_script_names_its_missing_interpreter() {
        let img = image_with(b"#!/bin/sh -e\necho READY\n");
        let why = exec_problem(img.path(), "/bin/cvbench-workload").expect("a problem");
        assert!(why.contains("#! script") && why.contains("/bin/sh"), "{why}");
        assert!(why.contains("static binary"), "{why}");
        // With the interpreter present (through an absolute symlink inside the image) it is fine.
        fs::create_dir_all(img.path().join("usr/bin")).unwrap();
        fs::write(img.path().join("usr/bin/dash"), b"\x7fELF").unwrap();
        std::os::unix::fs::symlink("/usr/bin/dash", img.path().join("bin/sh")).unwrap();
        assert_eq!(exec_problem(img.path(), "/bin/cvbench-workload"), None);
    }

    #[test]
    fn a_dynamic_elf_names_its_loader_and_a_static_one_passes() {
        // This test binary is static (crt-static); a host tool such as /bin/ls usually is not.
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        let img = image_with(&me);
        assert_eq!(exec_problem(img.path(), "/bin/cvbench-workload"), None);
        let ls = fs::read("/bin/ls").unwrap_or_default();
        if elf_interpreter(&ls).is_none() {
            println!("skipped (dynamic part): /bin/ls is not a dynamic ELF here");
            return;
        }
        let img = image_with(&ls);
        let why = exec_problem(img.path(), "/bin/cvbench-workload").expect("a problem");
        assert!(
            why.contains("dynamically linked ELF") && why.contains("ld-linux"),
            "{why}"
        );
    }

    #[test]
    fn a_missing_program_and_symlink_loops_are_reported() {
        let img = image_with(b"x");
        assert!(exec_problem(img.path(), "/bin/nothing").is_some_and(|w| w.contains("not in the image")));
        std::os::unix::fs::symlink("/loop", img.path().join("loop")).unwrap();
        assert!(exec_problem(img.path(), "/loop").is_some());
        // A symlink never escapes to the host: /etc/passwd exists on the host, not in the image.
        std::os::unix::fs::symlink("/etc/passwd", img.path().join("bin/escape")).unwrap();
        assert!(exec_problem(img.path(), "/bin/escape").is_some());
    }
}
