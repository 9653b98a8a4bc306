//! Image preprocessing that reproduces the HF CLIP / SigLIP image processors (PIL backend)
//! and LLaVA's `pad` aspect mode, pixel for pixel.
//!
//! The pipeline is HF's: convert to RGB → resize (CLIP: shortest edge to `size`, keeping the
//! aspect ratio; SigLIP: straight to `height`×`width`) → centre crop (CLIP) → rescale by 1/255 →
//! normalise with `image_mean` / `image_std` → `[3, H, W]` f32.
//!
//! Resizing reimplements Pillow's `Image.resize` (libImaging/Resample.c) rather than using the
//! `image` crate's filters: Pillow widens the filter support by the downscale factor
//! (antialiasing), works on 8-bit pixels with 22-bit fixed-point weights, and rounds the
//! intermediate image to 8 bits between its horizontal and vertical passes. Doing the same
//! arithmetic gives the same bytes, so the only differences left are float rounding in the
//! normalisation (measured: none, max |Δ| = 0 on a PNG photograph at CLIP-336 and SigLIP-384).
//!
//! JPEG is the exception: the `image` crate's decoder and Pillow's libjpeg-turbo round the IDCT
//! and chroma upsampling differently, by up to 2–4 levels on a few percent of pixels (scikit-image's
//! rocket.jpg / retina.jpg), which is at most 0.03 after CLIP normalisation.

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use image::{Rgb, RgbImage};
use serde_json::Value;
use std::path::Path;

use crate::model::vision::{VisionArch, VisionConfig};

/// OpenAI CLIP's normalisation constants (`OPENAI_CLIP_MEAN` / `OPENAI_CLIP_STD` in transformers).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)] // OpenAI's digits, verbatim
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// SigLIP's (`IMAGENET_STANDARD_*`).
pub const HALF: [f32; 3] = [0.5, 0.5, 0.5];

/// Pillow's resampling filters, numbered as `PIL.Image.Resampling` (and `"resample"` in
/// preprocessor_config.json).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    Nearest = 0,
    Lanczos = 1,
    Bilinear = 2,
    Bicubic = 3,
    Box = 4,
    Hamming = 5,
}

impl Resample {
    /// From Pillow's integer code.
    pub fn from_code(code: u64) -> Option<Resample> {
        Some(match code {
            0 => Resample::Nearest,
            1 => Resample::Lanczos,
            2 => Resample::Bilinear,
            3 => Resample::Bicubic,
            4 => Resample::Box,
            5 => Resample::Hamming,
            _ => return None,
        })
    }

    /// Half-width of the filter at scale 1, in source pixels.
    fn support(self) -> f64 {
        match self {
            Resample::Nearest | Resample::Box => 0.5,
            Resample::Bilinear | Resample::Hamming => 1.0,
            Resample::Bicubic => 2.0,
            Resample::Lanczos => 3.0,
        }
    }

    /// The filter kernel, as in Resample.c.
    fn kernel(self, x: f64) -> f64 {
        fn sinc(x: f64) -> f64 {
            if x == 0.0 {
                1.0
            } else {
                let px = x * std::f64::consts::PI;
                px.sin() / px
            }
        }
        match self {
            Resample::Nearest | Resample::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Resample::Bilinear => (1.0 - x.abs()).max(0.0),
            Resample::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let px = x * std::f64::consts::PI;
                    px.sin() / px * (0.54 + 0.46 * px.cos())
                }
            }
            Resample::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Resample::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Fixed-point weights of one resampling pass: for output pixel i, source pixels
/// `start[i] .. start[i] + weights[i].len()`.
struct PassCoeffs {
    start: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`.
fn pass_coeffs(in_size: usize, out_size: usize, filter: Resample) -> PassCoeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ss = 1.0 / filterscale;
    let mut start = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) truncates toward zero; negatives are clamped to 0 right after anyway.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let mut k: Vec<f64> = (xmin..xmax)
            .map(|x| filter.kernel((x as f64 - center + 0.5) * ss))
            .collect();
        let total: f64 = k.iter().sum();
        if total != 0.0 {
            k.iter_mut().for_each(|w| *w /= total);
        }
        let fixed = k
            .iter()
            .map(|w| {
                let v = w * (1u32 << PRECISION_BITS) as f64;
                (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
            })
            .collect();
        start.push(xmin);
        weights.push(fixed);
    }
    PassCoeffs { start, weights }
}

/// Pillow's `clip8`: drop the fixed-point fraction and clamp to a byte.
fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an RGB image exactly as Pillow's `Image.resize((width, height), resample)` does
/// (with `reducing_gap=None`, HF's setting).
pub fn resize_like_pil(img: &RgbImage, width: usize, height: usize, filter: Resample) -> RgbImage {
    let (w0, h0) = (img.width() as usize, img.height() as usize);
    if (w0, h0) == (width, height) {
        return img.clone();
    }
    if filter == Resample::Nearest {
        return resize_nearest(img, width, height);
    }
    let src = img.as_raw();
    // Horizontal pass first (when the width changes), into an 8-bit intermediate image.
    let (mid, mid_w) = if w0 != width {
        let c = pass_coeffs(w0, width, filter);
        let mut out = vec![0u8; width * h0 * 3];
        for y in 0..h0 {
            let row = &src[y * w0 * 3..(y + 1) * w0 * 3];
            for x in 0..width {
                let (s, k) = (c.start[x], &c.weights[x]);
                for ch in 0..3 {
                    let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                    for (j, &wt) in k.iter().enumerate() {
                        acc += row[(s + j) * 3 + ch] as i64 * wt as i64;
                    }
                    out[(y * width + x) * 3 + ch] = clip8(acc);
                }
            }
        }
        (out, width)
    } else {
        (src.to_vec(), w0)
    };
    let out = if h0 != height {
        let c = pass_coeffs(h0, height, filter);
        let mut out = vec![0u8; mid_w * height * 3];
        for y in 0..height {
            let (s, k) = (c.start[y], &c.weights[y]);
            for x in 0..mid_w * 3 {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (j, &wt) in k.iter().enumerate() {
                    acc += mid[(s + j) * mid_w * 3 + x] as i64 * wt as i64;
                }
                out[y * mid_w * 3 + x] = clip8(acc);
            }
        }
        out
    } else {
        mid
    };
    RgbImage::from_raw(width as u32, height as u32, out).expect("buffer sized for the image")
}

/// Pillow's NEAREST resize: an affine transform sampling source pixel ⌊(x + ½)·scale⌋.
fn resize_nearest(img: &RgbImage, width: usize, height: usize) -> RgbImage {
    let (w0, h0) = (img.width() as f64, img.height() as f64);
    let (sx, sy) = (w0 / width as f64, h0 / height as f64);
    RgbImage::from_fn(width as u32, height as u32, |x, y| {
        let xi = (((x as f64 + 0.5) * sx) as u32).min(img.width() - 1);
        let yi = (((y as f64 + 0.5) * sy) as u32).min(img.height() - 1);
        *img.get_pixel(xi, yi)
    })
}

/// LLaVA's `expand2square`: paste the image centred on a square canvas of `background`.
pub fn expand_to_square(img: &RgbImage, background: [u8; 3]) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    if w == h {
        return img.clone();
    }
    let side = w.max(h);
    let mut out = RgbImage::from_pixel(side, side, Rgb(background));
    let (ox, oy) = if w > h {
        (0, (side - h) / 2)
    } else {
        ((side - w) / 2, 0)
    };
    image::imageops::replace(&mut out, img, ox as i64, oy as i64);
    out
}

/// How a non-square image is made square: the data pipeline's setting, applied here.
pub use crate::data::ImageAspect;

/// What the resize step aims for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeTarget {
    /// Shortest side to this length, aspect ratio kept (CLIP).
    ShortestEdge(usize),
    /// Exactly this size (SigLIP).
    Exact { height: usize, width: usize },
}

/// An HF image processor's settings (the fields of preprocessor_config.json that matter).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageProcessor {
    pub resize: Option<ResizeTarget>,
    pub resample: Resample,
    /// `(height, width)`.
    pub center_crop: Option<(usize, usize)>,
    pub rescale_factor: Option<f64>,
    /// `(mean, std)` per channel.
    pub normalize: Option<([f32; 3], [f32; 3])>,
}

impl ImageProcessor {
    /// `CLIPImageProcessor` for a tower with input `size` (shortest edge and crop).
    pub fn clip(size: usize) -> ImageProcessor {
        ImageProcessor {
            resize: Some(ResizeTarget::ShortestEdge(size)),
            resample: Resample::Bicubic,
            center_crop: Some((size, size)),
            rescale_factor: Some(1.0 / 255.0),
            normalize: Some((CLIP_MEAN, CLIP_STD)),
        }
    }

    /// `SiglipImageProcessor` for a tower with input `size`.
    pub fn siglip(size: usize) -> ImageProcessor {
        ImageProcessor {
            resize: Some(ResizeTarget::Exact {
                height: size,
                width: size,
            }),
            resample: Resample::Bicubic,
            center_crop: None,
            rescale_factor: Some(1.0 / 255.0),
            normalize: Some((HALF, HALF)),
        }
    }

    /// The default processor of a tower's family, at the tower's image size.
    pub fn for_tower(cfg: &VisionConfig) -> ImageProcessor {
        match cfg.arch {
            VisionArch::Clip => ImageProcessor::clip(cfg.image_size),
            VisionArch::Siglip => ImageProcessor::siglip(cfg.image_size),
        }
    }

    /// `dir/preprocessor_config.json` when present, else the family default for `cfg`.
    pub fn for_model_dir(dir: &Path, cfg: &VisionConfig) -> Result<ImageProcessor> {
        let path = dir.join("preprocessor_config.json");
        if path.is_file() {
            ImageProcessor::from_file(&path)
        } else {
            Ok(ImageProcessor::for_tower(cfg))
        }
    }

    /// Reads a preprocessor_config.json.
    pub fn from_file(path: &Path) -> Result<ImageProcessor> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        ImageProcessor::from_hf_json(&v).with_context(|| format!("in {}", path.display()))
    }

    /// Parses the JSON of an HF image-processor config. Missing fields take the defaults of
    /// the processor class named by `image_processor_type` (CLIP or SigLIP).
    pub fn from_hf_json(v: &Value) -> Result<ImageProcessor> {
        let kind = v
            .get("image_processor_type")
            .or_else(|| v.get("feature_extractor_type"))
            .and_then(Value::as_str)
            .unwrap_or("CLIPImageProcessor");
        let clip_like = !kind.to_ascii_lowercase().contains("siglip");
        let base = if clip_like {
            ImageProcessor::clip(224)
        } else {
            ImageProcessor::siglip(224)
        };
        let flag =
            |key: &str, default: bool| v.get(key).and_then(Value::as_bool).unwrap_or(default);

        let resize = if flag("do_resize", true) {
            Some(match v.get("size") {
                None => base.resize.expect("defaults resize"),
                Some(s) => parse_size(s, clip_like).context("`size`")?,
            })
        } else {
            None
        };
        let resample = match v.get("resample") {
            None => base.resample,
            Some(r) => r.as_u64().and_then(Resample::from_code).with_context(|| {
                format!("`resample` must be a Pillow filter code 0..=5, found {r}")
            })?,
        };
        let center_crop = if flag("do_center_crop", clip_like) {
            match v.get("crop_size") {
                None => Some(base.center_crop.unwrap_or((224, 224))),
                Some(s) => match parse_size(s, false).context("`crop_size`")? {
                    ResizeTarget::Exact { height, width } => Some((height, width)),
                    ResizeTarget::ShortestEdge(n) => Some((n, n)),
                },
            }
        } else {
            None
        };
        let rescale_factor = if flag("do_rescale", true) {
            Some(
                v.get("rescale_factor")
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0 / 255.0),
            )
        } else {
            None
        };
        let normalize = if flag("do_normalize", true) {
            let (dm, ds) = base.normalize.expect("defaults normalise");
            Some((
                parse_triple(v.get("image_mean"), dm).context("`image_mean`")?,
                parse_triple(v.get("image_std"), ds).context("`image_std`")?,
            ))
        } else {
            None
        };
        Ok(ImageProcessor {
            resize,
            resample,
            center_crop,
            rescale_factor,
            normalize,
        })
    }

    /// LLaVA's pad colour: `tuple(int(x * 255) for x in image_mean)`.
    pub fn pad_background(&self) -> [u8; 3] {
        let mean = self.normalize.map(|(m, _)| m).unwrap_or([0.0; 3]);
        mean.map(|m| (m as f64 * 255.0) as u8)
    }

    /// The `(height, width)` of the output for an input of `(height, width)`.
    pub fn output_size(&self, height: usize, width: usize) -> (usize, usize) {
        let (h, w) = match self.resize {
            None => (height, width),
            Some(t) => resize_size(t, height, width),
        };
        self.center_crop.unwrap_or((h, w))
    }

    /// Runs the whole pipeline on one RGB image: `[3, H, W]` f32, channel-first, on `device`.
    pub fn preprocess(
        &self,
        img: &RgbImage,
        aspect: ImageAspect,
        device: &Device,
    ) -> Result<Tensor> {
        let (data, h, w) = self.preprocess_to_vec(img, aspect)?;
        Ok(Tensor::from_vec(data, (3, h, w), device)?)
    }

    /// Preprocesses several images into one `[batch, 3, H, W]` tensor.
    pub fn preprocess_batch(
        &self,
        imgs: &[RgbImage],
        aspect: ImageAspect,
        device: &Device,
    ) -> Result<Tensor> {
        let mut all = Vec::new();
        let mut size = None;
        for img in imgs {
            let (data, h, w) = self.preprocess_to_vec(img, aspect)?;
            if *size.get_or_insert((h, w)) != (h, w) {
                bail!("images preprocess to different sizes; set a crop size or an exact resize");
            }
            all.extend(data);
        }
        let (h, w) = size.context("no images to preprocess")?;
        Ok(Tensor::from_vec(all, (imgs.len(), 3, h, w), device)?)
    }

    /// The pipeline, returning channel-first f32 data and its `(height, width)`.
    pub fn preprocess_to_vec(
        &self,
        img: &RgbImage,
        aspect: ImageAspect,
    ) -> Result<(Vec<f32>, usize, usize)> {
        if img.width() == 0 || img.height() == 0 {
            bail!("cannot preprocess an empty image");
        }
        let padded;
        let mut img = img;
        if aspect == ImageAspect::Pad {
            padded = expand_to_square(img, self.pad_background());
            img = &padded;
        }
        let resized;
        if let Some(t) = self.resize {
            let (h, w) = resize_size(t, img.height() as usize, img.width() as usize);
            resized = resize_like_pil(img, w, h, self.resample);
            img = &resized;
        }
        let cropped;
        if let Some((ch, cw)) = self.center_crop {
            cropped = center_crop(img, ch, cw);
            img = &cropped;
        }
        let (w, h) = (img.width() as usize, img.height() as usize);
        let raw = img.as_raw();
        let mut out = vec![0f32; 3 * h * w];
        for c in 0..3 {
            let (mean, std) = match self.normalize {
                Some((m, s)) => (Some(m[c]), s[c]),
                None => (None, 1.0),
            };
            for i in 0..h * w {
                let byte = raw[i * 3 + c];
                // HF: uint8 → float64 · factor → float32, then (x − mean) / std in float32.
                let mut x = match self.rescale_factor {
                    Some(f) => (byte as f64 * f) as f32,
                    None => byte as f32,
                };
                if let Some(m) = mean {
                    x = (x - m) / std;
                }
                out[c * h * w + i] = x;
            }
        }
        Ok((out, h, w))
    }
}

/// HF's output size for a resize target (`get_resize_output_image_size`).
fn resize_size(t: ResizeTarget, height: usize, width: usize) -> (usize, usize) {
    match t {
        ResizeTarget::Exact { height, width } => (height, width),
        ResizeTarget::ShortestEdge(s) => {
            let (short, long) = if width <= height {
                (width, height)
            } else {
                (height, width)
            };
            let new_long = (s as f64 * long as f64 / short as f64) as usize;
            if width <= height {
                (new_long, s)
            } else {
                (s, new_long)
            }
        }
    }
}

/// HF's `center_crop`: top-left at ⌊(size − crop)/2⌋; an image smaller than the crop is first
/// placed on a black canvas (top/left padding rounded up).
fn center_crop(img: &RgbImage, ch: usize, cw: usize) -> RgbImage {
    let (h, w) = (img.height() as i64, img.width() as i64);
    let (ch, cw) = (ch as i64, cw as i64);
    let top = (h - ch).div_euclid(2);
    let left = (w - cw).div_euclid(2);
    if top >= 0 && left >= 0 {
        return image::imageops::crop_imm(img, left as u32, top as u32, cw as u32, ch as u32)
            .to_image();
    }
    let (nh, nw) = (h.max(ch), w.max(cw));
    let (tp, lp) = ((nh - h + 1) / 2, (nw - w + 1) / 2);
    let mut canvas = RgbImage::new(nw as u32, nh as u32);
    image::imageops::replace(&mut canvas, img, lp, tp);
    let (t, l) = ((top + tp).max(0), (left + lp).max(0));
    let (b, r) = ((top + tp + ch).min(nh), (left + lp + cw).min(nw));
    image::imageops::crop_imm(&canvas, l as u32, t as u32, (r - l) as u32, (b - t) as u32)
        .to_image()
}

fn parse_size(v: &Value, int_is_shortest_edge: bool) -> Result<ResizeTarget> {
    if let Some(n) = v.as_u64() {
        let n = n as usize;
        return Ok(if int_is_shortest_edge {
            ResizeTarget::ShortestEdge(n)
        } else {
            ResizeTarget::Exact {
                height: n,
                width: n,
            }
        });
    }
    let get = |k: &str| v.get(k).and_then(Value::as_u64).map(|n| n as usize);
    if get("longest_edge").is_some() {
        bail!("`longest_edge` sizes are not supported (only shortest_edge or height/width): {v}");
    }
    match (get("shortest_edge"), get("height"), get("width")) {
        (Some(s), None, None) => Ok(ResizeTarget::ShortestEdge(s)),
        (None, Some(height), Some(width)) => Ok(ResizeTarget::Exact { height, width }),
        _ => bail!("expected an integer, {{\"shortest_edge\": N}} or {{\"height\": H, \"width\": W}}, found {v}"),
    }
}

fn parse_triple(v: Option<&Value>, default: [f32; 3]) -> Result<[f32; 3]> {
    let Some(v) = v else { return Ok(default) };
    if let Some(x) = v.as_f64() {
        return Ok([x as f32; 3]);
    }
    let xs: Vec<f32> = v
        .as_array()
        .with_context(|| format!("expected a number or 3 numbers, found {v}"))?
        .iter()
        .map(|x| x.as_f64().map(|x| x as f32))
        .collect::<Option<_>>()
        .with_context(|| format!("expected numbers, found {v}"))?;
    match xs.as_slice() {
        [a, b, c] => Ok([*a, *b, *c]),
        _ => bail!(
            "expected 3 values (one per RGB channel), found {}",
            xs.len()
        ),
    }
}

/// Opens an image file as 8-bit RGB (grey is replicated, alpha dropped, as Pillow's
/// `convert("RGB")` does).
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let img = image::open(path).with_context(|| format!("cannot read image {}", path.display()))?;
    Ok(img.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bicubic_weights_sum_to_one_and_widen_when_downscaling() {
        let up = pass_coeffs(10, 20, Resample::Bicubic);
        let down = pass_coeffs(40, 10, Resample::Bicubic);
        for k in up.weights.iter().chain(&down.weights) {
            let s: i64 = k.iter().map(|&w| w as i64).sum();
            assert!((s - (1 << PRECISION_BITS)).abs() <= k.len() as i64, "{s}");
        }
        // 4x downscale: support 2·4 = 8 source pixels each side (antialiasing), not 2.
        assert!(down.weights[5].len() >= 16, "{}", down.weights[5].len());
        assert!(up.weights[5].len() <= 5);
    }

    #[test]
    fn resize_keeps_a_flat_image_flat() {
        let img = RgbImage::from_pixel(37, 23, Rgb([200, 10, 77]));
        for f in [
            Resample::Bicubic,
            Resample::Bilinear,
            Resample::Lanczos,
            Resample::Box,
            Resample::Hamming,
            Resample::Nearest,
        ] {
            let out = resize_like_pil(&img, 13, 50, f);
            assert!(out.pixels().all(|p| *p == Rgb([200, 10, 77])), "{f:?}");
        }
    }

    #[test]
    fn shortest_edge_and_crop_sizes_follow_hf() {
        let p = ImageProcessor::clip(336);
        assert_eq!(
            resize_size(ResizeTarget::ShortestEdge(336), 300, 451),
            (336, 505)
        );
        assert_eq!(p.output_size(300, 451), (336, 336));
        let s = ImageProcessor::siglip(384);
        assert_eq!(s.output_size(300, 451), (384, 384));
    }

    #[test]
    fn centre_crop_pads_small_images_like_hf() {
        let img = RgbImage::from_pixel(3, 2, Rgb([9, 9, 9]));
        let out = center_crop(&img, 4, 4);
        assert_eq!((out.width(), out.height()), (4, 4));
        // HF: top_pad = ceil(2/2) = 1, left_pad = ceil(1/2) = 1.
        assert_eq!(*out.get_pixel(0, 0), Rgb([0, 0, 0]));
        assert_eq!(*out.get_pixel(1, 1), Rgb([9, 9, 9]));
        assert_eq!(*out.get_pixel(3, 2), Rgb([9, 9, 9]));
        assert_eq!(*out.get_pixel(3, 3), Rgb([0, 0, 0]));
    }

    #[test]
    fn pad_mode_uses_llava_background() {
        assert_eq!(ImageProcessor::clip(224).pad_background(), [122, 116, 104]);
        assert_eq!(
            ImageProcessor::siglip(224).pad_background(),
            [127, 127, 127]
        );
        let img = RgbImage::from_pixel(4, 2, Rgb([1, 2, 3]));
        let sq = expand_to_square(&img, [7, 7, 7]);
        assert_eq!((sq.width(), sq.height()), (4, 4));
        assert_eq!(*sq.get_pixel(0, 0), Rgb([7, 7, 7]));
        assert_eq!(*sq.get_pixel(0, 1), Rgb([1, 2, 3]));
        assert_eq!(*sq.get_pixel(3, 3), Rgb([7, 7, 7]));
    }

    #[test]
    fn old_style_integer_sizes_and_bad_fields() {
        // openai/clip-vit-large-patch14-336's preprocessor_config.json uses bare integers.
        let p = ImageProcessor::from_hf_json(&json!({"crop_size": 336, "size": 336,
            "feature_extractor_type": "CLIPFeatureExtractor", "resample": 3}))
        .unwrap();
        assert_eq!(p, ImageProcessor::clip(336));
        let s =
            ImageProcessor::from_hf_json(&json!({"image_processor_type": "SiglipImageProcessor",
            "size": {"height": 384, "width": 384}}))
            .unwrap();
        assert_eq!(s, ImageProcessor::siglip(384));
        let err = ImageProcessor::from_hf_json(&json!({"resample": 9})).unwrap_err();
        assert!(format!("{err:#}").contains("resample"), "{err:#}");
        let err = ImageProcessor::from_hf_json(&json!({"image_mean": [0.5, 0.5]})).unwrap_err();
        assert!(format!("{err:#}").contains("image_mean"), "{err:#}");
    }
}
