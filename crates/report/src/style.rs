//! What every chart shares: canvas size, theme colours, the colour-blind-safe palette (Okabe–Ito),
//! font sizes that stay readable on a projector, and the one font family charts use.

use plotters::style::RGBColor;

/// Font family name every chart uses; [`crate::font::register`] binds it to a TTF file.
pub const FONT_FAMILY: &str = "sans-serif";

/// Default canvas, 16:9 like a slide.
pub const DEFAULT_SIZE: (u32, u32) = (1920, 1080);

/// Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision
/// deficiency. Black is left out (it is the light theme's text colour); order is the series order.
pub const OKABE_ITO: [RGBColor; 7] = [
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0xF0, 0xE4, 0x42), // yellow
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Theme {
    #[default]
    Light,
    Dark,
}

impl std::str::FromStr for Theme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "light" => Ok(Theme::Light),
            "dark" => Ok(Theme::Dark),
            other => Err(format!("unknown theme {other:?} (expected light or dark)")),
        }
    }
}

/// Resolved colours and sizes for one canvas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Style {
    pub width: u32,
    pub height: u32,
    pub background: RGBColor,
    pub foreground: RGBColor,
    pub muted: RGBColor,
    pub grid: RGBColor,
}

impl Style {
    pub fn new(theme: Theme, (width, height): (u32, u32)) -> Self {
        match theme {
            Theme::Light => Style {
                width,
                height,
                background: RGBColor(0xFF, 0xFF, 0xFF),
                foreground: RGBColor(0x1A, 0x1A, 0x1A),
                muted: RGBColor(0x55, 0x55, 0x55),
                grid: RGBColor(0xDD, 0xDD, 0xDD),
            },
            Theme::Dark => Style {
                width,
                height,
                background: RGBColor(0x1C, 0x1C, 0x1E),
                foreground: RGBColor(0xEE, 0xEE, 0xEE),
                muted: RGBColor(0xAA, 0xAA, 0xAA),
                grid: RGBColor(0x44, 0x44, 0x48),
            },
        }
    }

    /// Font sizes scale with the canvas: at 1080 px high the title is 44 px, axis labels 32 px and
    /// tick labels 26 px — readable from the back of a room.
    fn scaled(&self, at_1080: f64) -> u32 {
        let h = f64::from(self.height.min(self.width * 9 / 16).max(200));
        // Rounded font size in pixels, a small positive number.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let px = (at_1080 * h / 1080.0).round().max(8.0) as u32;
        px
    }
    pub fn title_px(&self) -> u32 {
        self.scaled(44.0)
    }
    pub fn subtitle_px(&self) -> u32 {
        self.scaled(28.0)
    }
    pub fn label_px(&self) -> u32 {
        self.scaled(32.0)
    }
    pub fn tick_px(&self) -> u32 {
        self.scaled(26.0)
    }
    pub fn legend_px(&self) -> u32 {
        self.scaled(28.0)
    }
    /// Line width for data series.
    pub fn stroke(&self) -> u32 {
        self.scaled(4.0).max(2)
    }
    /// Margin around the plotting area, in pixels.
    pub fn margin(&self) -> u32 {
        self.scaled(24.0)
    }

    /// Colour of series `i` (wraps around the palette).
    pub fn series(&self, i: usize) -> RGBColor {
        OKABE_ITO[i % OKABE_ITO.len()]
    }
}

/// Parses `1920x1080`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("size {s:?} is not WIDTHxHEIGHT"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|e| format!("size {s:?}: {v:?}: {e}"))
    };
    let (w, h) = (parse(w)?, parse(h)?);
    if !(320..=8192).contains(&w) || !(200..=8192).contains(&h) {
        return Err(format!("size {s:?} out of range (320x200 .. 8192x8192)"));
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_are_bounded() {
        assert_eq!(parse_size("1920x1080"), Ok((1920, 1080)));
        assert_eq!(parse_size("800X600"), Ok((800, 600)));
        assert!(parse_size("1920").is_err());
        assert!(parse_size("10x10").is_err());
        assert!(parse_size("axb").is_err());
    }

    #[test]
    fn fonts_scale_with_the_canvas() {
        let big = Style::new(Theme::Light, (1920, 1080));
        let small = Style::new(Theme::Dark, (960, 540));
        assert_eq!(big.title_px(), 44);
        assert_eq!(small.title_px(), 22);
        assert!(big.tick_px() >= 24, "projector-readable ticks");
        assert_ne!(big.background, small.background);
        assert_eq!("dark".parse::<Theme>(), Ok(Theme::Dark));
        assert!("blue".parse::<Theme>().is_err());
    }
}
