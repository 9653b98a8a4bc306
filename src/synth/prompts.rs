//! Prompt text exactly as lmms-eval's `doc_to_text` renders it for the benchmarks we mirror
//! (research/eval.md §3). The finetuning set uses the same formats, so a model learns to answer in
//! the form it is scored in.

/// GQA, POPE, MME, TextVQA post-prompt.
pub const SHORT_ANSWER: &str = "\nAnswer the question using a single word or phrase.";
/// Multiple-choice post-prompt (SEED, ScienceQA, AI2D, MMBench after its blank line).
pub const LETTER_ANSWER: &str = "Answer with the option's letter from the given choices directly.";
/// MME questions carry this suffix in the dataset; lmms-eval removes it before appending
/// [`SHORT_ANSWER`].
pub const MME_SUFFIX: &str = " Please answer yes or no.";

/// The option letter for position `i` (0 → 'A').
pub fn letter(i: usize) -> char {
    char::from(b'A' + i as u8)
}

/// GQA / POPE: `question.strip()` + short-answer post-prompt.
pub fn short_answer(question: &str) -> String {
    format!("{}{SHORT_ANSWER}", question.trim())
}

/// MME: the dataset question minus " Please answer yes or no.", plus the short-answer post-prompt.
pub fn mme(question_with_suffix: &str) -> String {
    format!(
        "{}{SHORT_ANSWER}",
        question_with_suffix.trim().replace(MME_SUFFIX, "")
    )
}

/// TextVQA: Python `question.capitalize()` (which lower-cases the rest) + short-answer post-prompt.
pub fn textvqa(question: &str) -> String {
    format!(
        "{}{SHORT_ANSWER}",
        super::language::python_capitalize(question)
    )
}

/// MMBench (lmms-eval's English utils): `[hint ]question There are several options:\nA. x...`,
/// then a blank line and the letter instruction.
pub fn mmbench(hint: Option<&str>, question: &str, options: &[String]) -> String {
    let listed: Vec<String> = options
        .iter()
        .enumerate()
        .map(|(i, o)| format!("{}. {o}", letter(i)))
        .collect();
    let options_prompt = format!("There are several options:\n{}", listed.join("\n"));
    let ctx = match hint {
        Some(h) => format!("{h} {question} {options_prompt}"),
        None => format!("{question} {options_prompt}"),
    };
    format!("{ctx}\n\n{LETTER_ANSWER}")
}

/// SEED-Bench / ScienceQA style: question, one option per line, letter instruction.
pub fn letter_list(question: &str, options: &[String]) -> String {
    let listed: Vec<String> = options
        .iter()
        .enumerate()
        .map(|(i, o)| format!("{}. {o}", letter(i)))
        .collect();
    format!("{question}\n{}\n{LETTER_ANSWER}", listed.join("\n"))
}

/// CV-Bench's dataset `prompt` field: question, "Select from the following choices.", `(A) x` lines.
pub fn cvbench_dataset_prompt(question: &str, options: &[String]) -> String {
    let listed: Vec<String> = options
        .iter()
        .enumerate()
        .map(|(i, o)| format!("({}) {o}", letter(i)))
        .collect();
    format!(
        "{question} Select from the following choices.\n{}",
        listed.join("\n")
    )
}

/// lmms-eval's CV-Bench `doc_to_text`: the note naming the letters, a blank line, the dataset prompt.
pub fn cvbench(question: &str, options: &[String]) -> String {
    let letters: Vec<String> = (0..options.len()).map(|i| letter(i).to_string()).collect();
    format!(
        "Note: You only need to respond with {} without providing any additional information.\n\n{}",
        letters.join(", "),
        cvbench_dataset_prompt(question, options)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmbench_matches_the_lmms_eval_example() {
        let opts = vec!["cat".to_string(), "dog".into(), "bird".into()];
        assert_eq!(
            mmbench(Some("Look at the picture."), "Which animal is shown?", &opts),
            "Look at the picture. Which animal is shown? There are several options:\nA. cat\nB. dog\nC. bird\n\nAnswer with the option's letter from the given choices directly."
        );
    }

    #[test]
    fn mme_drops_its_suffix() {
        assert_eq!(
            mme("Is there a dog in this image? Please answer yes or no."),
            "Is there a dog in this image?\nAnswer the question using a single word or phrase."
        );
    }

    #[test]
    fn cvbench_names_only_the_letters_it_offers() {
        let p = cvbench("Which is closer?", &["a".into(), "b".into()]);
        assert!(p.starts_with(
            "Note: You only need to respond with A, B without providing any additional information.\n\nWhich is closer? Select from the following choices.\n(A) a\n(B) b"
        ));
    }
}
