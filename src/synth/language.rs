//! Words about scenes: object descriptions, referring expressions that pick out exactly one object,
//! and captions.

use super::rng::pick;
use super::scene::{Layout, Object, Scene, TextKind};
use super::world::{article, number_word, Texture};
use rand::Rng;

/// An attribute a referring expression may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attr {
    Shape,
    Color,
    Size,
    Texture,
    Position,
}

/// Attribute combinations tried in order, simplest first ("the star", "the red star", ...).
const REFERENCE_ORDER: &[&[Attr]] = &[
    &[Attr::Shape],
    &[Attr::Color, Attr::Shape],
    &[Attr::Size, Attr::Shape],
    &[Attr::Texture, Attr::Shape],
    &[Attr::Color],
    &[Attr::Size],
    &[Attr::Texture],
    &[Attr::Size, Attr::Color, Attr::Shape],
    &[Attr::Texture, Attr::Color, Attr::Shape],
    &[Attr::Size, Attr::Color],
    &[Attr::Texture, Attr::Color],
    &[Attr::Size, Attr::Texture, Attr::Color, Attr::Shape],
    &[Attr::Position],
];

fn same(a: &Object, b: &Object, attr: Attr) -> bool {
    match attr {
        Attr::Shape => a.shape == b.shape,
        Attr::Color => a.color == b.color,
        Attr::Size => a.size == b.size,
        Attr::Texture => a.texture == b.texture,
        Attr::Position => a.cell == b.cell,
    }
}

/// The noun phrase (without article) for `object` using exactly `attrs`.
fn phrase(object: &Object, attrs: &[Attr]) -> String {
    let mut words: Vec<&str> = Vec::new();
    if attrs.contains(&Attr::Size) {
        words.push(object.size.name());
    }
    if attrs.contains(&Attr::Texture) {
        words.push(object.texture.adjective());
    }
    if attrs.contains(&Attr::Color) {
        words.push(object.color.name());
    }
    words.push(if attrs.contains(&Attr::Shape) {
        object.shape.name()
    } else {
        "object"
    });
    let mut s = words.join(" ");
    if attrs.contains(&Attr::Position) {
        s.push(' ');
        s.push_str(object.cell.phrase());
    }
    s
}

/// A noun phrase (without article) naming `scene.objects[index]` and no other object, not using
/// any attribute in `avoid` (so a colour question never names the colour it asks about).
pub fn refer(scene: &Scene, index: usize, avoid: &[Attr]) -> Option<String> {
    let target = &scene.objects[index];
    REFERENCE_ORDER
        .iter()
        .filter(|attrs| !attrs.iter().any(|a| avoid.contains(a)))
        .filter(|attrs| scene.layout == Layout::Grid || !attrs.contains(&Attr::Position))
        // "the yellow object" could also mean a yellow sign: without a shape noun, only
        // position-based references stay unambiguous in a scene with a sign.
        .filter(|attrs| {
            scene.sign.is_none() || attrs.contains(&Attr::Shape) || attrs.contains(&Attr::Position)
        })
        .find(|attrs| {
            scene
                .objects
                .iter()
                .filter(|o| attrs.iter().all(|&a| same(o, target, a)))
                .count()
                == 1
        })
        .map(|attrs| phrase(target, attrs))
}

/// "a large striped red star" (solid is the default and goes unsaid).
pub fn describe(object: &Object) -> String {
    let mut words = vec![object.size.name()];
    if object.texture != Texture::Solid {
        words.push(object.texture.adjective());
    }
    words.push(object.color.name());
    words.push(object.shape.name());
    let body = words.join(" ");
    format!("{} {body}", article(&body))
}

/// Joins phrases as "x", "x and y", "x, y and z".
pub fn join_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Upper-cases the first letter.
pub fn sentence_case(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Python's `str.capitalize()`: first character upper-cased, **the rest lower-cased** (TextVQA's
/// prompt does this to every question).
pub fn python_capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c
            .to_uppercase()
            .chain(chars.flat_map(|c| c.to_lowercase()))
            .collect(),
        None => String::new(),
    }
}

/// What a sign shows, in words ("a white sign that says CAT").
pub fn describe_sign(scene: &Scene) -> Option<String> {
    let sign = scene.sign.as_ref()?;
    let what = match sign.kind {
        TextKind::Word | TextKind::Letters => "says",
        TextKind::Digits => "shows the number",
        TextKind::Sum => "shows the sum",
    };
    let color = sign.color.name();
    Some(format!(
        "{} {color} sign that {what} {}",
        article(color),
        sign.text
    ))
}

/// A short LLaVA-558k-style caption listing everything in the scene.
pub fn caption<R: Rng>(scene: &Scene, rng: &mut R) -> String {
    if scene.layout == Layout::Occlusion {
        let back = describe(&scene.objects[0]);
        let front = describe(&scene.objects[1]);
        let templates = [
            format!("{front} in front of {back}"),
            format!("{front} partly hiding {back}"),
            format!("{back} behind {front}"),
        ];
        let chosen: &String = pick(rng, &templates);
        return sentence_case(chosen) + ".";
    }
    let mut objects: Vec<&Object> = scene.objects.iter().collect();
    objects.sort_by_key(|o| (o.cell.row, o.cell.col));
    let mut parts: Vec<String> = objects
        .iter()
        .map(|o| format!("{} {}", describe(o), o.cell.phrase()))
        .collect();
    if let Some(sign) = describe_sign(scene) {
        let row = scene.sign.as_ref().map(|s| s.row).unwrap_or(1);
        let at = ["at the top", "in the middle", "at the bottom"][row as usize];
        parts.push(format!("{sign} {at}"));
    }
    let list = join_list(&parts);
    let n = scene.objects.len();
    let text = match rng.random_range(0..3) {
        0 => list,
        1 => format!(
            "{} {} on a gray background: {list}",
            number_word(n),
            if n == 1 { "shape" } else { "shapes" }
        ),
        _ => format!("a picture of {list}"),
    };
    sentence_case(&text) + "."
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::scene::Background;
    use crate::synth::world::{Cell, Color, Shape, Size};

    fn obj(shape: Shape, color: Color, size: Size, row: u8, col: u8) -> Object {
        Object {
            shape,
            color,
            texture: Texture::Solid,
            size,
            cell: Cell { row, col },
            cx: (col as f32 + 0.5) / 3.0,
            cy: (row as f32 + 0.5) / 3.0,
            r: 0.1,
        }
    }

    fn scene(objects: Vec<Object>) -> Scene {
        Scene {
            objects,
            sign: None,
            layout: Layout::Grid,
            background: Background {
                base: [80; 3],
                noise_seed: 0,
            },
        }
    }

    #[test]
    fn references_are_minimal_and_unique() {
        let s = scene(vec![
            obj(Shape::Star, Color::Red, Size::Small, 0, 0),
            obj(Shape::Star, Color::Blue, Size::Small, 0, 1),
            obj(Shape::Circle, Color::Red, Size::Large, 1, 1),
        ]);
        assert_eq!(refer(&s, 2, &[]).unwrap(), "circle");
        assert_eq!(refer(&s, 0, &[]).unwrap(), "red star");
        // Asked about colour: may not say "red"; the size is shared, so only position is left.
        assert_eq!(
            refer(&s, 0, &[Attr::Color]).unwrap(),
            "object in the top left corner"
        );
        assert_eq!(refer(&s, 2, &[Attr::Shape]).unwrap(), "large object");
    }

    #[test]
    fn a_sign_blocks_references_without_a_shape_noun() {
        let mut s = scene(vec![
            obj(Shape::Star, Color::Yellow, Size::Small, 0, 0),
            obj(Shape::Circle, Color::Red, Size::Large, 2, 2),
        ]);
        assert_eq!(refer(&s, 0, &[Attr::Shape]).unwrap(), "yellow object");
        s.sign = Some(crate::synth::scene::Sign {
            text: "CAT".into(),
            kind: TextKind::Word,
            color: Color::Yellow,
            row: 1,
            cx: 0.5,
        });
        assert_eq!(
            refer(&s, 0, &[Attr::Shape]).unwrap(),
            "object in the top left corner"
        );
    }

    #[test]
    fn python_capitalize_lowercases_the_rest() {
        assert_eq!(
            python_capitalize("what is the NASA logo?"),
            "What is the nasa logo?"
        );
    }

    #[test]
    fn captions_name_every_object() {
        let s = scene(vec![
            obj(Shape::Star, Color::Red, Size::Small, 0, 0),
            obj(Shape::Cross, Color::Blue, Size::Large, 2, 2),
        ]);
        let mut rng = crate::synth::rng::item_rng(0, "t", 0);
        let c = caption(&s, &mut rng);
        assert!(c.contains("small red star in the top left corner"), "{c}");
        assert!(
            c.contains("a large blue cross in the bottom right corner"),
            "{c}"
        );
        assert!(c.ends_with('.'));
    }
}
