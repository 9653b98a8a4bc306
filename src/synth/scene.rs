//! Scenes: what an image shows, as data. Every caption, question and answer is computed from a
//! `Scene`, never from pixels, so answers are correct by construction; `render` then draws it.

use super::geometry::overlap;
use super::rng::{pick, pick_weighted, shuffle};
use super::world::{Cell, Color, Shape, Size, Texture, LETTERS, WORDS};
use rand::Rng;

/// One drawn object. Coordinates are fractions of the image side, so a scene renders at any size.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub shape: Shape,
    pub color: Color,
    pub texture: Texture,
    pub size: Size,
    /// The grid cell holding the object's centre.
    pub cell: Cell,
    pub cx: f32,
    pub cy: f32,
    /// Radius as a fraction of the image side.
    pub r: f32,
}

/// What kind of text a sign carries (OCRBench-style question types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    /// A dictionary word ("CAT"): regular text recognition.
    Word,
    /// A digit string ("4071"): digit string recognition.
    Digits,
    /// Random letters ("XKV"): non-semantic text, no language prior helps.
    Letters,
    /// A sum ("3+4"): read, then compute (MME numerical calculation).
    Sum,
}

/// A light rectangle with black glyphs, spanning one row band of the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Sign {
    pub text: String,
    pub kind: TextKind,
    pub color: Color,
    /// Grid row (0 top, 1 middle, 2 bottom) whose band holds the sign; no object shares it.
    pub row: u8,
    /// Horizontal centre as a fraction of the image side.
    pub cx: f32,
}

impl Sign {
    /// The value of a `Sum` sign ("3+4" → 7).
    pub fn sum_value(&self) -> Option<u32> {
        if self.kind != TextKind::Sum {
            return None;
        }
        let (a, b) = self.text.split_once('+')?;
        Some(a.parse::<u32>().ok()? + b.parse::<u32>().ok()?)
    }
}

/// How objects are placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// At most one object per 3×3 grid cell, no overlaps: positions and relations are well defined.
    Grid,
    /// Two overlapping objects; `objects` is in drawing order, so the last one is in front.
    Occlusion,
}

/// The noisy backdrop: a base colour plus smooth and per-pixel noise drawn from `noise_seed`.
#[derive(Clone, Debug, PartialEq)]
pub struct Background {
    pub base: [u8; 3],
    pub noise_seed: u64,
}

/// Everything an image shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    /// In drawing order (back to front).
    pub objects: Vec<Object>,
    pub sign: Option<Sign>,
    pub layout: Layout,
    pub background: Background,
}

impl Scene {
    /// Number of objects of `shape`.
    pub fn count_shape(&self, shape: Shape) -> usize {
        self.objects.iter().filter(|o| o.shape == shape).count()
    }

    /// Number of objects of `color`.
    pub fn count_color(&self, color: Color) -> usize {
        self.objects.iter().filter(|o| o.color == color).count()
    }

    /// Whether an object with this colour and shape is present.
    pub fn has(&self, color: Color, shape: Shape) -> bool {
        self.objects
            .iter()
            .any(|o| o.color == color && o.shape == shape)
    }
}

/// What kind of scene to draw.
#[derive(Clone, Copy, Debug)]
pub struct SceneSpec {
    pub min_objects: usize,
    pub max_objects: usize,
    /// Draw a sign; `Some(kind)` forces the text kind.
    pub sign: SignChoice,
    pub layout: Layout,
}

/// Whether a scene gets a sign.
#[derive(Clone, Copy, Debug)]
pub enum SignChoice {
    No,
    /// A sign with a random text kind.
    Any,
    /// A sign of this kind.
    Kind(TextKind),
}

fn sample_background<R: Rng>(rng: &mut R) -> Background {
    let level: i32 = rng.random_range(55..=105);
    let mut base = [0u8; 3];
    for c in &mut base {
        *c = (level + rng.random_range(-14..=14)).clamp(0, 255) as u8;
    }
    Background {
        base,
        noise_seed: rng.random(),
    }
}

fn sample_text<R: Rng>(rng: &mut R, kind: TextKind) -> String {
    match kind {
        TextKind::Word => pick(rng, &WORDS).to_string(),
        TextKind::Digits => {
            let n = rng.random_range(2..=4);
            let mut s = String::new();
            // No leading zero: "071" would read as a number and lose a digit in answers.
            s.push(char::from(b'1' + rng.random_range(0..9u8)));
            for _ in 1..n {
                s.push(char::from(b'0' + rng.random_range(0..10u8)));
            }
            s
        }
        TextKind::Letters => {
            let n = rng.random_range(3..=4);
            (0..n)
                .map(|_| char::from(*pick(rng, LETTERS)))
                .collect::<String>()
        }
        TextKind::Sum => {
            let a = rng.random_range(1..=9);
            let b = rng.random_range(1..=9);
            format!("{a}+{b}")
        }
    }
}

/// The widest a sign may be, as a fraction of the image side at the smallest supported scale
/// (8-pixel glyphs on a 64-pixel image, 2-pixel padding).
pub fn sign_width_fraction(chars: usize) -> f32 {
    (chars as f32 * 8.0 + 4.0) / 64.0
}

fn sample_sign<R: Rng>(rng: &mut R, kind: TextKind) -> Sign {
    let text = sample_text(rng, kind);
    let half = sign_width_fraction(text.len()) / 2.0;
    let slack = (0.5 - half - 0.03).max(0.0);
    Sign {
        row: rng.random_range(0..Cell::GRID),
        cx: 0.5 + rng.random_range(-slack..=slack),
        color: *pick(rng, &Color::SIGN),
        text,
        kind,
    }
}

fn sample_attributes<R: Rng>(rng: &mut R, previous: &[Object]) -> (Shape, Color, Texture, Size) {
    // Repeating an earlier shape or colour makes counts above one common and forces referring
    // expressions to combine attributes ("the small red star").
    let shape = match previous.last() {
        Some(p) if rng.random_bool(0.3) => p.shape,
        _ => Shape::ALL[pick_weighted(rng, &Shape::PRIOR)],
    };
    let color = match previous.last() {
        Some(p) if rng.random_bool(0.2) => p.color,
        _ => Color::ALL[pick_weighted(rng, &Color::PRIOR)],
    };
    let texture = Texture::ALL[pick_weighted(rng, &Texture::PRIOR)];
    let size = if rng.random_bool(0.5) {
        Size::Small
    } else {
        Size::Large
    };
    (shape, color, texture, size)
}

fn grid_scene<R: Rng>(rng: &mut R, spec: &SceneSpec) -> Scene {
    let background = sample_background(rng);
    let sign = match spec.sign {
        SignChoice::No => None,
        SignChoice::Any => {
            const KINDS: [TextKind; 4] = [
                TextKind::Word,
                TextKind::Digits,
                TextKind::Letters,
                TextKind::Sum,
            ];
            let kind = KINDS[pick_weighted(rng, &[5, 2, 2, 1])];
            Some(sample_sign(rng, kind))
        }
        SignChoice::Kind(kind) => Some(sample_sign(rng, kind)),
    };
    let mut cells: Vec<Cell> = Cell::all()
        .into_iter()
        .filter(|c| sign.as_ref().is_none_or(|s| s.row != c.row))
        .collect();
    shuffle(rng, &mut cells);
    let max = spec.max_objects.min(cells.len()).max(1);
    let min = spec.min_objects.clamp(1, max);
    let n = rng.random_range(min..=max);
    let cell_side = 1.0 / Cell::GRID as f32;
    let mut objects: Vec<Object> = Vec::with_capacity(n);
    for &cell in cells.iter().take(n) {
        let (shape, color, texture, size) = sample_attributes(rng, &objects);
        let r = size.radius_in_cells() * cell_side;
        // Jitter inside the cell, keeping a margin so objects never touch a cell border.
        let room = (cell_side / 2.0 - r - 0.02).max(0.0);
        let cx = (cell.col as f32 + 0.5) * cell_side + rng.random_range(-room..=room);
        let cy = (cell.row as f32 + 0.5) * cell_side + rng.random_range(-room..=room);
        objects.push(Object {
            shape,
            color,
            texture,
            size,
            cell,
            cx,
            cy,
            r,
        });
    }
    Scene {
        objects,
        sign,
        layout: Layout::Grid,
        background,
    }
}

fn cell_of(cx: f32, cy: f32) -> Cell {
    let g = Cell::GRID as f32;
    Cell {
        row: ((cy * g) as u8).min(Cell::GRID - 1),
        col: ((cx * g) as u8).min(Cell::GRID - 1),
    }
}

/// Two overlapping objects that differ in both shape and colour (so "the red star" and "the blue
/// circle" name them), the front one partly hiding the back one.
fn occlusion_scene<R: Rng>(rng: &mut R) -> Scene {
    let background = sample_background(rng);
    let cell_side = 1.0 / Cell::GRID as f32;
    let back_shape = Shape::ALL[pick_weighted(rng, &Shape::PRIOR)];
    let back_color = Color::ALL[pick_weighted(rng, &Color::PRIOR)];
    let mut front_shape = back_shape;
    while front_shape == back_shape {
        front_shape = Shape::ALL[pick_weighted(rng, &Shape::PRIOR)];
    }
    let mut front_color = back_color;
    while front_color == back_color {
        front_color = Color::ALL[pick_weighted(rng, &Color::PRIOR)];
    }
    // Sizes and textures of both objects are drawn independently, so neither "the smaller one" nor
    // "the patterned one" tells which is in front: only the occlusion does.
    let full_r = 1.25 * Size::Large.radius_in_cells() * cell_side;
    let draw_size = |rng: &mut R| {
        if rng.random_bool(0.5) {
            (Size::Small, 0.72 * full_r)
        } else {
            (Size::Large, full_r)
        }
    };
    let (back_size, back_r) = draw_size(rng);
    let (front_size, front_r) = draw_size(rng);
    let back_texture = Texture::ALL[pick_weighted(rng, &Texture::PRIOR)];
    let front_texture = Texture::ALL[pick_weighted(rng, &Texture::PRIOR)];
    let make = |shape, color, texture, size, cx: f32, cy: f32, r| Object {
        shape,
        color,
        texture,
        size,
        cell: cell_of(cx, cy),
        cx,
        cy,
        r,
    };
    // Place the front object around the back one until the silhouettes really overlap (thin
    // crosses and stars can miss each other) while at least half of the back object stays visible.
    let mut placed = None;
    for _ in 0..100 {
        let bx = 0.5 + rng.random_range(-0.08..=0.08);
        let by = 0.5 + rng.random_range(-0.08..=0.08);
        let angle = rng.random_range(0.0..std::f32::consts::TAU);
        let dist = rng.random_range(0.45..0.7) * (back_r + front_r);
        let back = make(
            back_shape,
            back_color,
            back_texture,
            back_size,
            bx,
            by,
            back_r,
        );
        let front = make(
            front_shape,
            front_color,
            front_texture,
            front_size,
            bx + dist * angle.cos(),
            by + dist * angle.sin(),
            front_r,
        );
        let (in_back, in_front, both) = overlap(&back, &front, 48);
        let hidden = both as f32 / in_back.max(1) as f32;
        if both * 10 >= in_back.min(in_front) && hidden <= 0.5 {
            placed = Some((back, front));
            break;
        }
    }
    // Rarely needed (most placements qualify): centres this close always overlap, because every
    // silhouette contains the disc of radius `geometry::CORE` around its centre.
    let (back, front) = placed.unwrap_or_else(|| {
        let dist = 0.9 * crate::synth::geometry::CORE * back_r.min(front_r);
        (
            make(
                back_shape,
                back_color,
                back_texture,
                back_size,
                0.5,
                0.5,
                back_r,
            ),
            make(
                front_shape,
                front_color,
                front_texture,
                front_size,
                0.5 + dist,
                0.5,
                front_r,
            ),
        )
    });
    Scene {
        objects: vec![back, front],
        sign: None,
        layout: Layout::Occlusion,
        background,
    }
}

/// Draws a scene as `spec` asks.
pub fn sample_scene<R: Rng>(rng: &mut R, spec: &SceneSpec) -> Scene {
    match spec.layout {
        Layout::Grid => grid_scene(rng, spec),
        Layout::Occlusion => occlusion_scene(rng),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::rng::item_rng;

    #[test]
    fn grid_scenes_keep_one_object_per_cell_and_off_the_sign_row() {
        for i in 0..300 {
            let mut rng = item_rng(1, "scene-test", i);
            let spec = SceneSpec {
                min_objects: 1,
                max_objects: 6,
                sign: SignChoice::Any,
                layout: Layout::Grid,
            };
            let s = sample_scene(&mut rng, &spec);
            let sign = s.sign.as_ref().unwrap();
            let mut cells: Vec<Cell> = s.objects.iter().map(|o| o.cell).collect();
            cells.sort();
            cells.dedup();
            assert_eq!(cells.len(), s.objects.len());
            assert!(s.objects.iter().all(|o| o.cell.row != sign.row));
            for o in &s.objects {
                assert_eq!(cell_of(o.cx, o.cy), o.cell, "object centre left its cell");
            }
        }
    }

    #[test]
    fn occluding_pairs_overlap_and_leave_the_back_object_visible() {
        for i in 0..200 {
            let mut rng = item_rng(2, "occlusion-test", i);
            let spec = SceneSpec {
                min_objects: 2,
                max_objects: 2,
                sign: SignChoice::No,
                layout: Layout::Occlusion,
            };
            let s = sample_scene(&mut rng, &spec);
            let (back, front) = (&s.objects[0], &s.objects[1]);
            assert_ne!(back.shape, front.shape);
            assert_ne!(back.color, front.color);
            let (in_back, _, both) = overlap(back, front, 48);
            assert!(both > 0, "scene {i}: no overlap");
            assert!(both * 2 <= in_back, "scene {i}: back object mostly hidden");
        }
    }

    #[test]
    fn sums_evaluate() {
        let sign = Sign {
            text: "3+4".into(),
            kind: TextKind::Sum,
            color: Color::White,
            row: 0,
            cx: 0.5,
        };
        assert_eq!(sign.sum_value(), Some(7));
    }
}
