//! The offline world: synthetic images, captions, instructions and benchmarks.
