//! Scenes written as text: the "scene language" the world's LM learns to read before any image.
//!
//! LLaVA's recipe assumes an LLM that already answers questions about things described in its
//! context; the projector only has to make visual tokens read like that description. A tiny LM
//! trained on captions alone cannot look anything up (research: Olsson et al. 2022; our own
//! runs, results/mini-paper.md), so the world also writes **text scenes**: the same question
//! families, asked about a scene that is spelled out in the user turn instead of shown.
//!
//! The description mirrors what a 3×3-patch tower gives the LM: **one token per grid cell, in
//! raster order** (top left … bottom right), nine in all, where the image's visual tokens would
//! stand. A cell's token binds the cell with its content (`top_left/red_star`, `center/empty`),
//! as a visual token binds a patch's position with what it shows; the tokenizer keeps each as
//! one token (see `foundation::tokenizer`). One token per object matters: with colour and shape
//! in separate words the lookup "what colour is the star?" needs two hops and does not appear
//! within a CPU budget, with both in one token it appears as a sudden phase change after a few
//! hundred steps (research/feasibility.md §(a)); a cell known only by its index in the block
//! leaves every question about position (and every object named by its position) to a slow
//! positional read-out, which a 600-step run never found (31 % held-out, 2026-12-03). Texture and
//! size are not written, so text scenes draw every object solid and large, and no text question
//! asks about either.

use super::config::{SynthConfig, TextBlock, TextQuestions};
use super::language::caption;
use super::llava::IMAGE_TOKEN;
use super::questions::{open, yes_no, Family};
use super::rng::item_rng;
use super::scene::{sample_scene, Layout, Scene, SceneSpec, SignChoice};
use super::world::{Cell, Color, Shape, Size, Texture};
use super::{LlavaRecord, Turn};
use rand::Rng;

/// Question families a text scene can answer: everything the cell tokens say (colour, shape,
/// cell) and what follows from it.
pub const TEXT_FAMILIES: [Family; 5] = [
    Family::Color,
    Family::Shape,
    Family::Position,
    Family::Count,
    Family::Existence,
];

/// What a grid cell without an object holds.
pub const EMPTY_CELL: &str = "empty";

/// The token of an empty cell in a [`TextBlock::Contents`] block (not a word of the world's
/// language, so the tokenizer can keep it whole without splitting any text).
pub const EMPTY_CONTENT: &str = "empty_cell";

/// The token of what a cell holds in a [`TextBlock::Contents`] block: `red_star`, or
/// [`EMPTY_CONTENT`]. The same token wherever the object stands: its cell is its place.
pub fn content_token(object: Option<(Color, Shape)>) -> String {
    match object {
        Some((c, s)) => format!("{}_{}", c.name(), s.name()),
        None => EMPTY_CONTENT.to_string(),
    }
}

/// The token of `cell` holding `object` (colour, shape), or nothing: `top_left/red_star`,
/// `center/empty`. Each token binds the cell with its content, as a patch token binds its
/// position embedding with what the patch shows, so every question is one lookup: "what colour
/// is the star?" matches the shape and reads the colour, "where is the star?" reads the cell,
/// "what colour is the object in the top left corner?" matches the cell.
pub fn cell_token(cell: Cell, object: Option<(Color, Shape)>) -> String {
    let content = match object {
        Some((c, s)) => format!("{}_{}", c.name(), s.name()),
        None => EMPTY_CELL.to_string(),
    };
    format!("{}/{content}", cell.name().replace(' ', "_"))
}

/// A block token's parts, for initialising its embedding from shared factors: the cell (raster
/// index; `None` for a content token, which no cell owns), the colour and shape indices (`None`
/// for an empty cell).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellToken {
    pub text: String,
    pub cell: Option<usize>,
    pub color: Option<usize>,
    pub shape: Option<usize>,
}

/// Every cell token: 9 cells × (48 colour–shape pairs + empty).
pub fn cell_tokens() -> Vec<CellToken> {
    let mut all = Vec::new();
    for (k, cell) in Cell::all().into_iter().enumerate() {
        for (ci, &c) in Color::ALL.iter().enumerate() {
            for (si, &s) in Shape::ALL.iter().enumerate() {
                all.push(CellToken {
                    text: cell_token(cell, Some((c, s))),
                    cell: Some(k),
                    color: Some(ci),
                    shape: Some(si),
                });
            }
        }
        all.push(CellToken {
            text: cell_token(cell, None),
            cell: Some(k),
            color: None,
            shape: None,
        });
    }
    all
}

/// Every content token: 48 colour–shape pairs + [`EMPTY_CONTENT`].
pub fn content_tokens() -> Vec<CellToken> {
    let mut all = Vec::new();
    for (ci, &c) in Color::ALL.iter().enumerate() {
        for (si, &s) in Shape::ALL.iter().enumerate() {
            all.push(CellToken {
                text: content_token(Some((c, s))),
                cell: None,
                color: Some(ci),
                shape: Some(si),
            });
        }
    }
    all.push(CellToken {
        text: content_token(None),
        cell: None,
        color: None,
        shape: None,
    });
    all
}

/// The tokens a block of `form` is written in.
pub fn block_tokens(form: TextBlock) -> Vec<CellToken> {
    match form {
        TextBlock::Cells => cell_tokens(),
        TextBlock::Contents => content_tokens(),
    }
}

/// The nine tokens of a grid scene in `form`, space-separated in raster order.
pub fn scene_block(scene: &Scene, form: TextBlock) -> String {
    Cell::all()
        .into_iter()
        .map(|cell| {
            let object = scene
                .objects
                .iter()
                .find(|o| o.cell == cell)
                .map(|o| (o.color, o.shape));
            match form {
                TextBlock::Cells => cell_token(cell, object),
                TextBlock::Contents => content_token(object),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A grid scene without a sign whose objects are all solid and large (what the block can say).
pub fn text_scene(cfg: &SynthConfig, rng: &mut impl Rng) -> Scene {
    let spec = SceneSpec {
        min_objects: 1,
        max_objects: cfg.max_objects,
        sign: SignChoice::No,
        layout: Layout::Grid,
    };
    let mut scene = sample_scene(rng, &spec);
    for o in &mut scene.objects {
        o.texture = Texture::Solid;
        o.size = Size::Large;
    }
    scene
}

/// Families the held-out text questions are drawn from, uniformly (one short-answer question
/// each): what the LM must look up (colour, shape, cell), count, and check (existence).
pub const HELDOUT_FAMILIES: [Family; 5] = [
    Family::Color,
    Family::Shape,
    Family::Position,
    Family::Count,
    Family::Existence,
];

fn record(id: String, pairs: Vec<(String, String)>, block: &str) -> LlavaRecord {
    let mut conversations = Vec::with_capacity(pairs.len() * 2);
    for (i, (q, a)) in pairs.into_iter().enumerate() {
        let value = if i == 0 { format!("{block}\n{q}") } else { q };
        conversations.push(Turn {
            from: "human".into(),
            value,
        });
        conversations.push(Turn {
            from: "gpt".into(),
            value: a,
        });
    }
    LlavaRecord {
        id,
        image: None,
        conversations,
    }
}

/// Training text record `index`: a scene block and `text_turns` short-answer questions about
/// it, of families drawn uniformly from [`TEXT_FAMILIES`], as LLaVA JSON without an image. The first human turn is `block + "\n" + question`, the shape of an
/// image record's `"<image>\n" + question`.
pub fn text_record(cfg: &SynthConfig, index: usize) -> LlavaRecord {
    let mut rng = item_rng(cfg.seed, "text-train", index as u64);
    let scene = text_scene(cfg, &mut rng);
    // Always `text_turns` questions (as far as the scene allows): equal lengths pad little in a
    // batch, and every conversation amortises its system prompt and block over as many answers.
    let turns = cfg.text_turns;
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(turns);
    let mut tries = 0;
    while pairs.len() < turns && tries < 4 * turns + 10 {
        tries += 1;
        let family = TEXT_FAMILIES[rng.random_range(0..TEXT_FAMILIES.len())];
        if let Some(pair) = text_question(&scene, family, cfg.text_questions, &mut rng) {
            if !pairs.iter().any(|(q, _)| *q == pair.0) {
                pairs.push(pair);
            }
        }
    }
    if pairs.is_empty() {
        // One-lookup questions can miss a scene whose objects all share a colour and a shape
        // with another; every scene has objects to count.
        let count = text_question(&scene, Family::Count, cfg.text_questions, &mut rng);
        pairs.extend(count);
    }
    record(
        format!("tx{index:06}"),
        pairs,
        &scene_block(&scene, cfg.text_block),
    )
}

/// A question of `family` from the set `questions` names, with its short answer.
fn text_question(
    scene: &Scene,
    family: Family,
    questions: TextQuestions,
    rng: &mut impl Rng,
) -> Option<(String, String)> {
    match questions {
        TextQuestions::All => short_question(scene, family, rng),
        TextQuestions::OneLookup => one_lookup_question(scene, family, rng),
    }
}

/// One lookup of `family` (see [`TextQuestions::OneLookup`]) in the world's own phrasings, or
/// `None` when the scene has no object the family can single out by one attribute.
fn one_lookup_question(
    scene: &Scene,
    family: Family,
    rng: &mut impl Rng,
) -> Option<(String, String)> {
    let objects = &scene.objects;
    let unique_shape: Vec<_> = objects
        .iter()
        .filter(|o| scene.count_shape(o.shape) == 1)
        .collect();
    let unique_color: Vec<_> = objects
        .iter()
        .filter(|o| scene.count_color(o.color) == 1)
        .collect();
    let choose = |rng: &mut dyn rand::RngCore, pair: [String; 2]| {
        let [a, b] = pair;
        if rng.random_bool(0.5) {
            a
        } else {
            b
        }
    };
    match family {
        Family::Color | Family::Position if !unique_shape.is_empty() => {
            let o = unique_shape[rng.random_range(0..unique_shape.len())];
            let s = o.shape.name();
            Some(if family == Family::Color {
                let q = [
                    format!("What color is the {s}?"),
                    format!("What is the color of the {s}?"),
                ];
                (choose(rng, q), o.color.name().to_string())
            } else {
                let q = [
                    format!("Where is the {s} in the image?"),
                    format!("In which part of the image is the {s}?"),
                ];
                (choose(rng, q), o.cell.name().to_string())
            })
        }
        Family::Shape if !unique_color.is_empty() => {
            let o = unique_color[rng.random_range(0..unique_color.len())];
            let c = o.color.name();
            let q = [
                format!("What shape is the {c} object?"),
                format!("Which shape is the {c} object?"),
            ];
            Some((choose(rng, q), o.shape.name().to_string()))
        }
        Family::Count if !objects.is_empty() => Some((
            "How many shapes are there in the image?".to_string(),
            objects.len().to_string(),
        )),
        Family::Existence => short_question(scene, family, rng),
        _ => None,
    }
}

/// One question of `family` about `scene` with its short answer, as (human turn, answer); yes/no
/// for existence. The question stands alone, without GQA's post-prompt ("Answer the question
/// using a single word or phrase."): eleven constant tokens between the question and its answer
/// that the lookup has to reach across. Without them the held-out score rose faster per step
/// (56 % against 48 % at step 400) on 35 % cheaper steps (2026-12-03). The finetuning set
/// teaches the benchmarks' answer-format prompts; text scenes teach the lookup itself.
fn short_question(scene: &Scene, family: Family, rng: &mut impl Rng) -> Option<(String, String)> {
    if family == Family::Existence {
        let truth = rng.random_bool(0.5);
        return yes_no(scene, family, truth, rng).map(|q| {
            let a = if q.answer { "yes" } else { "no" };
            (q.question, a.to_string())
        });
    }
    open(scene, family, rng).map(|q| (q.question, q.answer))
}

/// The alignment caption of a scene: its block, then the natural caption on a new line —
/// `"top_left/red_star top/empty … bottom_right/empty\nA large red star in the top left
/// corner."` — for grid scenes without a sign (whose every cell has a token); the natural caption
/// alone for others.
///
/// Why the block: stage-1 alignment trains the projector through a frozen LM on the caption
/// loss, and a natural caption gives no usable gradient at first (the projector has to guess
/// which visual token a word is about; every run so far stayed on the text-only plateau,
/// results/mini-paper.md). A block copied from the nine visual tokens is the opposite case: the
/// i-th caption token is the i-th visual token's cell, so an LM that learned on text scenes to
/// copy a block (a head that attends a fixed distance back) tells each visual token, from the
/// first step, which cell token it has to read as. It is also the dense, fully bound caption
/// that lets a contrastive tower learn binding (research: Gurung et al. 2025).
pub fn alignment_caption(scene: &Scene, form: TextBlock, rng: &mut impl Rng) -> String {
    let text = caption(scene, rng);
    if scene.layout == Layout::Grid && scene.sign.is_none() {
        format!("{}\n{text}", scene_block(scene, form))
    } else {
        text
    }
}

/// Caption text record `index`: a scene block and the caption the world's alignment data gives
/// its image ([`alignment_caption`]), as one human turn (the block) and one answer. Trained in the
/// `plain` template's shape, `block + caption + "\n"`, the LM learns the very task stage-1
/// alignment then asks of visual tokens in place of the block.
pub fn caption_record(cfg: &SynthConfig, index: usize) -> LlavaRecord {
    let mut rng = item_rng(cfg.seed, "text-caption", index as u64);
    let scene = text_scene(cfg, &mut rng);
    let text = alignment_caption(&scene, cfg.text_block, &mut rng);
    LlavaRecord {
        id: format!("tc{index:06}"),
        image: None,
        conversations: vec![
            Turn {
                from: "human".into(),
                value: scene_block(&scene, cfg.text_block),
            },
            Turn {
                from: "gpt".into(),
                value: text,
            },
        ],
    }
}

/// Held-out text record `index` (its own random stream, so never a training scene's twin by
/// construction of the seed) with one short-answer question, and that question's family.
pub fn heldout_record(cfg: &SynthConfig, index: usize) -> (LlavaRecord, Family) {
    let mut rng = item_rng(cfg.seed, "text-heldout", index as u64);
    let family = HELDOUT_FAMILIES[rng.random_range(0..HELDOUT_FAMILIES.len())];
    loop {
        let scene = text_scene(cfg, &mut rng);
        let pair = text_question(&scene, family, cfg.text_questions, &mut rng);
        // Some scenes cannot carry some families (a relation needs two objects): draw another
        // scene, keeping the family, so the families stay uniform.
        if let Some(pair) = pair {
            let id = format!("th{index:06}");
            let block = scene_block(&scene, cfg.text_block);
            return (record(id, vec![pair], &block), family);
        }
    }
}

/// Replaces the image placeholder of an image record's first turn by the scene block: what a
/// perfectly aligned projector would hand the LM.
pub fn as_text(block: &str, first_turn: &str) -> String {
    match first_turn.strip_prefix(IMAGE_TOKEN) {
        Some(rest) => format!("{block}{rest}"),
        None => first_turn.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_has_one_token_per_cell_in_raster_order() {
        let cfg = SynthConfig::default();
        for i in 0..50 {
            let mut rng = item_rng(3, "block-test", i);
            let scene = text_scene(&cfg, &mut rng);
            let block = scene_block(&scene, TextBlock::Cells);
            let words: Vec<&str> = block.split(' ').collect();
            assert_eq!(words.len(), 9, "{block}");
            for o in &scene.objects {
                let at = o.cell.row as usize * 3 + o.cell.col as usize;
                assert_eq!(words[at], cell_token(o.cell, Some((o.color, o.shape))));
            }
            let empty = words.iter().filter(|w| w.ends_with(EMPTY_CELL)).count();
            assert_eq!(empty, 9 - scene.objects.len());
        }
    }

    #[test]
    fn a_contents_block_has_what_each_cell_holds_in_raster_order() {
        let cfg = SynthConfig {
            text_block: TextBlock::Contents,
            ..SynthConfig::default()
        };
        for i in 0..50 {
            let r = text_record(&cfg, i);
            let block = r.conversations[0].value.split('\n').next().unwrap();
            let words: Vec<&str> = block.split(' ').collect();
            assert_eq!(words.len(), 9, "{block}");
            let tokens: Vec<String> = content_tokens().into_iter().map(|t| t.text).collect();
            assert!(
                words.iter().all(|w| tokens.contains(&w.to_string())),
                "{block}"
            );
            assert!(!block.contains('/'), "no cell in a content token: {block}");
        }
    }

    /// One-lookup questions name their referent by one attribute that singles it out, and their
    /// answers are what the block says of it.
    #[test]
    fn one_lookup_questions_single_out_their_referent_by_one_attribute() {
        let cfg = SynthConfig {
            text_questions: TextQuestions::OneLookup,
            text_turns: 1,
            ..SynthConfig::default()
        };
        let mut families = std::collections::HashMap::new();
        for i in 0..400 {
            let mut rng = item_rng(cfg.seed, "text-train", i);
            let scene = text_scene(&cfg, &mut rng);
            let family = TEXT_FAMILIES[i as usize % TEXT_FAMILIES.len()];
            let Some((q, a)) = one_lookup_question(&scene, family, &mut rng) else {
                continue;
            };
            *families.entry(family).or_insert(0) += 1;
            let named = |o: &crate::synth::scene::Object| match family {
                Family::Shape => q.contains(&format!(" {} ", o.color.name())),
                Family::Color | Family::Position => q.contains(&format!(" {}", o.shape.name())),
                _ => false,
            };
            match family {
                Family::Color | Family::Shape | Family::Position => {
                    let matching: Vec<_> = scene.objects.iter().filter(|o| named(o)).collect();
                    assert_eq!(
                        matching.len(),
                        1,
                        "{q} in {}",
                        scene_block(&scene, cfg.text_block)
                    );
                    let o = matching[0];
                    let truth = match family {
                        Family::Color => o.color.name(),
                        Family::Shape => o.shape.name(),
                        _ => o.cell.name(),
                    };
                    assert_eq!(a, truth, "{q}");
                }
                Family::Count => assert_eq!(a, scene.objects.len().to_string(), "{q}"),
                _ => assert!(a == "yes" || a == "no", "{q}: {a}"),
            }
        }
        assert_eq!(families.len(), TEXT_FAMILIES.len(), "{families:?}");
    }

    #[test]
    fn text_records_ask_only_what_the_block_says() {
        let cfg = SynthConfig::default();
        let mut families = std::collections::HashMap::new();
        for i in 0..300 {
            let r = text_record(&cfg, i);
            let (held, family) = heldout_record(&cfg, i);
            assert!(r.image.is_none() && held.image.is_none());
            assert_eq!(held.conversations.len(), 2);
            *families.entry(family).or_insert(0) += 1;
            for rec in [&r, &held] {
                let text: String = rec.conversations.iter().map(|t| t.value.clone()).collect();
                for word in ["striped", "dotted", "checkered", "small", "large", "sign"] {
                    assert!(!text.contains(word), "{} mentions {word}: {text}", rec.id);
                }
            }
        }
        // Uniform over the held-out families: each near 300 / 5.
        for f in HELDOUT_FAMILIES {
            let n = families.get(&f).copied().unwrap_or(0);
            assert!((30..=75).contains(&n), "{}: {n} of 300", f.name());
        }
    }
}
