//! Drawing a `Scene` into an RGB image: noisy background, textured shapes (2×2 supersampled edges),
//! and signs with scaled font8x8 glyphs. Pure functions of (scene, size): byte-identical output on
//! every run and thread.

use super::geometry::inside;
use super::scene::{Object, Scene, Sign};
use super::world::Texture;
use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Glyph colour on signs.
const INK: [u8; 3] = [15, 15, 15];

/// Renders `scene` as a `size`×`size` image.
pub fn render(scene: &Scene, size: u32) -> RgbImage {
    let mut img = background(scene, size);
    for object in &scene.objects {
        draw_object(&mut img, object);
    }
    if let Some(sign) = &scene.sign {
        draw_sign(&mut img, sign);
    }
    img
}

/// Smooth value noise (8-pixel lattice, bilinear) plus per-pixel grain on a base colour.
fn background(scene: &Scene, size: u32) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(scene.background.noise_seed);
    const STEP: u32 = 8;
    let n = size / STEP + 2;
    let lattice: Vec<f32> = (0..n * n)
        .map(|_| rng.random_range(-16.0f32..16.0))
        .collect();
    let base = scene.background.base;
    // Plain loops over the raw buffer: this runs for every pixel of every image, and debug builds
    // (what tests use) pay heavily for per-pixel closures.
    let mut buf = vec![0u8; (size * size * 3) as usize];
    let mut smooth_row = vec![0f32; size as usize];
    for y in 0..size {
        let (gy, fy) = (y / STEP, (y % STEP) as f32 / STEP as f32);
        for x in 0..size {
            let (gx, fx) = (x / STEP, (x % STEP) as f32 / STEP as f32);
            let top = lattice[(gy * n + gx) as usize] * (1.0 - fx)
                + lattice[(gy * n + gx + 1) as usize] * fx;
            let bottom = lattice[((gy + 1) * n + gx) as usize] * (1.0 - fx)
                + lattice[((gy + 1) * n + gx + 1) as usize] * fx;
            smooth_row[x as usize] = top * (1.0 - fy) + bottom * fy;
        }
        let row = &mut buf[(y * size * 3) as usize..((y + 1) * size * 3) as usize];
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            // One draw per pixel, one byte of it per channel: grain in -6..=6.
            let bits = rng.next_u32();
            let smooth = smooth_row[x];
            for c in 0..3 {
                let grain = ((bits >> (8 * c)) & 0xff) as f32 * (12.0 / 255.0) - 6.0;
                px[c] = (base[c] as f32 + smooth + grain).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    RgbImage::from_raw(size, size, buf).expect("buffer sized for the image")
}

/// The colour of a textured object at pixel offset (dx, dy) from its centre.
fn texture_color(object: &Object, dx: f32, dy: f32, radius_px: f32) -> [u8; 3] {
    let base = object.color.rgb();
    let dark = base.map(|c| (c as f32 * 0.35) as u8);
    let period = (radius_px / 3.2).round().max(2.0);
    let use_dark = match object.texture {
        Texture::Solid => false,
        Texture::Stripes => ((dx + dy) / period).floor().rem_euclid(2.0) >= 1.0,
        Texture::Checker => ((dx / period).floor() + (dy / period).floor()).rem_euclid(2.0) >= 1.0,
        Texture::Dots => {
            // Sparse round dots, clearly apart, so they never read as a checkerboard.
            let spacing = (radius_px / 1.7).round().max(4.0);
            let fx = dx - spacing * (dx / spacing).round();
            let fy = dy - spacing * (dy / spacing).round();
            fx * fx + fy * fy <= (0.26 * spacing) * (0.26 * spacing)
        }
    };
    if use_dark {
        dark
    } else {
        base
    }
}

fn draw_object(img: &mut RgbImage, object: &Object) {
    let size = img.width() as f32;
    let (cx, cy, r) = (object.cx * size, object.cy * size, object.r * size);
    let x0 = ((cx - r * 1.1).floor().max(0.0)) as u32;
    let y0 = ((cy - r * 1.1).floor().max(0.0)) as u32;
    let x1 = ((cx + r * 1.1).ceil() as u32).min(img.width() - 1);
    let y1 = ((cy + r * 1.1).ceil() as u32).min(img.height() - 1);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let mut covered = 0u32;
            for (sx, sy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                let u = (x as f32 + sx - cx) / r;
                let v = (y as f32 + sy - cy) / r;
                covered += inside(object.shape, u, v) as u32;
            }
            if covered == 0 {
                continue;
            }
            let dx = x as f32 + 0.5 - cx;
            let dy = y as f32 + 0.5 - cy;
            let color = texture_color(object, dx, dy, r);
            let alpha = covered as f32 / 4.0;
            let px = img.get_pixel_mut(x, y);
            for (out, &new) in px.0.iter_mut().zip(&color) {
                *out = (new as f32 * alpha + *out as f32 * (1.0 - alpha)).round() as u8;
            }
        }
    }
}

/// Glyph scale for an image side: 8-pixel glyphs up to 127 px, 16-pixel from 128 px, ...
pub fn glyph_scale(size: u32) -> u32 {
    (size / 64).max(1)
}

fn draw_sign(img: &mut RgbImage, sign: &Sign) {
    let size = img.width();
    let scale = glyph_scale(size);
    let glyph = 8 * scale;
    let pad = 2 * scale;
    let text_w = glyph * sign.text.chars().count() as u32;
    let rect_w = text_w + 2 * pad;
    let rect_h = glyph + 2 * pad;
    let band = size as f32 / 3.0;
    let cy = (sign.row as f32 + 0.5) * band;
    let left = (sign.cx * size as f32 - rect_w as f32 / 2.0)
        .round()
        .clamp(0.0, size.saturating_sub(rect_w) as f32) as u32;
    let top = (cy - rect_h as f32 / 2.0)
        .round()
        .clamp(0.0, size.saturating_sub(rect_h) as f32) as u32;
    let fill = sign.color.rgb();
    for y in top..(top + rect_h).min(size) {
        for x in left..(left + rect_w).min(size) {
            img.put_pixel(x, y, Rgb(fill));
        }
    }
    for (i, ch) in sign.text.chars().enumerate() {
        // Every character we draw is ASCII, which font8x8's basic block covers.
        let rows = font8x8::BASIC_FONTS.get(ch).unwrap_or([0; 8]);
        let gx = left + pad + i as u32 * glyph;
        let gy = top + pad;
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..8u32 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for sy in 0..scale {
                    for sx in 0..scale {
                        let x = gx + col * scale + sx;
                        let y = gy + row as u32 * scale + sy;
                        if x < size && y < size {
                            img.put_pixel(x, y, Rgb(INK));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::scene::{Background, Layout, TextKind};
    use crate::synth::world::Shape;
    use crate::synth::world::{Cell, Color, Size};

    fn one_object_scene(shape: Shape) -> Scene {
        Scene {
            objects: vec![Object {
                shape,
                color: Color::Red,
                texture: Texture::Solid,
                size: Size::Large,
                cell: Cell { row: 1, col: 1 },
                cx: 0.5,
                cy: 0.5,
                r: 0.3,
            }],
            sign: None,
            layout: Layout::Grid,
            background: Background {
                base: [80, 80, 80],
                noise_seed: 3,
            },
        }
    }

    #[test]
    fn object_colour_lands_at_its_centre_and_not_in_the_corner() {
        for shape in Shape::ALL {
            let img = render(&one_object_scene(shape), 64);
            assert_eq!(img.get_pixel(32, 33).0, Color::Red.rgb(), "{shape:?}");
            assert_ne!(img.get_pixel(1, 1).0, Color::Red.rgb());
        }
    }

    #[test]
    fn shapes_have_distinct_silhouettes() {
        // Sample each silhouette on a grid; every pair must differ somewhere.
        let masks: Vec<Vec<bool>> = Shape::ALL
            .iter()
            .map(|&s| {
                (0..400)
                    .map(|i| {
                        let u = (i % 20) as f32 / 10.0 - 0.95;
                        let v = (i / 20) as f32 / 10.0 - 0.95;
                        inside(s, u, v)
                    })
                    .collect()
            })
            .collect();
        for i in 0..masks.len() {
            for j in i + 1..masks.len() {
                let diff = masks[i]
                    .iter()
                    .zip(&masks[j])
                    .filter(|(a, b)| a != b)
                    .count();
                assert!(diff > 20, "{:?} vs {:?}", Shape::ALL[i], Shape::ALL[j]);
            }
        }
    }

    #[test]
    fn signs_draw_black_glyphs_on_their_colour() {
        let mut scene = one_object_scene(Shape::Circle);
        scene.objects.clear();
        scene.sign = Some(Sign {
            text: "CAT".into(),
            kind: TextKind::Word,
            color: Color::Yellow,
            row: 1,
            cx: 0.5,
        });
        let img = render(&scene, 64);
        let ink = img.pixels().filter(|p| p.0 == INK).count();
        let fill = img.pixels().filter(|p| p.0 == Color::Yellow.rgb()).count();
        assert!(ink > 30 && fill > 100, "ink {ink}, fill {fill}");
        // Same scene, same bytes.
        assert_eq!(img, render(&scene, 64));
    }
}
