//! The services image in its VM form: the ext4 disk a microVM or QEMU would boot is made from the
//! same directory (same bytes, same owners) by the same `ext4_disk_image` path as the default
//! image. Uses the services image cached by `bench image build services` (a test does not download
//! a Debian system); skips when there is none.

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::process::Command;

    use rootfs::services::{find_cached_services_image, MARIADB_DATADIR};

    fn debugfs(disk: &Path, request: &str) -> String {
        let out = Command::new("debugfs")
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
    fn the_services_image_becomes_an_ext4_disk_with_its_owners() {
        let Some(image) = find_cached_services_image(Path::new(rootfs::DEFAULT_CACHE_ROOT)) else {
            testkit::skip(
                testkit::Requirement::Package("debootstrap"),
                "no services image in /var/cache/cvbench: build it with `bench image build services`",
            );
            return;
        };
        if Command::new("debugfs").arg("-V").output().is_err() {
            testkit::skip(testkit::Requirement::Package("e2fsprogs"), "debugfs missing");
            return;
        }
        let cache = tempfile::tempdir().unwrap();
        let disk = rootfs::ext4_disk_image(&image, &[], cache.path()).unwrap();
        assert!(disk.size_bytes >= image.apparent_bytes, "{disk:?} for {image:?}");
        let mysql = std::fs::metadata(image.dir.join(MARIADB_DATADIR.trim_start_matches('/'))).unwrap();
        let stat = debugfs(&disk.path, &format!("stat {MARIADB_DATADIR}"));
        assert!(
            stat.contains(&format!("User: {:>5}", mysql.uid()))
                || stat.contains(&format!("User:  {}", mysql.uid())),
            "{stat}"
        );
        let nginx = std::fs::metadata(image.dir.join("usr/sbin/nginx")).unwrap();
        let stat = debugfs(&disk.path, "stat /usr/sbin/nginx");
        assert!(stat.contains(&format!("Size: {}", nginx.len())), "{stat}");
        let again = rootfs::ext4_disk_image(&image, &[], cache.path()).unwrap();
        assert_eq!(again.path, disk.path, "cached by the image's digest");
    }
}
