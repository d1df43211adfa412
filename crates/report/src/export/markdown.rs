//! `report.md`: the document as GitHub-flavoured Markdown, figures as PNG links with their captions.

use super::{Block, Exporter, Report};
use crate::ReportError;

pub struct Markdown;

impl Exporter for Markdown {
    fn file_name(&self) -> &'static str {
        "report.md"
    }

    fn export(&self, report: &Report<'_>) -> Result<Vec<u8>, ReportError> {
        let mut out = String::new();
        for block in &report.blocks {
            match block {
                Block::Heading(level, text) => {
                    out.push_str(&format!("{} {}\n\n", "#".repeat(usize::from(*level)), text));
                }
                Block::Paragraph(text) => out.push_str(&format!("{text}\n\n")),
                Block::Warning(text) => out.push_str(&format!("> **Note:** {text}\n\n")),
                Block::Table { head, rows } => {
                    out.push_str(&row(head));
                    out.push_str(&format!("|{}\n", "---|".repeat(head.len())));
                    for r in rows {
                        out.push_str(&row(r));
                    }
                    out.push('\n');
                }
                Block::Figure(i) => {
                    let Some(f) = report.figures.get(*i) else { continue };
                    let file = |p: &std::path::Path| {
                        p.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    };
                    out.push_str(&format!("### {}\n\n", f.title));
                    out.push_str(&format!("![{}]({})\n\n", f.title, file(&f.png_path)));
                    for line in f.caption.lines() {
                        out.push_str(&format!("- {line}\n"));
                    }
                    out.push_str(&format!("\n([SVG]({}))\n\n", file(&f.svg_path)));
                }
            }
        }
        Ok(out.into_bytes())
    }
}

fn row(cells: &[String]) -> String {
    let escaped: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
    format!("| {} |\n", escaped.join(" | "))
}
