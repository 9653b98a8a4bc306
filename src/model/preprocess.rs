//! Image preprocessing matching the HF CLIP / SigLIP image processors (work in progress).
