//! Helpers shared by integration tests.

pub mod scene_questions;
