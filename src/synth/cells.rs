//! What each grid cell of an image shows: the per-patch labels a tower is supervised with and
//! probed on (one patch = one cell when the patch grid is the 3×3 object grid, or a multiple of
//! it). The world writes them beside the pretraining captions (`pretrain/cells.json`).
//!
//! A caption-level objective cannot teach a tower to bind attributes: against a bag of words,
//! "red circle, blue square" and "blue circle, red square" are the same target. A label per cell
//! names the object there, so a patch token learns *its* colour with *its* shape.

use super::scene::{Layout, Scene};
use super::world::{Cell, Color, Shape, Size, Texture};
use serde::{Deserialize, Serialize};

/// The contents of one cell as class indices (see the `*_CLASSES` lists).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellLabel {
    pub color: u8,
    pub shape: u8,
    pub texture: u8,
    pub size: u8,
}

/// Colour classes: the palette, then `none` (an empty cell; a sign's colour counts as its own).
pub fn color_classes() -> Vec<&'static str> {
    let mut v: Vec<&str> = Color::ALL.iter().map(|c| c.name()).collect();
    v.push("none");
    v
}

/// Shape classes: the shapes, then `empty` and `sign`.
pub fn shape_classes() -> Vec<&'static str> {
    let mut v: Vec<&str> = Shape::ALL.iter().map(|s| s.name()).collect();
    v.extend(["empty", "sign"]);
    v
}

/// Texture classes: the textures, then `none`.
pub fn texture_classes() -> Vec<&'static str> {
    let mut v: Vec<&str> = Texture::ALL.iter().map(|t| t.adjective()).collect();
    v.push("none");
    v
}

/// Size classes: small, large, then `none`.
pub fn size_classes() -> Vec<&'static str> {
    vec![Size::Small.name(), Size::Large.name(), "none"]
}

fn index<T: PartialEq>(all: &[T], x: &T) -> u8 {
    all.iter().position(|a| a == x).unwrap_or(0) as u8
}

/// One pretraining image's cells in raster order, or `None` for an occlusion scene (its two
/// objects straddle cells, so no cell has one right label).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneCells {
    pub id: String,
    pub cells: Option<Vec<CellLabel>>,
}

impl SceneCells {
    pub fn of(id: &str, scene: &Scene) -> SceneCells {
        if scene.layout != Layout::Grid {
            return SceneCells {
                id: id.to_string(),
                cells: None,
            };
        }
        let (nc, ns, nt, nz) = (
            Color::ALL.len() as u8,
            Shape::ALL.len() as u8,
            Texture::ALL.len() as u8,
            2u8,
        );
        let cells = Cell::all()
            .into_iter()
            .map(|cell| {
                if let Some(o) = scene.objects.iter().find(|o| o.cell == cell) {
                    CellLabel {
                        color: index(&Color::ALL, &o.color),
                        shape: index(&Shape::ALL, &o.shape),
                        texture: index(&Texture::ALL, &o.texture),
                        size: u8::from(o.size == Size::Large),
                    }
                } else if scene.sign.as_ref().is_some_and(|s| s.row == cell.row) {
                    CellLabel {
                        color: nc,
                        shape: ns + 1,
                        texture: nt,
                        size: nz,
                    }
                } else {
                    CellLabel {
                        color: nc,
                        shape: ns,
                        texture: nt,
                        size: nz,
                    }
                }
            })
            .collect();
        SceneCells {
            id: id.to_string(),
            cells: Some(cells),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::rng::item_rng;
    use crate::synth::scene::{sample_scene, SceneSpec, SignChoice};

    #[test]
    fn every_object_is_labelled_in_its_cell_and_the_rest_is_empty_or_sign() {
        for i in 0..100 {
            let mut rng = item_rng(5, "cells-test", i);
            let spec = SceneSpec {
                min_objects: 1,
                max_objects: 6,
                sign: SignChoice::Any,
                layout: Layout::Grid,
            };
            let scene = sample_scene(&mut rng, &spec);
            let cells = SceneCells::of("x", &scene).cells.unwrap();
            assert_eq!(cells.len(), 9);
            let shapes = shape_classes();
            let objects = cells.iter().filter(|c| (c.shape as usize) < 6).count();
            assert_eq!(objects, scene.objects.len());
            let signs = cells
                .iter()
                .filter(|c| shapes[c.shape as usize] == "sign")
                .count();
            assert_eq!(signs, if scene.sign.is_some() { 3 } else { 0 });
            for o in &scene.objects {
                let c = cells[o.cell.row as usize * 3 + o.cell.col as usize];
                assert_eq!(color_classes()[c.color as usize], o.color.name());
                assert_eq!(shapes[c.shape as usize], o.shape.name());
            }
        }
    }
}
