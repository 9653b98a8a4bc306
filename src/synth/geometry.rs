//! Shape silhouettes in object-local coordinates, shared by the renderer (what is drawn) and the
//! scene sampler (whether two objects really overlap).

use super::scene::Object;
use super::world::Shape;

/// Whether the point (u, v), in units of the object's radius from its centre, lies inside `shape`.
pub fn inside(shape: Shape, u: f32, v: f32) -> bool {
    match shape {
        Shape::Circle => u * u + v * v <= 1.0,
        Shape::Square => u.abs() <= 0.82 && v.abs() <= 0.82,
        Shape::Diamond => u.abs() + v.abs() <= 1.05,
        Shape::Triangle => {
            // Upward triangle with apex (0, -1) and base at v = 0.8.
            (-1.0..=0.8).contains(&v) && u.abs() <= (v + 1.0) * (1.0 / 1.8)
        }
        Shape::Cross => (u.abs() <= 0.33 && v.abs() <= 1.0) || (v.abs() <= 0.33 && u.abs() <= 1.0),
        Shape::Star => inside_star(u, v),
    }
}

/// The outline of a five-pointed star (first point straight up), computed once.
fn star_outline() -> &'static [(f32, f32); 10] {
    static OUTLINE: std::sync::OnceLock<[(f32, f32); 10]> = std::sync::OnceLock::new();
    OUTLINE.get_or_init(|| {
        const INNER: f32 = 0.45;
        let mut pts = [(0.0f32, 0.0f32); 10];
        for (i, p) in pts.iter_mut().enumerate() {
            let a = -std::f32::consts::FRAC_PI_2 + i as f32 * std::f32::consts::PI / 5.0;
            let rad = if i % 2 == 0 { 1.05 } else { INNER };
            *p = (rad * a.cos(), rad * a.sin());
        }
        pts
    })
}

fn inside_star(u: f32, v: f32) -> bool {
    // Even-odd test against the 10-vertex outline.
    let pts = star_outline();
    let mut inside = false;
    let mut j = pts.len() - 1;
    for i in 0..pts.len() {
        let (xi, yi) = pts[i];
        let (xj, yj) = pts[j];
        if (yi > v) != (yj > v) && u < (xj - xi) * (v - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Every silhouette contains the disc of this radius (in units of the object's radius) around its
/// centre; objects whose centres are closer than `CORE × the smaller radius` always overlap.
pub const CORE: f32 = 0.3;

/// Pixel-free overlap measure of two objects on a `grid`×`grid` lattice over their joint bounding
/// box: (area of `a`, area of `b`, area of both), in lattice points.
pub fn overlap(a: &Object, b: &Object, grid: u32) -> (u32, u32, u32) {
    let x0 = (a.cx - a.r).min(b.cx - b.r);
    let x1 = (a.cx + a.r).max(b.cx + b.r);
    let y0 = (a.cy - a.r).min(b.cy - b.r);
    let y1 = (a.cy + a.r).max(b.cy + b.r);
    let (mut in_a, mut in_b, mut both) = (0, 0, 0);
    for j in 0..grid {
        for i in 0..grid {
            let x = x0 + (x1 - x0) * (i as f32 + 0.5) / grid as f32;
            let y = y0 + (y1 - y0) * (j as f32 + 0.5) / grid as f32;
            let ia = inside(a.shape, (x - a.cx) / a.r, (y - a.cy) / a.r);
            let ib = inside(b.shape, (x - b.cx) / b.r, (y - b.cy) / b.r);
            in_a += ia as u32;
            in_b += ib as u32;
            both += (ia && ib) as u32;
        }
    }
    (in_a, in_b, both)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_contains_its_core_disc() {
        for shape in Shape::ALL {
            for k in 0..64 {
                let a = k as f32 / 64.0 * std::f32::consts::TAU;
                for rad in [0.0, CORE * 0.5, CORE] {
                    assert!(
                        inside(shape, rad * a.cos(), rad * a.sin()),
                        "{shape:?} at {a}"
                    );
                }
            }
        }
    }
}
