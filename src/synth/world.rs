//! The world's vocabulary: shapes, colours, textures, sizes, grid cells, and the words on signs.
//!
//! Shapes, colours and textures are drawn uniformly (since `mlvf-synth/4`): with uneven priors a
//! model scores by naming the common answer ("red", "circle") without looking, and every table
//! measures that prior instead of vision (results/mini-paper.md, 2026-11-26).

/// An object's outline. Identity of a shape is a high-level (compositional) property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Star,
    Cross,
    Diamond,
}

impl Shape {
    pub const ALL: [Shape; 6] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Star,
        Shape::Cross,
        Shape::Diamond,
    ];
    /// Relative frequency in scenes (uniform: no answer prior to exploit).
    pub const PRIOR: [u32; 6] = [1; 6];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
            Shape::Cross => "cross",
            Shape::Diamond => "diamond",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Shape::Circle => "circles",
            Shape::Square => "squares",
            Shape::Triangle => "triangles",
            Shape::Star => "stars",
            Shape::Cross => "crosses",
            Shape::Diamond => "diamonds",
        }
    }

    /// Number of corners, for text-only "world knowledge" samples.
    pub fn corners(self) -> u32 {
        match self {
            Shape::Circle => 0,
            Shape::Square => 4,
            Shape::Triangle => 3,
            Shape::Star => 10,
            Shape::Cross => 12,
            Shape::Diamond => 4,
        }
    }
}

/// A named palette colour. Telling colours apart is a low-level property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Color {
    Red,
    Green,
    Blue,
    Yellow,
    Purple,
    Orange,
    White,
    Pink,
}

impl Color {
    pub const ALL: [Color; 8] = [
        Color::Red,
        Color::Green,
        Color::Blue,
        Color::Yellow,
        Color::Purple,
        Color::Orange,
        Color::White,
        Color::Pink,
    ];
    /// Relative frequency of object colours (uniform).
    pub const PRIOR: [u32; 8] = [1; 8];
    /// Colours a sign may have: light enough for black glyphs to read.
    pub const SIGN: [Color; 4] = [Color::White, Color::Yellow, Color::Orange, Color::Pink];

    pub fn name(self) -> &'static str {
        match self {
            Color::Red => "red",
            Color::Green => "green",
            Color::Blue => "blue",
            Color::Yellow => "yellow",
            Color::Purple => "purple",
            Color::Orange => "orange",
            Color::White => "white",
            Color::Pink => "pink",
        }
    }

    pub fn rgb(self) -> [u8; 3] {
        match self {
            Color::Red => [220, 35, 35],
            Color::Green => [40, 185, 60],
            Color::Blue => [45, 95, 235],
            Color::Yellow => [245, 220, 40],
            Color::Purple => [150, 60, 200],
            Color::Orange => [250, 140, 25],
            Color::White => [245, 245, 245],
            Color::Pink => [250, 150, 200],
        }
    }
}

/// Surface pattern of an object: fine, low-level detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Texture {
    Solid,
    Stripes,
    Dots,
    Checker,
}

impl Texture {
    pub const ALL: [Texture; 4] = [
        Texture::Solid,
        Texture::Stripes,
        Texture::Dots,
        Texture::Checker,
    ];
    /// Relative frequency of textures (uniform).
    pub const PRIOR: [u32; 4] = [1; 4];

    /// The adjective used in captions, questions and answers.
    pub fn adjective(self) -> &'static str {
        match self {
            Texture::Solid => "solid",
            Texture::Stripes => "striped",
            Texture::Dots => "dotted",
            Texture::Checker => "checkered",
        }
    }
}

/// Absolute object size (two classes, clearly apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    Small,
    Large,
}

impl Size {
    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }

    /// Radius as a fraction of a grid cell's side.
    pub fn radius_in_cells(self) -> f32 {
        match self {
            Size::Small => 0.27,
            Size::Large => 0.44,
        }
    }
}

/// One of the 3×3 grid cells an object sits in (exact position: low-level).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell {
    pub row: u8,
    pub col: u8,
}

impl Cell {
    pub const GRID: u8 = 3;

    pub fn all() -> Vec<Cell> {
        (0..Self::GRID)
            .flat_map(|row| (0..Self::GRID).map(move |col| Cell { row, col }))
            .collect()
    }

    /// Short name, used as an answer ("top left", "center", ...).
    pub fn name(self) -> &'static str {
        const NAMES: [[&str; 3]; 3] = [
            ["top left", "top", "top right"],
            ["left", "center", "right"],
            ["bottom left", "bottom", "bottom right"],
        ];
        NAMES[self.row as usize][self.col as usize]
    }

    /// Prepositional phrase for captions ("in the top left corner").
    pub fn phrase(self) -> &'static str {
        const PHRASES: [[&str; 3]; 3] = [
            [
                "in the top left corner",
                "at the top",
                "in the top right corner",
            ],
            ["on the left", "in the center", "on the right"],
            [
                "in the bottom left corner",
                "at the bottom",
                "in the bottom right corner",
            ],
        ];
        PHRASES[self.row as usize][self.col as usize]
    }
}

/// Semantic words that signs show (regular text recognition).
pub const WORDS: [&str; 32] = [
    "CAT", "DOG", "SUN", "MAP", "BOX", "KEY", "CUP", "HAT", "BUS", "PEN", "FOX", "OWL", "ANT",
    "BEE", "EGG", "ICE", "TREE", "FISH", "BIRD", "MOON", "CAKE", "LAMP", "DOOR", "SHIP", "RAIN",
    "SNOW", "FROG", "BOAT", "BELL", "KING", "STOP", "OPEN",
];

/// Letters used for non-semantic strings (no I/O/Q, which are easy to confuse with digits).
pub const LETTERS: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ";

/// English number words for counts (MME asks "Are there two stars?").
pub fn number_word(n: usize) -> &'static str {
    const W: [&str; 11] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    W.get(n).copied().unwrap_or("many")
}

/// "a" or "an" for the word that follows.
pub fn article(next_word: &str) -> &'static str {
    match next_word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}
