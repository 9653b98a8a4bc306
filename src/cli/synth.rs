//! `mlvf synth`: generate the offline synthetic world.

use crate::cli::UserError;
use crate::synth::{self, Scale, SynthConfig};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  mlvf synth --out data/synth\n  \
    mlvf synth --out data/synth-small --scale small --image-size 96 --seed 1\n  \
    mlvf synth --out data/w --config world.toml --contact-sheet sheet.png")]
pub struct SynthArgs {
    /// Directory to create (must not exist, or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// World seed (same settings + same seed = byte-identical files).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Preset sizes: test, tiny (quickstart), small, medium.
    #[arg(long, default_value = "tiny")]
    pub scale: String,
    /// Image side in pixels (48-512).
    #[arg(long)]
    pub image_size: Option<u32>,
    /// A TOML file with any `SynthConfig` fields (seed, image_size, n_pretrain, n_finetune,
    /// n_per_benchmark, max_objects, text_percent, occlusion_percent, text_only_percent,
    /// max_turns); they override the scale preset, and --seed/--image-size override them.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Worker threads (default: all cores). Output does not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also write a contact sheet PNG of the first images of every benchmark (one row each) and
    /// print what is asked about each.
    #[arg(long)]
    pub contact_sheet: Option<PathBuf>,
}

fn config_from(args: &SynthArgs) -> anyhow::Result<SynthConfig> {
    let scale: Scale = args.scale.parse().map_err(UserError)?;
    let mut cfg = SynthConfig::for_scale(scale);
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UserError(format!("cannot read {}: {e}", path.display())))?;
        // Fields absent from the file keep the scale preset's values.
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| UserError(format!("{}: {e}", path.display())))?;
        let preset = toml::Table::try_from(&cfg)?;
        for (k, v) in preset {
            table.entry(k).or_insert(v);
        }
        cfg = table
            .try_into()
            .map_err(|e: toml::de::Error| UserError(format!("{}: {e}", path.display())))?;
    }
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    if let Some(size) = args.image_size {
        cfg.image_size = size;
    }
    cfg.validate().map_err(|e| UserError(format!("{e:#}")))?;
    Ok(cfg)
}

pub fn run(args: SynthArgs) -> anyhow::Result<ExitCode> {
    let cfg = config_from(&args)?;
    if args.out.exists() && !(args.out.is_dir() && std::fs::read_dir(&args.out)?.next().is_none()) {
        return Err(UserError(format!(
            "{} already exists and is not empty; choose another --out or remove it first",
            args.out.display()
        ))
        .into());
    }
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        pool = pool.num_threads(n.max(1));
    }
    let pool = pool.build().context("starting worker threads")?;
    let start = Instant::now();
    let world = pool.install(|| synth::generate(&cfg, &args.out))?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "wrote {} in {secs:.1}s ({} threads, seed {}, {}px)",
        args.out.display(),
        pool.current_num_threads(),
        cfg.seed,
        cfg.image_size
    );
    println!(
        "  pretrain   {:>7} captions       {}",
        world.pretrain.records, world.pretrain.json
    );
    println!(
        "  finetune   {:>7} conversations  {} ({} text-only)",
        world.finetune.records, world.finetune.json, world.finetune.text_only
    );
    for b in &world.benchmarks {
        println!(
            "  {:<18} {:>5} records {:>5} images  {}",
            b.task, b.records, b.images, b.dir
        );
    }
    println!("  corpus     {}", world.corpus);
    if let Some(sheet_path) = &args.contact_sheet {
        const COLS: usize = 8;
        let blank = image::RgbImage::from_pixel(
            cfg.image_size,
            cfg.image_size,
            image::Rgb([255, 255, 255]),
        );
        let mut tiles = Vec::new();
        // One row per benchmark, padded so rows line up.
        for (row, p) in synth::preview(&args.out, COLS)?.iter().enumerate() {
            for (col, (path, line)) in p.items.iter().enumerate() {
                let img = image::open(path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .to_rgb8();
                tiles.push(img);
                println!("  [row {row} col {col}] {} {line}", p.task);
            }
            tiles.extend(std::iter::repeat_n(blank.clone(), COLS - p.items.len()));
        }
        synth::sheet::contact_sheet(&tiles, COLS, 3)
            .save(sheet_path)
            .with_context(|| format!("writing {}", sheet_path.display()))?;
        println!("contact sheet: {}", sheet_path.display());
    }
    Ok(ExitCode::SUCCESS)
}
