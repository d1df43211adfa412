//! The default image and its disk images, built into temporary cache roots.

// An integration test file is its own crate, compiled only for tests; the workspace lint is meant
// for unit tests mixed into library code.
#![allow(clippy::tests_outside_test_module)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rootfs::{
    build_default_image, ext4_disk_image, image_from_dir, new_scratch_disk, scratch_disk_template,
    RootfsError, IMAGE_MANIFEST_PATH, WWW_FILES,
};

/// A static ELF to put in images: this test executable (built with crt-static), or a copy of it
/// with extra bytes appended (still a valid ELF, but a different binary).
fn static_binary(dir: &Path, variant: u8) -> PathBuf {
    let me = std::env::current_exe().unwrap();
    let mut bytes = std::fs::read(me).unwrap();
    bytes.extend_from_slice(&[variant; 16]);
    let path = dir.join(format!("bin-{variant}"));
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn image_has_the_layout_and_is_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let bin = static_binary(tmp.path(), 1);
    let image = build_default_image(&cache, &bin).unwrap();
    assert_eq!(image.dir, cache.join("images").join(&image.digest));
    assert_eq!(image.digest.len(), 64);

    let root = &image.dir;
    assert_eq!(
        std::fs::read(root.join("bin/cvbench-workload")).unwrap(),
        std::fs::read(&bin).unwrap()
    );
    assert_eq!(
        std::fs::metadata(root.join("bin/cvbench-workload"))
            .unwrap()
            .mode()
            & 0o777,
        0o755
    );
    let mut expected_apparent = std::fs::metadata(&bin).unwrap().len();
    for (name, len) in WWW_FILES {
        assert_eq!(
            std::fs::metadata(root.join("srv/www").join(name)).unwrap().len(),
            len as u64,
            "{name}"
        );
        expected_apparent += len as u64;
    }
    assert!(std::fs::read_to_string(root.join("srv/www/index.html"))
        .unwrap()
        .contains("1m.bin"));
    for dir in [
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "mnt/scratch",
        "mnt/root",
        "var/lib/cvbench",
        "etc",
        "root",
    ] {
        assert!(root.join(dir).is_dir(), "{dir}");
        assert_eq!(
            std::fs::read_dir(root.join(dir)).unwrap().count() == 0,
            dir != "etc",
            "{dir}"
        );
    }
    assert_eq!(
        std::fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert!(root.join(IMAGE_MANIFEST_PATH).is_file());
    // bin + 6 www + index.html + hostname, hosts, passwd, group + manifest
    assert_eq!(image.files, 13);
    assert!(image.apparent_bytes > expected_apparent);
    assert!(image.allocated_bytes >= expected_apparent / 2, "{image:?}");

    let manifest_ino = std::fs::metadata(root.join(IMAGE_MANIFEST_PATH)).unwrap().ino();
    let again = build_default_image(&cache, &bin).unwrap();
    assert_eq!(again, image);
    assert_eq!(
        std::fs::metadata(root.join(IMAGE_MANIFEST_PATH)).unwrap().ino(),
        manifest_ino,
        "rebuilt"
    );
    assert!(leftovers(&cache.join("images")).is_empty());
}

#[test]
fn digest_follows_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let a = build_default_image(&cache, &static_binary(tmp.path(), 1)).unwrap();
    let b = build_default_image(&cache, &static_binary(tmp.path(), 2)).unwrap();
    assert_ne!(a.digest, b.digest);
    // Same bytes at another path: same image.
    let other = tmp.path().join("elsewhere");
    std::fs::copy(static_binary(tmp.path(), 1), &other).unwrap();
    assert_eq!(build_default_image(&cache, &other).unwrap().digest, a.digest);
    // A different cache root gives the same digest.
    assert_eq!(
        build_default_image(&tmp.path().join("c2"), &other)
            .unwrap()
            .digest,
        a.digest
    );
}

#[test]
fn a_damaged_cached_image_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let bin = static_binary(tmp.path(), 3);
    let image = build_default_image(&cache, &bin).unwrap();
    std::fs::remove_file(image.dir.join("srv/www/64k.bin")).unwrap();
    let rebuilt = build_default_image(&cache, &bin).unwrap();
    assert_eq!(rebuilt.digest, image.digest);
    assert_eq!(
        std::fs::metadata(rebuilt.dir.join("srv/www/64k.bin"))
            .unwrap()
            .len(),
        64 * 1024
    );
    assert!(leftovers(&cache.join("images")).is_empty());
}

#[test]
fn concurrent_builds_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let bin = static_binary(tmp.path(), 4);
    let images: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| build_default_image(&cache, &bin).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(images
        .windows(2)
        .all(|w| w[0].dir == w[1].dir && w[0].digest == w[1].digest));
    assert_eq!(std::fs::read_dir(cache.join("images")).unwrap().count(), 1);
}

#[test]
fn a_dynamic_binary_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(sh) = tool("sh") else {
        testkit::skip(
            testkit::Requirement::Package("dash"),
            "no /bin/sh to use as a dynamically linked binary",
        );
        return;
    };
    let err = build_default_image(tmp.path(), &std::fs::canonicalize(sh).unwrap()).unwrap_err();
    assert!(matches!(err, RootfsError::NotStaticElf { .. }), "{err}");
    let err = build_default_image(tmp.path(), &tmp.path().join("missing")).unwrap_err();
    assert!(matches!(err, RootfsError::NotExecutable { .. }), "{err}");
}

fn debugfs(disk: &Path, request: &str) -> String {
    let out = Command::new(tool("debugfs").unwrap())
        .args(["-R", request])
        .arg(disk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "debugfs {request}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ext4_image_holds_the_rootfs_and_extras() {
    let (Some(_), Some(_)) = (tool("mkfs.ext4"), tool("debugfs")) else {
        testkit::skip(
            testkit::Requirement::Package("e2fsprogs"),
            "mkfs.ext4 or debugfs missing (apt-get install e2fsprogs)",
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let bin = static_binary(tmp.path(), 5);
    let image = build_default_image(&cache, &bin).unwrap();
    let init = static_binary(tmp.path(), 6);
    let extras = vec![(init.clone(), "/cvbench/init".to_string())];
    let disk = ext4_disk_image(&image, &extras, &cache).unwrap();
    assert_eq!(disk.path.parent().unwrap(), cache.join("disks"));
    assert_eq!(disk.size_bytes % (1 << 20), 0);
    assert!(disk.size_bytes >= image.apparent_bytes + (8 << 20), "{disk:?}");
    assert!(disk.allocated_bytes < disk.size_bytes, "{disk:?}");

    let ls = debugfs(&disk.path, "ls -l /bin");
    assert!(ls.contains("cvbench-workload"), "{ls}");
    let stat = debugfs(&disk.path, "stat /cvbench/init");
    assert!(
        stat.contains(&format!("Size: {}", std::fs::metadata(&init).unwrap().len())),
        "{stat}"
    );
    let www = debugfs(&disk.path, "ls -l /srv/www");
    assert!(www.contains("1048576") && www.contains("1m.bin"), "{www}");
    // The image's own rootfs was not touched by the extra.
    assert!(!image.dir.join("cvbench").exists());

    let again = ext4_disk_image(&image, &extras, &cache).unwrap();
    assert_eq!(again.path, disk.path);
    let other = ext4_disk_image(&image, &[], &cache).unwrap();
    assert_ne!(other.path, disk.path);
    if let Some(fsck) = tool("e2fsck") {
        let out = Command::new(fsck).arg("-fn").arg(&disk.path).output().unwrap();
        assert!(
            out.status.success(),
            "e2fsck: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert!(leftovers(&cache.join("disks")).is_empty());

    let bad = ext4_disk_image(&image, &[(init, "relative/init".into())], &cache).unwrap_err();
    assert!(matches!(bad, RootfsError::InvalidExtraDest { .. }), "{bad}");
}

#[test]
fn a_minimal_image_gets_the_vm_mount_points_on_its_disk() {
    let (Some(_), Some(_)) = (tool("mkfs.ext4"), tool("debugfs")) else {
        println!("skipped: mkfs.ext4 or debugfs missing (apt-get install e2fsprogs)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("minimal");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy(static_binary(tmp.path(), 7), dir.join("bin/cvbench-workload")).unwrap();
    let image = image_from_dir(&dir).unwrap();
    let disk = ext4_disk_image(&image, &[], &tmp.path().join("cache")).unwrap();
    let root = debugfs(&disk.path, "ls -l /");
    for mount_point in rootfs::VM_MOUNT_POINTS {
        let stat = debugfs(&disk.path, &format!("stat /{mount_point}"));
        assert!(stat.contains("Type: directory"), "/{mount_point}: {stat}\n{root}");
    }
    // The image directory itself is left as it was.
    assert!(!dir.join("proc").exists());
}

#[test]
fn scratch_template_and_copies_stay_sparse() {
    let Some(_) = tool("mkfs.ext4") else {
        testkit::skip(
            testkit::Requirement::Package("e2fsprogs"),
            "mkfs.ext4 missing (apt-get install e2fsprogs)",
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let template = scratch_disk_template(256, &cache).unwrap();
    assert_eq!(scratch_disk_template(256, &cache).unwrap(), template);
    let size = std::fs::metadata(&template).unwrap().len();
    assert_eq!(size, 256 << 20);
    let template_alloc = rootfs::allocated_bytes(&template).unwrap();
    assert!(
        template_alloc < size / 16,
        "template allocates {template_alloc} of {size}"
    );

    let copy = tmp.path().join("vm0-scratch.ext4");
    new_scratch_disk(&template, &copy).unwrap();
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), size);
    let copy_alloc = rootfs::allocated_bytes(&copy).unwrap();
    assert!(copy_alloc < size / 16, "copy allocates {copy_alloc} of {size}");
    assert!(
        std::fs::read(&copy).unwrap() == std::fs::read(&template).unwrap(),
        "copy differs"
    );
    if let Some(fsck) = tool("e2fsck") {
        let out = Command::new(fsck).arg("-fn").arg(&copy).output().unwrap();
        assert!(
            out.status.success(),
            "e2fsck: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert!(matches!(
        scratch_disk_template(1, &cache),
        Err(RootfsError::InvalidScratchSize { .. })
    ));
}

#[test]
fn existing_directories_are_described_by_content() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let built = build_default_image(&cache, &static_binary(tmp.path(), 7)).unwrap();
    assert_eq!(image_from_dir(&built.dir).unwrap(), built);

    let foreign = tmp.path().join("foreign");
    std::fs::create_dir_all(foreign.join("bin")).unwrap();
    std::fs::write(foreign.join("bin/x"), b"one").unwrap();
    let a = image_from_dir(&foreign).unwrap();
    assert_eq!((a.files, a.apparent_bytes), (1, 3));
    assert_eq!(image_from_dir(&foreign).unwrap().digest, a.digest);
    std::fs::write(foreign.join("bin/x"), b"two").unwrap();
    assert_ne!(image_from_dir(&foreign).unwrap().digest, a.digest);

    // A cvbench image whose files no longer match its manifest is refused.
    std::fs::write(built.dir.join("srv/www/1k.bin"), b"short").unwrap();
    assert!(matches!(
        image_from_dir(&built.dir),
        Err(RootfsError::CorruptImage { .. })
    ));
}
