//! Small helpers that reproduce Python string semantics the lmms-eval scorers rely on
//! (`str.strip(c)`, `str.split()`, `float()`, `string.punctuation`). Scorers must agree with
//! Python byte for byte, so these live in one place with their own tests.

/// Python's `string.punctuation`: the 32 ASCII punctuation characters.
pub const ASCII_PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Python `str.strip()` (Unicode whitespace on both ends).
pub fn py_strip(s: &str) -> &str {
    s.trim()
}

/// Python `s.strip(c)` for a single character `c`.
pub fn py_strip_char(s: &str, c: char) -> &str {
    s.trim_matches(c)
}

/// Sequential `s.strip(c1).strip(c2)…`, the idiom MMMU and `extract_mcq_answer` use. Not the same
/// as stripping the set of characters: `".,x,."` stripped by `,` then `.` leaves `",x,"`.
pub fn py_strip_each<'a>(mut s: &'a str, chars: &[char]) -> &'a str {
    for &c in chars {
        s = py_strip_char(s, c);
    }
    s
}

/// Python `str.lower()`.
pub fn py_lower(s: &str) -> String {
    s.to_lowercase()
}

/// Python `str.split()` without arguments: split on runs of whitespace, drop empty pieces.
pub fn py_split(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// Python `len(s)` (code points).
pub fn py_len(s: &str) -> usize {
    s.chars().count()
}

/// Python `float(s)`: surrounding whitespace allowed, `_` between digits allowed, `inf`,
/// `infinity` and `nan` in any case with an optional sign, but no thousands commas.
pub fn py_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    let lower = unsigned.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        let v = if lower == "nan" {
            f64::NAN
        } else {
            f64::INFINITY
        };
        return Some(if t.starts_with('-') { -v } else { v });
    }
    // Only ASCII digits, sign, '.', 'e', '_' may appear; Rust's parser accepts the rest of the
    // grammar the same way Python does once valid underscores are removed.
    let chars: Vec<char> = t.chars().collect();
    let mut cleaned = String::with_capacity(t.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            let prev_digit = i > 0 && chars[i - 1].is_ascii_digit();
            let next_digit = chars.get(i + 1).is_some_and(|c| c.is_ascii_digit());
            if !(prev_digit && next_digit) {
                return None;
            }
            continue;
        }
        if !(c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E')) {
            return None;
        }
        cleaned.push(c);
    }
    cleaned.parse::<f64>().ok()
}

/// Python `round(x, 2)` for the values MMMU compares (half-way cases follow Rust's rounding,
/// which only differs from Python on exact binary ties that do not occur in practice).
pub fn py_round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Python's `\w` (Unicode word character) for the regex boundaries we emulate by hand.
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_follows_python() {
        assert_eq!(py_float(" 12.5 "), Some(12.5));
        assert_eq!(py_float("1_000"), Some(1000.0));
        assert_eq!(py_float("1e3"), Some(1000.0));
        assert_eq!(py_float("1,000"), None);
        assert_eq!(py_float("_1"), None);
        assert_eq!(py_float("abc"), None);
        assert_eq!(py_float(""), None);
        assert!(py_float("-Infinity").unwrap().is_infinite());
        assert!(py_float("nan").unwrap().is_nan());
        assert_eq!(py_float("5."), Some(5.0));
        assert_eq!(py_float(".5"), Some(0.5));
    }

    #[test]
    fn sequential_strip_differs_from_set_strip() {
        assert_eq!(py_strip_each(".,x,.", &[',', '.']), ",x,");
        assert_eq!(py_strip_each("C.", &[',', '.']), "C");
    }
}
