//! Shared by the manifest_* and plan_* tests: a tiny manifest written into a temp dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Models, data and benchmarks every test manifest can refer to.
pub const CATALOG: &str = r#"
[models]
clip = { kind = "vision", family = "clip", source = "hf:openai/clip-vit-large-patch14-336", depth = 24 }
sig  = { kind = "vision", family = "siglip", source = "hf:google/siglip-so400m-patch14-384", depth = 27 }
tiny = { kind = "vision", family = "clip", source = "synth:clip", depth = 4 }
llm  = { kind = "llm", family = "llama", source = "hf:mtgv/MobileLLaMA-1.4B-Base", layers = 24 }
llm2 = { kind = "llm", family = "llama", source = "hf:mtgv/MobileLLaMA-2.7B-Base", layers = 32 }

[data]
pt   = { format = "llava-json", json = "pt.json", images = "img" }
sft  = { format = "llava-json", json = "sft.json", images = "img" }
syn  = { source = "synth:instruct" }

[benchmarks]
pope = { path = "bench/pope" }
gqa  = { path = "bench/gqa", max_new_tokens = 16 }
"#;

/// Writes `[sweep]` + the catalog + `body` to `dir/name` and returns its path.
pub fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let text = format!("[sweep]\nname = \"t\"\nstore = \"store\"\n{CATALOG}\n{body}");
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Writes a file verbatim.
pub fn write_raw(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// 1-based line and column of the first occurrence of `needle` in `path`.
pub fn pos(path: &Path, needle: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not in {}", path.display()));
    let line = text[..at].matches('\n').count() + 1;
    let col = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{}:{line}:{col}", path.display())
}

/// The error message of loading + planning a manifest (panics if it plans).
pub fn plan_error(path: &Path) -> String {
    match mlvf::plan::load_with_warnings(path, None) {
        Ok(_) => panic!("{} planned without error", path.display()),
        Err(e) => {
            assert!(
                e.downcast_ref::<mlvf::cli::UserError>().is_some(),
                "not a UserError: {e:#}"
            );
            e.to_string()
        }
    }
}

/// The grid part shared by most tests.
pub const GRID: &str = r#"
[grid]
fusion = ["E_D", "I_D"]
layers = ["3-18", "3-18-23"]
encoder = ["clip"]
llm = ["llm"]
pretrain_data = ["pt"]
sft = ["sft"]
benchmark = ["pope", "gqa"]
"#;
