//! The font charts are drawn with. Binaries are statically linked, so plotters cannot ask
//! fontconfig; instead a TTF is read from a system path and registered with plotters' `ab_glyph`
//! font table under [`crate::style::FONT_FAMILY`]. Debian's `fonts-dejavu-core` provides the default.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::style::FontStyle;

use crate::style::FONT_FAMILY;
use crate::ReportError;

/// Where the regular and bold faces are looked for, in order.
pub const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// The font registered for this process (plotters' table is global, so once is enough).
static REGISTERED: OnceLock<PathBuf> = OnceLock::new();

/// Registers `explicit` or the first existing candidate; later calls return the font registered
/// first. Errors name every path tried and the package that provides the default.
pub fn register(explicit: Option<&Path>) -> Result<&'static Path, ReportError> {
    if let Some(path) = REGISTERED.get() {
        return Ok(path.as_path());
    }
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => FONT_CANDIDATES.iter().map(PathBuf::from).collect(),
    };
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return Err(ReportError::FontMissing { tried: candidates });
    };
    let bytes = std::fs::read(path).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    // plotters keeps registered fonts for the life of the process and wants `'static` bytes; this
    // leaks one font file (a few hundred KiB) once per process.
    let regular: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, regular)
        .map_err(|_| ReportError::FontInvalid { path: path.clone() })?;
    if let Some(bold) = bold_face_of(path) {
        if let Ok(bytes) = std::fs::read(&bold) {
            let bold_bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            // A broken bold face only costs bold titles (plotters falls back to the regular face).
            let _ = plotters::style::register_font(FONT_FAMILY, FontStyle::Bold, bold_bytes);
        }
    }
    Ok(REGISTERED.get_or_init(|| path.clone()).as_path())
}

/// `DejaVuSans.ttf` -> `DejaVuSans-Bold.ttf`, `X-Regular.ttf` -> `X-Bold.ttf`, if it exists.
fn bold_face_of(regular: &Path) -> Option<PathBuf> {
    let stem = regular.file_stem()?.to_str()?;
    let base = stem.strip_suffix("-Regular").unwrap_or(stem);
    let bold = regular.with_file_name(format!("{base}-Bold.ttf"));
    bold.is_file().then_some(bold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_font_names_every_path_tried() {
        let err = register(Some(Path::new("/nonexistent/font.ttf")));
        // Another test in this process may already have registered the system font.
        if REGISTERED.get().is_some() {
            testkit::skip(
                testkit::Requirement::OwnProcess,
                "a font is already registered in this test process",
            );
            return;
        }
        let msg = err.map(|_| String::new()).unwrap_or_else(|e| e.to_string());
        assert!(
            msg.contains("/nonexistent/font.ttf") && msg.contains("fonts-dejavu-core"),
            "{msg}"
        );
    }

    #[test]
    fn bold_faces_are_found_beside_the_regular_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("X-Regular.ttf"), b"").expect("write");
        std::fs::write(dir.path().join("X-Bold.ttf"), b"").expect("write");
        assert_eq!(
            bold_face_of(&dir.path().join("X-Regular.ttf")),
            Some(dir.path().join("X-Bold.ttf"))
        );
        assert_eq!(bold_face_of(&dir.path().join("Y.ttf")), None);
    }
}
