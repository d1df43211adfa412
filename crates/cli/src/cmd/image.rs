//! `bench image build services`: build (or reuse) the services image — Debian bookworm with
//! nginx-light and mariadb-server, see `rootfs::services` — with progress on stderr, and print its
//! digest, directory, size, daemon versions and build time. `--image services` on `run`, `compare`
//! and `density` builds or reuses the same image.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use rootfs::services::{BuildProgress, ServicesBuild, SERVICES_IMAGE};

use super::UsageError;

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build (or reuse from the cache) a named image. The one name: `services`.
    Build(BuildArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The image: `services` (Debian bookworm minbase + nginx-light + mariadb-server, the MariaDB
    /// data directory initialised).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where images are built and cached.
    #[arg(long, value_name = "DIR", default_value = rootfs::DEFAULT_CACHE_ROOT)]
    pub image_cache: PathBuf,
    /// Build again even if the cache holds an image for the same inputs.
    #[arg(long)]
    pub rebuild: bool,
}

pub fn execute(args: ImageArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ImageCommand::Build(b) => {
            if b.name != SERVICES_IMAGE {
                return Err(UsageError(format!(
                    "unknown image {:?} (the one buildable image is {SERVICES_IMAGE:?})",
                    b.name
                ))
                .into());
            }
            let build = build_services(&b.image_cache, b.rebuild)?;
            let img = &build.image;
            println!("image      {SERVICES_IMAGE}");
            println!("digest     {}", img.digest);
            println!("directory  {}", img.dir.display());
            println!(
                "size       {:.1} MiB allocated, {:.1} MiB apparent, {} files",
                img.allocated_bytes as f64 / 1048576.0,
                img.apparent_bytes as f64 / 1048576.0,
                img.files
            );
            for v in &build.versions {
                println!("package    {v}");
            }
            println!(
                "{} in {:.1} s",
                if build.cached {
                    "reused from the cache"
                } else {
                    "built"
                },
                build.seconds
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Builds or reuses the services image (root needed for a build: debootstrap, chroot).
pub fn build_services(cache_root: &Path, rebuild: bool) -> anyhow::Result<ServicesBuild> {
    let bin = rootfs::locate_binary(rootfs::WORKLOAD_BIN).context("locating the supervisor binary")?;
    let progress = BarProgress::new();
    let build = rootfs::services::services_image(cache_root, &bin, rebuild, &progress)
        .with_context(|| format!("building the services image in {}", cache_root.display()));
    progress.finish();
    build
}

/// Stages as a bar (a spinner line of debootstrap's output under it) on a terminal, plain lines
/// otherwise.
struct BarProgress {
    bar: Option<ProgressBar>,
}

impl BarProgress {
    fn new() -> Self {
        BarProgress {
            bar: crate::output::styled_bar("services image", 5),
        }
    }
    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl BuildProgress for BarProgress {
    fn stage(&self, index: usize, total: usize, what: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total as u64);
                bar.set_position(index.saturating_sub(1) as u64);
                bar.set_message(what.to_string());
            }
            None => eprintln!("services image [{index}/{total}] {what}"),
        }
    }
    fn detail(&self, line: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(line.trim().to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_services_image_can_be_built_by_name() {
        let err = execute(ImageArgs {
            command: ImageCommand::Build(BuildArgs {
                name: "ubuntu".into(),
                image_cache: PathBuf::from("/nonexistent"),
                rebuild: false,
            }),
        })
        .unwrap_err();
        assert!(err.chain().any(|c| c.is::<UsageError>()), "{err}");
        assert!(err.to_string().contains("services"), "{err}");
    }
}
