//! The offline world: synthetic images, captions, instructions and benchmarks.

pub mod language;
pub mod questions;
pub mod render;
pub mod rng;
pub mod scene;
pub mod sha256;
pub mod world;
