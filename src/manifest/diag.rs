//! Diagnostics: errors and warnings that name `file:line:column`, say what is wrong and how to
//! fix it. Loading collects as many as it cheaply can before giving up.

use super::source::{Loc, Sources};

/// One message about the manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Diag {
    /// Where the offending value was written (None: about the manifest as a whole).
    pub loc: Option<Loc>,
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

/// Errors and warnings collected while loading and planning.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    pub errors: Vec<Diag>,
    pub warnings: Vec<Diag>,
}

impl Diagnostics {
    pub fn error(&mut self, loc: &Loc, message: impl Into<String>, help: Option<String>) {
        let d = Diag {
            loc: Some(loc.clone()),
            message: message.into(),
            help,
        };
        // The same mistake reached through several cells is reported once.
        if !self.errors.contains(&d) {
            self.errors.push(d);
        }
    }

    pub fn warning(&mut self, loc: &Loc, message: impl Into<String>, help: Option<String>) {
        let d = Diag {
            loc: Some(loc.clone()),
            message: message.into(),
            help,
        };
        if !self.warnings.contains(&d) {
            self.warnings.push(d);
        }
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Renders every error, compiler style: `path:line:col: error: message` then `  help: …`.
    pub fn render_errors(&self, sources: &Sources) -> String {
        render(&self.errors, "error", sources)
    }

    /// Renders every warning the same way.
    pub fn render_warnings(&self, sources: &Sources) -> Vec<String> {
        self.warnings
            .iter()
            .map(|d| render(std::slice::from_ref(d), "warning", sources))
            .collect()
    }
}

fn render(diags: &[Diag], level: &str, sources: &Sources) -> String {
    // In file order: the order a user fixes them in.
    let mut diags: Vec<&Diag> = diags.iter().collect();
    diags.sort_by_key(|d| d.loc.as_ref().map(|l| (l.file, l.start)));
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // Errors reach the user as `error: <this>` (the CLI adds the level), warnings as is.
        let prefix = if level == "warning" { "warning: " } else { "" };
        match &d.loc {
            Some(loc) => out.push_str(&format!("{prefix}{}: {}", sources.position(loc), d.message)),
            None => out.push_str(&format!("{prefix}{}", d.message)),
        }
        if let Some(help) = &d.help {
            out.push_str(&format!("\n  help: {help}"));
        }
    }
    if diags.len() > 1 && level == "error" {
        out.push_str(&format!("\n{} errors", diags.len()));
    }
    out
}

/// A hint for a value of the wrong type: numbers and booleans written as strings.
pub fn unquote_hint(value: &serde_json::Value) -> Option<String> {
    let s = value.as_str()?;
    (s.parse::<f64>().is_ok() || s == "true" || s == "false")
        .then(|| format!("write it without quotes: {s}"))
}

/// The closest candidate to a misspelt word, if one is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let d = strsim::levenshtein(&lower, &c.to_lowercase());
            (d, c)
        })
        .filter(|(d, c)| *d <= (c.chars().count().max(word.chars().count()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `did you mean `x`?` plus the list of what is accepted.
pub fn suggest(word: &str, candidates: &[&str]) -> String {
    let list = if candidates.is_empty() {
        "none are defined".to_string()
    } else {
        format!(
            "expected one of {}",
            candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if let Some(c) = closest(word, candidates.iter().copied()) {
        return format!("did you mean `{c}`? ({list})");
    }
    // A truncated name (`warmup` for `warmup_steps`/`warmup_ratio`) is as likely as a typo.
    let lower = word.to_lowercase();
    let starts: Vec<String> = candidates
        .iter()
        .filter(|c| lower.len() >= 3 && c.to_lowercase().starts_with(&lower))
        .map(|c| format!("`{c}`"))
        .collect();
    if starts.is_empty() {
        list
    } else {
        format!("did you mean {}? ({list})", starts.join(" or "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_a_suggestion_and_nonsense_does_not() {
        assert_eq!(closest("E-D", ["E_D", "E_M", "I_D"]), Some("E_D"));
        assert_eq!(
            closest("finetun", ["pretrain", "finetune"]),
            Some("finetune")
        );
        assert_eq!(closest("zzzzzzzz", ["E_D", "E_M"]), None);
        assert!(suggest("lr_", &["lr", "weight_decay"]).starts_with("did you mean `lr`?"));
        assert!(suggest("warmup", &["lr", "warmup_steps", "warmup_ratio"])
            .starts_with("did you mean `warmup_steps` or `warmup_ratio`?"));
    }
}
