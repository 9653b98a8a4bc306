//! Contact sheets: a grid of images, upscaled with nearest-neighbour so single pixels stay
//! visible, for looking at the world by eye.

use image::{imageops, Rgb, RgbImage};

/// Tiles `images` into rows of `cols`, each upscaled `zoom` times, with a 2-pixel gutter.
pub fn contact_sheet(images: &[RgbImage], cols: usize, zoom: u32) -> RgbImage {
    let cols = cols.max(1);
    let tile = images
        .iter()
        .map(|i| i.width().max(i.height()))
        .max()
        .unwrap_or(1)
        * zoom;
    let rows = images.len().div_ceil(cols).max(1);
    let gutter = 2;
    let w = cols as u32 * (tile + gutter) + gutter;
    let h = rows as u32 * (tile + gutter) + gutter;
    let mut sheet = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    for (i, img) in images.iter().enumerate() {
        let big = imageops::resize(
            img,
            img.width() * zoom,
            img.height() * zoom,
            imageops::FilterType::Nearest,
        );
        let x = gutter + (i % cols) as u32 * (tile + gutter);
        let y = gutter + (i / cols) as u32 * (tile + gutter);
        imageops::replace(&mut sheet, &big, x as i64, y as i64);
    }
    sheet
}
