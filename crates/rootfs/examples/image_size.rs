//! Build the default image, its ext4 disk and a scratch template into a cache root and print their
//! sizes and build times:
//! `cargo run --release -p rootfs --example image_size -- <cache_root> [workload_bin] [scratch_mib]`.

use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let cache = PathBuf::from(
        args.next()
            .ok_or("usage: image_size <cache_root> [workload_bin] [scratch_mib]")?,
    );
    let bin = match args.next() {
        Some(p) => PathBuf::from(p),
        None => rootfs::locate_binary(rootfs::WORKLOAD_BIN)?,
    };
    let scratch_mib: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(256);

    let t = Instant::now();
    let image = rootfs::build_default_image(&cache, &bin)?;
    println!(
        "image      {}  ({:.1} ms)",
        image.dir.display(),
        t.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "           digest {}  files {}  apparent {} B  allocated {} B",
        image.digest, image.files, image.apparent_bytes, image.allocated_bytes
    );
    let t = Instant::now();
    let disk = rootfs::ext4_disk_image(&image, &[], &cache)?;
    println!(
        "ext4       {}  ({:.1} ms)",
        disk.path.display(),
        t.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "           size {} B  allocated {} B",
        disk.size_bytes, disk.allocated_bytes
    );
    let t = Instant::now();
    let template = rootfs::scratch_disk_template(scratch_mib, &cache)?;
    println!(
        "scratch    {}  ({:.1} ms)",
        template.display(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let copy = cache.join("scratch-copy.ext4");
    let t = Instant::now();
    rootfs::new_scratch_disk(&template, &copy)?;
    let copy_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "copy       {}  ({copy_ms:.2} ms)  allocated {} B of {} B",
        copy.display(),
        rootfs::allocated_bytes(&copy)?,
        std::fs::metadata(&copy)?.len()
    );
    std::fs::remove_file(&copy)?;
    Ok(())
}
