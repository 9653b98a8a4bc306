//! A pivoted table drawn as a heatmap PNG: one row per table row, one column per table column,
//! each cell coloured by its value *within its column* (benchmarks have different scales, so a
//! single colour scale would only show which benchmark is easiest), its value printed in it, the
//! best cell of each column outlined, and missing cells grey.
//!
//! Drawn with plotters into an RGB buffer and encoded with the `image` crate, so the output
//! depends on nothing installed on the machine: the font (DejaVu Sans, Bitstream Vera licence,
//! `assets/fonts/`) is compiled in. The same table always gives the same bytes.

use crate::report::lower_is_better;
use crate::report::pivot::WideTable;
use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::sync::OnceLock;

/// The compiled-in font family name.
const FONT: &str = "sans-serif";
const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

const CELL_H: u32 = 30;
const MIN_CELL_W: u32 = 84;
const PAD: u32 = 12;
const LABEL_PT: f64 = 14.0;
const TITLE_PT: f64 = 17.0;
const MISSING: RGBColor = RGBColor(215, 215, 215);

/// Registers the font once per process; every call reports the registration's outcome.
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    anyhow::ensure!(ok, "the compiled-in font is not a valid TrueType font");
    Ok(())
}

/// The row labels as drawn: the row-axis values joined by " · " (axes that do not apply to
/// the row, shown as "-" in the tables, are left out).
fn row_label(labels: &[String]) -> String {
    let parts: Vec<&str> = labels
        .iter()
        .map(String::as_str)
        .filter(|l| *l != "-")
        .collect();
    parts.join(" · ")
}

/// Whether column `c` holds at least two different values (a "best" among equals says nothing).
fn column_varies(t: &WideTable, c: usize) -> bool {
    let mut vals = t.cells.iter().filter_map(|r| r[c].map(|a| a.mean));
    match vals.next() {
        Some(first) => vals.any(|v| v != first),
        None => false,
    }
}

/// A value as printed in its cell (with ± std when seeds were aggregated).
fn cell_text(mean: f64, std: Option<f64>, delta: bool) -> String {
    let v = if delta {
        format!("{mean:+.1}")
    } else {
        format!("{mean:.1}")
    };
    match std {
        Some(s) => format!("{v} ± {s:.1}"),
        None => v,
    }
}

/// Per-column position of each value in [0, 1] (0 = worst, 1 = best of its column); a column
/// with one distinct value is drawn mid-scale.
fn column_scale(t: &WideTable, c: usize) -> impl Fn(f64) -> f64 {
    let vals: Vec<f64> = t
        .cells
        .iter()
        .filter_map(|r| r[c].map(|a| a.mean))
        .filter(|v| v.is_finite())
        .collect();
    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let flip = lower_is_better(&t.metric);
    move |v: f64| {
        // One distinct value (or none): mid-scale. `hi <= lo` also covers the empty column,
        // where hi = -inf and lo = +inf.
        if hi <= lo {
            return 0.5;
        }
        let x = (v - lo) / (hi - lo);
        if flip {
            1.0 - x
        } else {
            x
        }
    }
}

/// Black or white, whichever reads better on `bg`.
fn ink_on(bg: RGBColor) -> RGBColor {
    let lum = 0.299 * bg.0 as f64 + 0.587 * bg.1 as f64 + 0.114 * bg.2 as f64;
    if lum > 140.0 {
        BLACK
    } else {
        WHITE
    }
}

/// Draws `t` under `title` and returns the PNG bytes.
pub fn heatmap_png(t: &WideTable, title: &str) -> Result<Vec<u8>> {
    register_font()?;
    let label_font = (FONT, LABEL_PT).into_font();
    let title_font = (FONT, TITLE_PT).into_font();
    let measure = |text: &str, font: &FontDesc| -> Result<(u32, u32)> {
        font.box_size(text)
            .map_err(|e| anyhow!("measuring text `{text}`: {e:?}"))
    };
    let labels: Vec<String> = t.rows.iter().map(|r| row_label(r)).collect();
    let label_w = labels
        .iter()
        .map(|l| measure(l, &label_font).map(|s| s.0))
        .chain(std::iter::once(
            measure(&t.row_axes.join(" · "), &label_font).map(|s| s.0),
        ))
        .try_fold(0u32, |m, w| w.map(|w| m.max(w)))?;
    let mut cell_w = MIN_CELL_W;
    for (c, name) in t.cols.iter().enumerate() {
        cell_w = cell_w.max(measure(name, &label_font)?.0 + PAD);
        for r in &t.cells {
            if let Some(a) = r[c] {
                let s = cell_text(a.mean, a.std, t.baseline_delta);
                cell_w = cell_w.max(measure(&s, &label_font)?.0 + PAD);
            }
        }
    }
    let title_h = measure(title, &title_font)?.1 + 2 * PAD;
    let x0 = PAD + label_w + PAD;
    let y0 = title_h + CELL_H;
    let width = x0 + cell_w * t.cols.len() as u32 + PAD;
    let height = y0 + CELL_H * t.rows.len() as u32 + PAD + CELL_H;

    let mut buf = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        let err = |e| anyhow!("drawing the heatmap: {e:?}");
        root.fill(&WHITE).map_err(err)?;
        let at = |x: u32, y: u32| (x as i32, y as i32);
        root.draw(&Text::new(
            title.to_string(),
            at(PAD, PAD),
            title_font.clone(),
        ))
        .map_err(err)?;
        let centred = TextStyle::from(label_font.clone()).pos(Pos::new(HPos::Center, VPos::Center));
        let left = TextStyle::from(label_font.clone()).pos(Pos::new(HPos::Left, VPos::Center));
        root.draw(&Text::new(
            t.row_axes.join(" · "),
            at(PAD, title_h + CELL_H / 2),
            left.clone(),
        ))
        .map_err(err)?;
        for (c, name) in t.cols.iter().enumerate() {
            let cx = x0 + cell_w * c as u32 + cell_w / 2;
            root.draw(&Text::new(
                name.clone(),
                at(cx, title_h + CELL_H / 2),
                centred.clone(),
            ))
            .map_err(err)?;
        }
        let scales: Vec<_> = (0..t.cols.len()).map(|c| column_scale(t, c)).collect();
        let varies: Vec<bool> = (0..t.cols.len()).map(|c| column_varies(t, c)).collect();
        for (r, label) in labels.iter().enumerate() {
            let y = y0 + CELL_H * r as u32;
            root.draw(&Text::new(
                label.clone(),
                at(PAD, y + CELL_H / 2),
                left.clone(),
            ))
            .map_err(err)?;
            for c in 0..t.cols.len() {
                let x = x0 + cell_w * c as u32;
                let (bg, text) = match t.cells[r][c] {
                    Some(a) if a.mean.is_finite() => (
                        ViridisRGB::get_color(scales[c](a.mean)),
                        cell_text(a.mean, a.std, t.baseline_delta),
                    ),
                    _ => (MISSING, "—".to_string()),
                };
                let rect = [at(x, y), at(x + cell_w - 1, y + CELL_H - 1)];
                root.draw(&Rectangle::new(rect, bg.filled())).map_err(err)?;
                if t.best[r][c] && varies[c] {
                    let inner = [at(x + 1, y + 1), at(x + cell_w - 2, y + CELL_H - 2)];
                    root.draw(&Rectangle::new(inner, RED.stroke_width(2)))
                        .map_err(err)?;
                }
                let fg = ink_on(bg);
                let ink = centred.clone().color(&fg);
                root.draw(&Text::new(text, at(x + cell_w / 2, y + CELL_H / 2), ink))
                    .map_err(err)?;
            }
        }
        let legend = format!(
            "{}; colour: position within each column ({} is better); red outline: best of a column",
            t.metric,
            if lower_is_better(&t.metric) {
                "lower"
            } else {
                "higher"
            }
        );
        let small = TextStyle::from((FONT, LABEL_PT - 2.0).into_font())
            .pos(Pos::new(HPos::Left, VPos::Center));
        root.draw(&Text::new(
            legend,
            at(PAD, height - PAD - CELL_H / 2),
            small.color(&RGBColor(90, 90, 90)),
        ))
        .map_err(err)?;
        root.present().map_err(err)?;
    }
    let img = image::RgbImage::from_raw(width, height, buf)
        .context("the heatmap buffer has the wrong size")?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("encoding the heatmap as PNG")?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::pivot::Agg;

    fn table() -> WideTable {
        let agg = |m: f64| {
            Some(Agg {
                mean: m,
                std: None,
                n: 1,
            })
        };
        WideTable {
            row_axes: vec!["fusion".into(), "layers".into()],
            rows: vec![
                vec!["baseline".into(), "-".into()],
                vec!["E_D".into(), "3-18-23".into()],
            ],
            cols: vec!["gqa".into(), "pope".into()],
            cells: vec![vec![agg(40.0), agg(80.0)], vec![agg(45.5), None]],
            best: vec![vec![false, true], vec![true, false]],
            metric: "primary".into(),
            baseline_delta: false,
            gaps: vec![],
        }
    }

    #[test]
    fn draws_a_deterministic_png_whose_cells_follow_the_column_scale() {
        let png = heatmap_png(&table(), "quickstart: main").unwrap();
        assert_eq!(png, heatmap_png(&table(), "quickstart: main").unwrap());
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert!(img.width() > 200 && img.height() > 100);
        // The colours of the gqa column: the better row (E_D) is the top of viridis (yellow),
        // the worse the bottom (purple); the missing pope cell is grey.
        let has = |c: RGBColor| img.pixels().any(|p| p.0 == [c.0, c.1, c.2]);
        assert!(has(ViridisRGB::get_color(1.0)));
        assert!(has(ViridisRGB::get_color(0.0)));
        assert!(has(MISSING));
    }

    #[test]
    fn lower_is_better_metrics_flip_the_scale() {
        let mut t = table();
        t.metric = "loss".into();
        let s = column_scale(&t, 0);
        assert_eq!(s(40.0), 1.0);
        assert_eq!(s(45.5), 0.0);
    }
}
