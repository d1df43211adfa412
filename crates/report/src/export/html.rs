//! `report.html`: one self-contained page — styles inline, every figure as inline SVG, no script,
//! no external reference of any kind (it must open offline and on a conference laptop).

use super::{Block, Exporter, Report};
use crate::style::Style;
use crate::ReportError;
use plotters::style::RGBColor;

pub struct Html;

impl Exporter for Html {
    fn file_name(&self) -> &'static str {
        "report.html"
    }

    fn export(&self, report: &Report<'_>) -> Result<Vec<u8>, ReportError> {
        let title = escape(&format!("cvbench report: {}", report.model.results.command));
        let css = css(&report.style);
        let mut out = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>{css}</style>\n</head>\n<body>\n"
        );
        for block in &report.blocks {
            match block {
                Block::Heading(level, text) => {
                    out.push_str(&format!("<h{level}>{}</h{level}>\n", escape(text)))
                }
                Block::Paragraph(text) => out.push_str(&format!("<p>{}</p>\n", code_spans(&escape(text)))),
                Block::Warning(text) => out.push_str(&format!("<p class=\"note\">{}</p>\n", escape(text))),
                Block::Table { head, rows } => {
                    out.push_str("<table>\n<thead><tr>");
                    for h in head {
                        out.push_str(&format!("<th>{}</th>", escape(h)));
                    }
                    out.push_str("</tr></thead>\n<tbody>\n");
                    for r in rows {
                        out.push_str("<tr>");
                        for c in r {
                            out.push_str(&format!("<td>{}</td>", escape(c)));
                        }
                        out.push_str("</tr>\n");
                    }
                    out.push_str("</tbody>\n</table>\n");
                }
                Block::Figure(i) => {
                    let Some(f) = report.figures.get(*i) else { continue };
                    out.push_str(&format!("<figure id=\"{}\">\n", escape(&f.name)));
                    out.push_str(&inline_svg(&f.svg));
                    out.push_str("\n<figcaption>");
                    let lines: Vec<String> = f.caption.lines().map(escape).collect();
                    out.push_str(&lines.join("<br>\n"));
                    out.push_str("</figcaption>\n</figure>\n");
                }
            }
        }
        out.push_str("</body>\n</html>\n");
        Ok(out.into_bytes())
    }
}

/// The page in the charts' theme (`--theme dark` gives a dark page around dark charts).
fn css(style: &Style) -> String {
    let hex = |c: RGBColor| format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2);
    let (bg, fg, muted, grid) = (
        hex(style.background),
        hex(style.foreground),
        hex(style.muted),
        hex(style.grid),
    );
    format!(
        "body{{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;background:{bg};color:{fg}}}\
table{{border-collapse:collapse;margin:1em 0;font-size:0.9em}}th,td{{border:1px solid {grid};padding:0.3em 0.6em;text-align:right}}\
th{{background:{grid}}}td:first-child,td:nth-child(2){{text-align:left}}\
figure{{margin:2em 0}}figure svg{{width:100%;height:auto}}figcaption{{font-size:0.9em;color:{muted}}}\
.note{{border-left:4px solid #e69f00;padding:0.5em 1em}}code{{background:{grid};padding:0 0.2em}}"
    )
}

/// An SVG document made fit for inlining: the XML declaration and namespace attributes go (an HTML
/// parser puts `<svg>` in the SVG namespace by itself), so the page holds no URL at all.
pub fn inline_svg(svg: &str) -> String {
    let body = match svg.find("<svg") {
        Some(start) => &svg[start..],
        None => svg,
    };
    body.replace(" xmlns=\"http://www.w3.org/2000/svg\"", "")
        .replace(" xmlns:xlink=\"http://www.w3.org/1999/xlink\"", "")
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `` `x` `` -> `<code>x</code>` in already escaped text.
fn code_spans(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{part}</code>"));
        } else {
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlined_svg_has_no_namespace_url() {
        let svg = "<?xml version=\"1.0\"?>\n<svg width=\"10\" height=\"10\" viewBox=\"0 0 10 10\" xmlns=\"http://www.w3.org/2000/svg\">\n</svg>";
        let inlined = inline_svg(svg);
        assert!(inlined.starts_with("<svg width"));
        assert!(!inlined.contains("http"));
    }

    #[test]
    fn text_is_escaped_and_code_spans_marked() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(code_spans("run `bench x` now"), "run <code>bench x</code> now");
    }
}
