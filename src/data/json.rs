//! LLaVA conversation datasets as published: one JSON array of records
//! `{ "id", "image"?, "conversations": [{ "from": "human" | "gpt", "value": "..." }] }`.
//!
//! This is the shape of LLaVA-558k (`blip_laion_cc_sbu_558k.json`), `llava_v1_5_mix665k.json` and
//! Cambrian-737k. Ids may be strings or numbers; `image` is a path relative to an image folder and
//! is absent for text-only records; the `<image>` placeholder sits in the first human turn.
//!
//! The file is parsed straight into compact [`Record`]s (no intermediate `serde_json::Value`
//! tree; from memory up to [`IN_MEMORY_LIMIT`], else from a buffered reader), and every record is validated as it arrives, so a malformed record is
//! reported by file, index and id — or skipped and counted when the caller asks for
//! [`OnError::Skip`]. Unknown fields (`model`, `source`, …) are ignored, as LLaVA ignores them.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// The placeholder LLaVA puts in the text where the image's visual tokens go.
pub const IMAGE_PLACEHOLDER: &str = "<image>";

/// Who speaks a turn. LLaVA's JSON spells these `"human"` and `"gpt"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Human,
    Gpt,
}

impl Role {
    /// The spelling in LLaVA's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Human => "human",
            Role::Gpt => "gpt",
        }
    }
}

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    pub role: Role,
    /// The text as written in the JSON (the `<image>` placeholder included).
    pub value: Box<str>,
}

impl Turn {
    pub fn new(role: Role, value: impl Into<Box<str>>) -> Turn {
        Turn {
            role,
            value: value.into(),
        }
    }
}

/// One validated dataset record, kept compact (665k of these stay in memory for a finetune).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The record's id as text (numeric ids are rendered in decimal).
    pub id: Box<str>,
    /// The image path as written in the JSON, relative to the dataset's image folder.
    pub image: Option<Box<str>>,
    /// Turns, alternating human/gpt, starting with human and ending with gpt.
    pub turns: Box<[Turn]>,
}

impl Record {
    /// Whether the record carries an image (text-only records get a zero image at batch time).
    pub fn has_image(&self) -> bool {
        self.image.is_some()
    }

    /// LLaVA's `modality_lengths` entry: whitespace-separated words over all turns, positive for
    /// image records and negative for text-only ones. Used to group batches by modality.
    pub fn modality_length(&self) -> i64 {
        let words: usize = self
            .turns
            .iter()
            .map(|t| t.value.split_whitespace().count())
            .sum();
        // A record with no words would be "length 0", which LLaVA's sampler asserts against;
        // count it as one word so its modality is still readable from the sign.
        let words = words.max(1) as i64;
        if self.has_image() {
            words
        } else {
            -words
        }
    }
}

/// Dataset files up to this size are read into memory and parsed from the slice; larger ones
/// are streamed through a buffered reader.
pub const IN_MEMORY_LIMIT: u64 = 4 << 30;

/// What to do with a malformed record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop at the first malformed record with an error naming it (the default).
    #[default]
    Fail,
    /// Leave malformed records out and count them (see [`LlavaDataset::skipped`]).
    Skip,
}

/// How to load a dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    pub on_error: OnError,
    /// Check that every record's image file exists (one `stat` per record). On by default:
    /// a missing image is a malformed record, better found at load time than mid-epoch.
    pub check_images: bool,
    /// Files up to this many bytes are read whole and parsed from memory (fast); larger ones
    /// are streamed. Default [`IN_MEMORY_LIMIT`].
    pub in_memory_limit: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            on_error: OnError::Fail,
            check_images: true,
            in_memory_limit: IN_MEMORY_LIMIT,
        }
    }
}

/// A record left out under [`OnError::Skip`], and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkippedRecord {
    /// Position of the record in the JSON array (0-based).
    pub index: usize,
    /// The record's id, when it had a readable one.
    pub id: Option<String>,
    pub reason: String,
}

/// A loaded LLaVA dataset.
#[derive(Clone, Debug)]
pub struct LlavaDataset {
    /// The JSON file it came from.
    pub json: PathBuf,
    /// The folder image paths are relative to.
    pub image_folder: PathBuf,
    /// Valid records, in file order.
    pub records: Vec<Record>,
    /// Records left out under [`OnError::Skip`] (always empty under [`OnError::Fail`]).
    pub skipped: Vec<SkippedRecord>,
}

impl LlavaDataset {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Absolute (or folder-relative) path of a record's image, if it has one.
    pub fn image_path(&self, record: &Record) -> Option<PathBuf> {
        record
            .image
            .as_deref()
            .map(|rel| self.image_folder.join(rel))
    }

    /// Number of records with an image.
    pub fn image_count(&self) -> usize {
        self.records.iter().filter(|r| r.has_image()).count()
    }
}

/// Why a dataset could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot open dataset {path}: {source}. Check the `json` path in the manifest's [data] entry.")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a LLaVA JSON dataset (near record {index}): {source}. The file must be one JSON array of {{\"id\", \"image\"?, \"conversations\"}} objects.")]
    Syntax {
        path: PathBuf,
        index: usize,
        source: serde_json::Error,
    },
    #[error("{path}: record {index} (id {id}): {reason}")]
    Record {
        path: PathBuf,
        index: usize,
        id: String,
        reason: String,
    },
}

/// Loads a LLaVA JSON dataset, validating every record.
///
/// A record is malformed when its `conversations` are missing or empty, a turn's `from` is not
/// `human`/`gpt`, turns do not alternate human → gpt starting with human and ending with gpt, an
/// answer is empty, `image` is set but the first human turn lacks `<image>` (or `<image>` appears
/// anywhere else, or more than once), `<image>` appears in a text-only record, or the image file
/// is missing under `image_folder` (when [`LoadOptions::check_images`] is set).
///
/// LLaVA itself silently drops a leading gpt turn; we call it malformed instead, so nothing in
/// a published dataset changes meaning without a count in the report.
pub fn load_llava_json(
    json: &Path,
    image_folder: &Path,
    opts: &LoadOptions,
) -> Result<LlavaDataset, DataError> {
    let file = File::open(json).map_err(|source| DataError::Open {
        path: json.to_path_buf(),
        source,
    })?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    let mut state = LoadState {
        json,
        image_folder,
        opts,
        records: Vec::new(),
        skipped: Vec::new(),
        failure: None,
        seen: 0,
    };
    // serde_json parses a byte slice 4-6x faster than a reader (it pulls a `Read` one byte at a
    // time): 100k mix665k-shaped records (81 MB) took 0.7 s from memory against 4.2 s from a
    // 1 MiB BufReader (dev profile; tests/data_json.rs `parse_100k_records_timing`). So files up to IN_MEMORY_LIMIT (the 665k mix is ~1 GB) are read
    // whole (by default), at a transient cost of their size in memory; larger ones are streamed.
    let parsed = if size <= opts.in_memory_limit {
        let bytes = std::fs::read(json).map_err(|source| DataError::Open {
            path: json.to_path_buf(),
            source,
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        RecordsSeed(&mut state)
            .deserialize(&mut de)
            .and_then(|()| de.end())
    } else {
        let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 20, file));
        RecordsSeed(&mut state)
            .deserialize(&mut de)
            .and_then(|()| de.end())
    };
    if let Some(err) = state.failure.take() {
        return Err(err);
    }
    parsed.map_err(|source| DataError::Syntax {
        path: json.to_path_buf(),
        index: state.seen,
        source,
    })?;
    Ok(LlavaDataset {
        json: json.to_path_buf(),
        image_folder: image_folder.to_path_buf(),
        records: state.records,
        skipped: state.skipped,
    })
}

/// Writes records as a LLaVA JSON dataset (one array, `{"id", "image"?, "conversations"}` per
/// record, the shape [`load_llava_json`] reads), atomically ([`crate::atomic`]): a reader never
/// sees half a file. Used by the synthetic world.
pub fn write_llava_json(path: &Path, records: &[Record]) -> anyhow::Result<()> {
    crate::atomic::write_atomic_stream(path, |w| {
        w.write_all(b"[")?;
        for (i, record) in records.iter().enumerate() {
            w.write_all(if i > 0 { b",\n" } else { b"\n" })?;
            serde_json::to_writer(&mut *w, &RecordJson::from(record))?;
        }
        w.write_all(b"\n]\n")?;
        Ok(())
    })
}

/// A record in its JSON shape, for writing.
#[derive(Serialize)]
struct RecordJson<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    conversations: Vec<TurnJson<'a>>,
}

#[derive(Serialize)]
struct TurnJson<'a> {
    from: &'static str,
    value: &'a str,
}

impl<'a> From<&'a Record> for RecordJson<'a> {
    fn from(r: &'a Record) -> Self {
        RecordJson {
            id: &r.id,
            image: r.image.as_deref(),
            conversations: r
                .turns
                .iter()
                .map(|t| TurnJson {
                    from: t.role.as_str(),
                    value: &t.value,
                })
                .collect(),
        }
    }
}

/// Validates one record already in memory (the same rules as [`load_llava_json`]), e.g. for
/// datasets assembled in code. `image_folder` is used only when `check_image` is set.
pub fn validate_record(
    raw: RawRecord,
    image_folder: &Path,
    check_image: bool,
) -> Result<Record, String> {
    let id = raw.id.map(|i| i.0).unwrap_or_default();
    let conversations = raw.conversations.ok_or_else(|| {
        "has no \"conversations\" field; every record needs a list of {\"from\", \"value\"} turns"
            .to_string()
    })?;
    if conversations.is_empty() {
        return Err("has an empty \"conversations\" list; it needs at least one human turn and one gpt answer".into());
    }
    let mut turns = Vec::with_capacity(conversations.len());
    for (t, turn) in conversations.into_iter().enumerate() {
        let role = match turn.from.as_deref() {
            Some("human") => Role::Human,
            Some("gpt") => Role::Gpt,
            Some(other) => {
                return Err(format!(
                    "turn {t} has \"from\": \"{other}\"; expected \"human\" or \"gpt\""
                ))
            }
            None => return Err(format!("turn {t} has no \"from\" field")),
        };
        let value = turn
            .value
            .ok_or_else(|| format!("turn {t} ({}) has no \"value\" field", role.as_str()))?;
        let expected = if t % 2 == 0 { Role::Human } else { Role::Gpt };
        if role != expected {
            return Err(format!(
                "turn {t} is from \"{}\" but turns must alternate human, gpt, human, … starting with human",
                role.as_str()
            ));
        }
        if role == Role::Gpt && value.trim().is_empty() {
            return Err(format!(
                "turn {t} (gpt) is empty; there would be nothing to train on"
            ));
        }
        turns.push(Turn::new(role, value));
    }
    if turns.len() % 2 == 1 {
        return Err(format!(
            "ends with an unanswered human turn (turn {}); the last turn must be from \"gpt\"",
            turns.len() - 1
        ));
    }
    let placeholders: Vec<usize> = turns
        .iter()
        .enumerate()
        .flat_map(|(t, turn)| std::iter::repeat_n(t, turn.value.matches(IMAGE_PLACEHOLDER).count()))
        .collect();
    match &raw.image {
        Some(image) => {
            if placeholders.is_empty() {
                return Err(format!(
                    "has \"image\": \"{image}\" but no {IMAGE_PLACEHOLDER} in its first human turn; add {IMAGE_PLACEHOLDER} where the image belongs"
                ));
            }
            if placeholders != [0] {
                return Err(format!(
                    "has {IMAGE_PLACEHOLDER} in turn(s) {placeholders:?}; a single-image record needs exactly one, in the first human turn (turn 0)"
                ));
            }
            if check_image {
                let path = image_folder.join(image);
                if !path.is_file() {
                    return Err(format!(
                        "image file {} does not exist; check the dataset's `images` folder",
                        path.display()
                    ));
                }
            }
        }
        None => {
            if let Some(t) = placeholders.first() {
                return Err(format!(
                    "has {IMAGE_PLACEHOLDER} in turn {t} but no \"image\" field; add the image path or remove the placeholder"
                ));
            }
        }
    }
    Ok(Record {
        id: id.into_boxed_str(),
        image: raw.image.map(String::into_boxed_str),
        turns: turns.into_boxed_slice(),
    })
}

/// A record as it appears in the JSON, before validation. Every field is optional here so that a
/// missing one becomes a clear per-record message instead of a parse error for the whole file.
#[derive(Debug, Default, Deserialize)]
pub struct RawRecord {
    #[serde(default)]
    pub id: Option<RecordId>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub conversations: Option<Vec<RawTurn>>,
}

/// A turn as it appears in the JSON.
#[derive(Debug, Default, Deserialize)]
pub struct RawTurn {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

/// A record id: a string or an integer in the JSON, kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordId(pub String);

impl<'de> Deserialize<'de> for RecordId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = RecordId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or integer id")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RecordId, E> {
                Ok(RecordId(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<RecordId, E> {
                Ok(RecordId(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RecordId, E> {
                Ok(RecordId(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RecordId, E> {
                Ok(RecordId(v.to_string()))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

struct LoadState<'a> {
    json: &'a Path,
    image_folder: &'a Path,
    opts: &'a LoadOptions,
    records: Vec<Record>,
    skipped: Vec<SkippedRecord>,
    /// A record-level failure under [`OnError::Fail`]; parsing stops right after it.
    failure: Option<DataError>,
    /// Records seen so far (to place syntax errors).
    seen: usize,
}

impl LoadState<'_> {
    /// Handles one record; returns false to stop parsing.
    fn accept(&mut self, index: usize, raw: Result<RawRecord, (Option<String>, String)>) -> bool {
        let (id, outcome) = match raw {
            Ok(raw) => {
                let id = raw.id.as_ref().map(|i| i.0.clone());
                (
                    id,
                    validate_record(raw, self.image_folder, self.opts.check_images),
                )
            }
            Err((id, reason)) => (id, Err(reason)),
        };
        match outcome {
            Ok(record) => {
                self.records.push(record);
                true
            }
            Err(reason) => match self.opts.on_error {
                OnError::Skip => {
                    self.skipped.push(SkippedRecord { index, id, reason });
                    true
                }
                OnError::Fail => {
                    self.failure = Some(DataError::Record {
                        path: self.json.to_path_buf(),
                        index,
                        id: id
                            .map(|i| format!("\"{i}\""))
                            .unwrap_or_else(|| "<none>".into()),
                        reason: format!(
                            "{reason} (or load with on_error = \"skip\" to leave such records out)"
                        ),
                    });
                    false
                }
            },
        }
    }
}

/// Deserialises the top-level array, handing each element to [`LoadState::accept`] as it
/// arrives, so the file is never held as a whole.
struct RecordsSeed<'s, 'a>(&'s mut LoadState<'a>);

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of LLaVA records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let state = self.0;
        loop {
            let index = state.seen;
            // An element that is valid JSON but of the wrong shape (a number, a list-valued
            // `image`, …) comes back as a per-record problem, not a parse error, so it can be
            // reported by index and id or skipped. Only broken JSON stops the parse.
            let Some(element) = seq.next_element_seed(OneRecord)? else {
                return Ok(());
            };
            state.seen += 1;
            if !state.accept(index, element) {
                // Stop reading here; the caller reports `failure`.
                return Ok(());
            }
        }
    }
}

/// One array element: a [`RawRecord`] when it has the right shape, otherwise the reason (and the
/// id, if one could be read) so the record can be reported or skipped without aborting the file.
struct OneRecord;

impl<'de> DeserializeSeed<'de> for OneRecord {
    type Value = Result<RawRecord, (Option<String>, String)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(OneRecordVisitor)
    }
}

struct OneRecordVisitor;

impl<'de> Visitor<'de> for OneRecordVisitor {
    type Value = Result<RawRecord, (Option<String>, String)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawRecord::default();
        let mut problem: Option<String> = None;
        while let Some(key) = map.next_key::<KeyName>()? {
            match key {
                KeyName::Id => match map.next_value::<LenientId>()? {
                    LenientId::Ok(id) => raw.id = Some(id),
                    LenientId::Bad(kind) => {
                        problem.get_or_insert(format!(
                            "has an \"id\" that is {kind}; ids must be strings or integers"
                        ));
                    }
                },
                KeyName::Image => match map.next_value::<LenientImage>()? {
                    LenientImage::Ok(image) => raw.image = image,
                    LenientImage::Bad(kind) => {
                        problem.get_or_insert(format!(
                            "has an \"image\" that is {kind}; only a single image path (a string) is supported"
                        ));
                    }
                },
                KeyName::Conversations => match map.next_value::<LenientTurns>()? {
                    LenientTurns::Ok(turns) => raw.conversations = Some(turns),
                    LenientTurns::Bad(reason) => {
                        problem.get_or_insert(reason);
                    }
                },
                KeyName::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match problem {
            None => Ok(raw),
            Some(reason) => Err((raw.id.map(|i| i.0), reason)),
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err((None, "is a list, not a record object".into())))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err((None, "is a string, not a record object".into())))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err((None, "is a number, not a record object".into())))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err((None, "is a number, not a record object".into())))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err((None, "is a number, not a record object".into())))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err((None, "is a boolean, not a record object".into())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err((None, "is null, not a record object".into())))
    }
}

/// The record keys we read; everything else is skipped without allocation.
enum KeyName {
    Id,
    Image,
    Conversations,
    Other,
}

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyName, E> {
                Ok(match v {
                    "id" => KeyName::Id,
                    "image" => KeyName::Image,
                    "conversations" => KeyName::Conversations,
                    _ => KeyName::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// Consumes the rest of a list whose contents we do not use (a value of the wrong type).
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Consumes the rest of an object whose contents we do not use.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// An id, or the kind of the value that stood where an id should be.
enum LenientId {
    Ok(RecordId),
    Bad(&'static str),
}

impl<'de> Deserialize<'de> for LenientId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an id")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientId, E> {
                Ok(LenientId::Ok(RecordId(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<LenientId, E> {
                Ok(LenientId::Ok(RecordId(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientId, E> {
                Ok(LenientId::Ok(RecordId(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientId, E> {
                Ok(LenientId::Ok(RecordId(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<LenientId, E> {
                Ok(LenientId::Bad("a fractional number"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<LenientId, E> {
                Ok(LenientId::Bad("a boolean"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientId, E> {
                Ok(LenientId::Bad("null"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<LenientId, A::Error> {
                drain_seq(seq)?;
                Ok(LenientId::Bad("a list"))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LenientId, A::Error> {
                drain_map(map)?;
                Ok(LenientId::Bad("an object"))
            }
        }
        d.deserialize_any(V)
    }
}

/// An image path (or null), or the kind of the value that stood there.
enum LenientImage {
    Ok(Option<String>),
    Bad(&'static str),
}

impl<'de> Deserialize<'de> for LenientImage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientImage;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an image path")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientImage, E> {
                Ok(LenientImage::Ok(Some(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<LenientImage, E> {
                Ok(LenientImage::Ok(Some(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientImage, E> {
                Ok(LenientImage::Ok(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<LenientImage, E> {
                Ok(LenientImage::Ok(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<LenientImage, E> {
                Ok(LenientImage::Bad("a number"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<LenientImage, E> {
                Ok(LenientImage::Bad("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<LenientImage, E> {
                Ok(LenientImage::Bad("a number"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<LenientImage, E> {
                Ok(LenientImage::Bad("a boolean"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<LenientImage, A::Error> {
                drain_seq(seq)?;
                Ok(LenientImage::Bad("a list (a multi-image record)"))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LenientImage, A::Error> {
                drain_map(map)?;
                Ok(LenientImage::Bad("an object"))
            }
        }
        d.deserialize_any(V)
    }
}

/// The conversation list, or a message saying what is wrong with its shape.
enum LenientTurns {
    Ok(Vec<RawTurn>),
    Bad(String),
}

impl<'de> Deserialize<'de> for LenientTurns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientTurns;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of turns")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LenientTurns, A::Error> {
                let mut turns = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                let mut bad: Option<String> = None;
                let mut t = 0usize;
                while let Some(turn) = seq.next_element::<LenientTurn>()? {
                    match turn {
                        LenientTurn::Ok(turn) => turns.push(turn),
                        LenientTurn::Bad(why) => {
                            bad.get_or_insert(format!("turn {t} {why}"));
                        }
                    }
                    t += 1;
                }
                Ok(match bad {
                    None => LenientTurns::Ok(turns),
                    Some(why) => LenientTurns::Bad(why),
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientTurns, E> {
                Ok(LenientTurns::Bad(
                    "has \"conversations\": null; it must be a list of {\"from\", \"value\"} turns"
                        .into(),
                ))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<LenientTurns, E> {
                Ok(LenientTurns::Bad(
                    "has \"conversations\" as a string; it must be a list of {\"from\", \"value\"} turns".into(),
                ))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<LenientTurns, E> {
                Ok(LenientTurns::Bad(
                    "has \"conversations\" as a number; it must be a list of turns".into(),
                ))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<LenientTurns, E> {
                Ok(LenientTurns::Bad(
                    "has \"conversations\" as a number; it must be a list of turns".into(),
                ))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<LenientTurns, E> {
                Ok(LenientTurns::Bad(
                    "has \"conversations\" as a number; it must be a list of turns".into(),
                ))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<LenientTurns, E> {
                Ok(LenientTurns::Bad(
                    "has \"conversations\" as a boolean; it must be a list of turns".into(),
                ))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LenientTurns, A::Error> {
                drain_map(map)?;
                Ok(LenientTurns::Bad(
                    "has \"conversations\" as an object; it must be a list of turns".into(),
                ))
            }
        }
        d.deserialize_any(V)
    }
}

/// One turn, or what is wrong with its shape.
enum LenientTurn {
    Ok(RawTurn),
    Bad(String),
}

impl<'de> Deserialize<'de> for LenientTurn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientTurn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a turn object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LenientTurn, A::Error> {
                let mut turn = RawTurn::default();
                let mut bad = None;
                while let Some(key) = map.next_key::<TurnKey>()? {
                    match key {
                        TurnKey::From | TurnKey::Value => {
                            let value = map.next_value::<Option<StrOrKind>>()?;
                            let text = match value {
                                None => None,
                                Some(StrOrKind::Str(s)) => Some(s),
                                Some(StrOrKind::Kind(kind)) => {
                                    let field = if matches!(key, TurnKey::From) {
                                        "from"
                                    } else {
                                        "value"
                                    };
                                    bad.get_or_insert(format!(
                                        "has a \"{field}\" that is {kind}; it must be a string"
                                    ));
                                    None
                                }
                            };
                            if matches!(key, TurnKey::From) {
                                turn.from = text;
                            } else {
                                turn.value = text;
                            }
                        }
                        TurnKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(match bad {
                    None => LenientTurn::Ok(turn),
                    Some(why) => LenientTurn::Bad(why),
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<LenientTurn, A::Error> {
                drain_seq(seq)?;
                Ok(LenientTurn::Bad(
                    "is a list; a turn must be an object {\"from\", \"value\"}".into(),
                ))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<LenientTurn, E> {
                Ok(LenientTurn::Bad(
                    "is a string; a turn must be an object {\"from\", \"value\"}".into(),
                ))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<LenientTurn, E> {
                Ok(LenientTurn::Bad(
                    "is a number; a turn must be an object".into(),
                ))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<LenientTurn, E> {
                Ok(LenientTurn::Bad(
                    "is a number; a turn must be an object".into(),
                ))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<LenientTurn, E> {
                Ok(LenientTurn::Bad(
                    "is a number; a turn must be an object".into(),
                ))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<LenientTurn, E> {
                Ok(LenientTurn::Bad(
                    "is a boolean; a turn must be an object".into(),
                ))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientTurn, E> {
                Ok(LenientTurn::Bad("is null; a turn must be an object".into()))
            }
        }
        d.deserialize_any(V)
    }
}

enum TurnKey {
    From,
    Value,
    Other,
}

impl<'de> Deserialize<'de> for TurnKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = TurnKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TurnKey, E> {
                Ok(match v {
                    "from" => TurnKey::From,
                    "value" => TurnKey::Value,
                    _ => TurnKey::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// A string, or the kind of the non-string value found instead.
enum StrOrKind {
    Str(String),
    Kind(&'static str),
}

impl<'de> Deserialize<'de> for StrOrKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrOrKind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrOrKind, E> {
                Ok(StrOrKind::Str(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<StrOrKind, E> {
                Ok(StrOrKind::Str(v))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<StrOrKind, E> {
                Ok(StrOrKind::Kind("a number"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<StrOrKind, E> {
                Ok(StrOrKind::Kind("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<StrOrKind, E> {
                Ok(StrOrKind::Kind("a number"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<StrOrKind, E> {
                Ok(StrOrKind::Kind("a boolean"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<StrOrKind, A::Error> {
                drain_seq(seq)?;
                Ok(StrOrKind::Kind("a list"))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StrOrKind, A::Error> {
                drain_map(map)?;
                Ok(StrOrKind::Kind("an object"))
            }
        }
        d.deserialize_any(V)
    }
}
