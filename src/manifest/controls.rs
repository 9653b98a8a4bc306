//! `[eval] controls = ["blank", "shuffle", "none"]`: the grounding controls every cell's eval is
//! repeated under (what each does: [`crate::eval::control`]).
//!
//! Controls are not a generation setting of [`super::EvalSettings`]: they add tasks beside each
//! with-image eval instead of changing it, so they never enter that eval's key, and they are not
//! a grid axis (a cell is one model on one benchmark; its controls belong to it).

use super::diag::{suggest, Diagnostics};
use super::read;
use super::source::Table;
use crate::eval::Control;

/// The key of `[eval]` this module reads (the rest of the section is [`super::EvalSettings`]).
pub const KEY: &str = "controls";

/// The controls `[eval]` lists, in the order written; unknown names and repeats are errors at
/// the value.
pub fn parse(eval: &Table, d: &mut Diagnostics) -> Vec<Control> {
    let Some(items) = read::strings(eval, KEY, "[eval]", d) else {
        return Vec::new();
    };
    let names = Control::names();
    let mut out = Vec::new();
    for (name, loc) in items {
        match Control::parse(&name) {
            Some(c) if out.contains(&c) => d.error(
                &loc,
                format!("[eval] controls: `{name}` is listed twice"),
                Some("list each control once".into()),
            ),
            Some(c) => out.push(c),
            None => d.error(
                &loc,
                format!("[eval] controls: unknown control `{name}`"),
                Some(format!(
                    "{} (blank: a uniform image of the same size; shuffle: another sample's \
                     image; none: no image and no `<image>` in the prompt)",
                    suggest(&name, &names)
                )),
            ),
        }
    }
    out
}
