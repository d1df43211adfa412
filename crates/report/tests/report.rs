//! `write_report` on a results file built in code: every file is there, PNGs decode at the requested
//! size, the Markdown names the host and n, the HTML is self-contained.

mod fixture;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use report::{write_report, ReportOptions, Theme};

    use super::fixture;

    fn font_available() -> bool {
        report::font::FONT_CANDIDATES
            .iter()
            .any(|p| Path::new(p).is_file())
    }

    fn png_size(path: &Path) -> (u32, u32) {
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let decoder = png::Decoder::new(std::io::BufReader::new(file));
        let mut reader = decoder
            .read_info()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader
            .next_frame(&mut buf)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // A real drawing, not a blank canvas: more than one distinct pixel value.
        let first = buf.first().copied();
        assert!(
            buf[..info.buffer_size()].iter().any(|b| Some(*b) != first),
            "{} is blank",
            path.display()
        );
        (info.width, info.height)
    }

    #[test]
    fn writes_every_format_and_figure() {
        if !font_available() {
            testkit::skip(
                testkit::Requirement::Package("fonts-dejavu-core"),
                "no system TTF (install fonts-dejavu-core)",
            );
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let results = fixture::results(10);
        let opts = ReportOptions {
            size: (1280, 720),
            ..ReportOptions::default()
        };
        let written = write_report(&results, dir.path(), &opts).expect("report");

        let names: Vec<&str> = written.figures.iter().map(|f| f.name.as_str()).collect();
        for expected in [
            "startup_cdf_idle",
            "startup_cdf_http",
            "startup_cdf_oltp",
            "startup_phases_idle",
            "startup_phases_http",
            "startup_phases_oltp",
            "memory_per_instance",
            "isolation_spectrum_idle",
            "density",
            "disk",
            "workload_http",
            "workload_oltp",
        ] {
            assert!(
                names.contains(&expected),
                "missing figure {expected} in {names:?}"
            );
        }
        assert!(
            !names.contains(&"startup_phases"),
            "phases are drawn per workload: {names:?}"
        );
        for f in &written.figures {
            assert!(f.svg_path.is_file() && f.png_path.is_file(), "{}", f.name);
            assert_eq!(png_size(&f.png_path), (1280, 720), "{}", f.name);
            assert!(f.svg.contains("<svg"), "{}", f.name);
            assert!(
                f.caption.contains("n=") || f.name == "disk" || f.name == "density",
                "{}: {}",
                f.name,
                f.caption
            );
        }

        let md = std::fs::read_to_string(&written.markdown).expect("report.md");
        assert!(md.contains(&format!("Host: {}", fixture::HOSTNAME)), "{md}");
        assert!(
            md.contains("| n |") && md.contains("| 10 |"),
            "summary table with n"
        );
        assert!(md.contains("p50") && md.contains("95% CI"));
        assert!(
            md.contains("qemu-system-x86_64 not installed"),
            "skipped backends keep their reason"
        );
        assert!(md.contains("microvm (emulated)"), "emulated figures are labelled");
        assert!(md.contains("![") && md.contains("startup_cdf_idle.png"));
        // Density counts what the host lost and shows PSS as its user-space part: the fixture's
        // container loses 3 × 1.7 MiB per instance, of which 1.7 MiB is PSS.
        let container_row = md
            .lines()
            .find(|l| l.starts_with("| container | idle | 30 |"))
            .unwrap_or_else(|| panic!("no container density row in {md}"));
        assert!(
            container_row.contains("| 5.10 MiB | 1.70 MiB | – | 3.40 MiB | 5.10 MiB | 3.40 MiB |"),
            "{container_row}"
        );
        assert!(container_row.contains("host memory lost"), "{container_row}");
        let microvm_row = md
            .lines()
            .find(|l| l.starts_with("| microvm (emulated) | idle | 12 |"))
            .unwrap_or_else(|| panic!("no microvm density row in {md}"));
        assert!(
            microvm_row.contains("| 20.50 MiB |"),
            "guest RAM shown: {microvm_row}"
        );
        let density = written
            .figures
            .iter()
            .find(|f| f.name == "density")
            .expect("density figure");
        assert!(
            density.caption.contains("host lost") && density.caption.contains("+ kernel"),
            "{}",
            density.caption
        );
        assert!(density.svg.contains("stroke-dasharray") || density.svg.matches("<polyline").count() > 2);

        let html = std::fs::read_to_string(&written.html).expect("report.html");
        assert!(html.contains("<svg"), "inline SVG");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no network references"
        );
        assert!(
            !html.contains("<script") && !html.contains("<img"),
            "self-contained"
        );
        assert!(html.contains(fixture::HOSTNAME));

        let digest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&written.json).expect("report.json")).expect("json");
        assert_eq!(
            digest["cells"].as_array().map(Vec::len),
            Some(results.benchmarks.len())
        );

        // report.csv: one row per cell × metric with samples, the same medians as the summaries.
        let csv = std::fs::read_to_string(&written.csv).expect("report.csv");
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some(report::export::csv::COLUMNS.join(",").as_str())
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert!(rows.iter().all(|r| r.len() == report::export::csv::COLUMNS.len()));
        let mut compared = 0;
        for cell in results.benchmarks.iter().filter(|c| c.skipped.is_none()) {
            let Some(want) = results::stats::median(&cell.measured_samples("start_to_ready_ms")) else {
                continue;
            };
            let row = rows
                .iter()
                .find(|r| r[0] == cell.backend && r[1] == cell.workload && r[5] == "start_to_ready_ms")
                .expect("a row per measured cell");
            let median: f64 = row[9].parse().expect("median");
            assert!((median - want).abs() < 1e-9, "{row:?} vs {want}");
            compared += 1;
        }
        assert!(compared > 0);
        assert!(
            !rows.iter().any(|r| r[0] == "qemu"),
            "the skipped cell has no row"
        );
    }

    #[test]
    fn dark_theme_and_sizes_apply_and_empty_results_still_report() {
        if !font_available() {
            testkit::skip(
                testkit::Requirement::Package("fonts-dejavu-core"),
                "no system TTF (install fonts-dejavu-core)",
            );
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut results = fixture::results(6);
        let light_opts = ReportOptions {
            size: (960, 540),
            ..ReportOptions::default()
        };
        let light = write_report(&results, &dir.path().join("light"), &light_opts).expect("light");
        let opts = ReportOptions {
            theme: Theme::Dark,
            size: (800, 450),
            log_x: true,
            font: None,
        };
        let dark = write_report(&results, &dir.path().join("dark"), &opts).expect("dark");
        assert_eq!(png_size(&dark.figures[0].png_path), (800, 450));
        assert_eq!(png_size(&light.figures[0].png_path), (960, 540));
        assert_ne!(light.figures[0].svg, dark.figures[0].svg);
        // The HTML page takes the charts' theme: a dark page around dark charts.
        let page = |w: &report::WrittenReport| std::fs::read_to_string(&w.html).expect("html");
        assert!(
            page(&dark).contains("background:#1c1c1e;color:#eeeeee"),
            "dark page"
        );
        assert!(
            page(&light).contains("background:#ffffff;color:#1a1a1a"),
            "light page"
        );

        // Nothing ran: no figures, but the report still says why.
        for cell in &mut results.benchmarks {
            cell.runs.clear();
            cell.skipped
                .get_or_insert_with(|| "no backend could run".to_string());
        }
        results.density.clear();
        let empty =
            write_report(&results, &dir.path().join("empty"), &ReportOptions::default()).expect("empty");
        assert!(empty.figures.is_empty());
        let md = std::fs::read_to_string(&empty.markdown).expect("md");
        assert!(md.contains("no backend could run"));
    }

    /// A tmpfs of `size` mounted at `dir`, unmounted on drop.
    struct TinyDisk<'a>(&'a Path);

    impl<'a> TinyDisk<'a> {
        fn mount(dir: &'a Path, size: &str) -> Option<Self> {
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "cvbench-test-full"])
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(TinyDisk(dir))
        }
    }

    impl Drop for TinyDisk<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }

    #[test]
    fn a_full_disk_leaves_no_truncated_chart_or_report() {
        if !font_available() {
            testkit::skip(
                testkit::Requirement::Package("fonts-dejavu-core"),
                "no system TTF (install fonts-dejavu-core)",
            );
            return;
        }
        if testkit::skip_unless_root("mounting a small tmpfs") {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let full = dir.path().join("full");
        std::fs::create_dir(&full).expect("mkdir");
        let Some(disk) = TinyDisk::mount(&full, "160k") else {
            testkit::skip(
                testkit::Requirement::HostFeature("tmpfs"),
                "cannot mount a tmpfs here",
            );
            return;
        };
        let opts = ReportOptions {
            size: (800, 450),
            ..ReportOptions::default()
        };
        let outcome = write_report(&fixture::results(10), &full, &opts);
        let mut names: Vec<String> = std::fs::read_dir(&full)
            .expect("read_dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        let checks: Vec<(String, bool)> = names
            .iter()
            .map(|name| {
                let bytes = std::fs::read(full.join(name)).unwrap_or_default();
                let whole = if name.ends_with(".png") {
                    bytes.len() >= 12 && &bytes[bytes.len() - 8..bytes.len() - 4] == b"IEND"
                } else if name.ends_with(".svg") {
                    String::from_utf8_lossy(&bytes).trim_end().ends_with("</svg>")
                } else {
                    !bytes.is_empty()
                };
                (name.clone(), whole && !name.starts_with('.'))
            })
            .collect();
        drop(disk);
        assert!(outcome.is_err(), "the report fits in 160 KiB: {names:?}");
        assert!(
            checks.iter().any(|(n, _)| n.ends_with(".png")),
            "the disk filled before the first chart: {names:?}"
        );
        let broken: Vec<&String> = checks.iter().filter(|(_, ok)| !ok).map(|(n, _)| n).collect();
        assert!(
            broken.is_empty(),
            "truncated or temporary files left: {broken:?} of {names:?}"
        );
    }
}
