//! "shapes": one or two coloured geometric shapes on a plain background, with captions that
//! name each shape's colour, kind, size and place, and how two shapes sit relative to each other.

use serde::Serialize;

use super::raster::{jitter, regular, Canvas, Rgb, Rng};

pub const COLOURS: [(&str, Rgb); 8] = [
    ("red", [215, 35, 35]),
    ("green", [40, 165, 60]),
    ("blue", [35, 80, 215]),
    ("yellow", [245, 215, 35]),
    ("purple", [135, 55, 175]),
    ("orange", [245, 135, 25]),
    ("black", [20, 20, 20]),
    ("white", [245, 245, 245]),
];
/// Backgrounds may also be grey, which no shape is, so a shape never melts into it.
const GREY: (&str, Rgb) = ("grey", [140, 140, 140]);

pub const SHAPES: [&str; 6] = ["circle", "square", "triangle", "star", "diamond", "hexagon"];

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Shape {
    pub shape: &'static str,
    pub color: &'static str,
    /// "small" or "large".
    pub size: &'static str,
    /// "left", "right", "top", "bottom" or "center".
    pub position: &'static str,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ShapesAttrs {
    pub background: &'static str,
    /// In reading order: the left or upper one first.
    pub shapes: Vec<Shape>,
}

pub fn colour(name: &str) -> Rgb {
    COLOURS.iter().chain([&GREY]).find(|(n, _)| *n == name).map_or([128; 3], |c| c.1)
}

pub fn sample(rng: &mut Rng) -> ShapesAttrs {
    let sizes = ["small", "large"];
    let shapes = if rng.chance(0.5) {
        vec![Shape {
            shape: rng.pick(&SHAPES),
            color: rng.pick(&COLOURS).0,
            size: rng.pick(&sizes),
            position: rng.pick(&["left", "right", "top", "bottom", "center"]),
        }]
    } else {
        let (p1, p2) = if rng.chance(0.5) { ("left", "right") } else { ("top", "bottom") };
        let first = Shape { shape: rng.pick(&SHAPES), color: rng.pick(&COLOURS).0, size: rng.pick(&sizes), position: p1 };
        // The two must differ in colour so captions such as "a red circle left of a blue
        // circle" always say which is which.
        let mut color = rng.pick(&COLOURS).0;
        while color == first.color {
            color = rng.pick(&COLOURS).0;
        }
        let second = Shape { shape: rng.pick(&SHAPES), color, size: rng.pick(&sizes), position: p2 };
        vec![first, second]
    };
    // Backgrounds close to a shape's colour (yellow on orange, red on orange) would make
    // captions name a shape one can barely see.
    let contrast = |a: Rgb, b: Rgb| a.iter().zip(&b).map(|(x, y)| (*x as i32 - *y as i32).abs()).sum::<i32>();
    let backgrounds: Vec<&'static str> = COLOURS
        .iter()
        .chain([&GREY])
        .filter(|(_, bg)| shapes.iter().all(|s| contrast(colour(s.color), *bg) > 180))
        .map(|c| c.0)
        .collect();
    let background = if backgrounds.is_empty() { GREY.0 } else { rng.pick(&backgrounds) };
    ShapesAttrs { background, shapes }
}

pub fn render(a: &ShapesAttrs, size: usize, rng: &mut Rng) -> Vec<u8> {
    let mut cv = Canvas::new(size, jitter(colour(a.background), 8, rng));
    let pair = a.shapes.len() == 2;
    for s in &a.shapes {
        let off = if pair { 0.25 } else { 0.22 };
        let (mut cx, mut cy) = match s.position {
            "left" => (0.5 - off, 0.5),
            "right" => (0.5 + off, 0.5),
            "top" => (0.5, 0.5 - off),
            "bottom" => (0.5, 0.5 + off),
            _ => (0.5, 0.5),
        };
        cx += rng.range(-0.03, 0.03);
        cy += rng.range(-0.03, 0.03);
        let r = match (s.size, pair) {
            ("large", false) => 0.24,
            ("large", true) => 0.2,
            (_, false) => 0.12,
            (_, true) => 0.1,
        } * rng.range(0.92, 1.08);
        // A little rotation for variety, small enough that a square never reads as a diamond.
        let rot = rng.range(-0.15, 0.15);
        let c = jitter(colour(s.color), 10, rng);
        let up = -std::f32::consts::FRAC_PI_2;
        match s.shape {
            "circle" => cv.circle(cx, cy, r, c),
            "square" => cv.polygon(&regular(cx, cy, r * 1.25, 4, std::f32::consts::FRAC_PI_4 + rot, None), c),
            "triangle" => cv.polygon(&regular(cx, cy + r * 0.2, r * 1.25, 3, up + rot, None), c),
            "star" => cv.polygon(&regular(cx, cy + r * 0.05, r * 1.2, 5, up + rot, Some(r * 0.5)), c),
            "diamond" => cv.polygon(&regular(cx, cy, r * 1.2, 4, up, None).iter().map(|&(x, y)| (cx + (x - cx) * 0.75, y)).collect::<Vec<_>>(), c),
            _ => cv.polygon(&regular(cx, cy, r * 1.08, 6, rot, None), c),
        }
    }
    cv.downsample()
}

fn size_word(s: &Shape, rng: &mut Rng) -> &'static str {
    match s.size {
        "small" => rng.pick(&["small", "little", "small"]),
        _ => rng.pick(&["large", "big", "large"]),
    }
}

/// "red circle", sometimes with its size first.
fn noun(s: &Shape, rng: &mut Rng, with_size: bool) -> String {
    if with_size {
        format!("{} {} {}", size_word(s, rng), s.color, s.shape)
    } else {
        format!("{} {}", s.color, s.shape)
    }
}

fn place(position: &str, rng: &mut Rng) -> &'static str {
    match position {
        "left" => rng.pick(&["on the left", "on the left side"]),
        "right" => rng.pick(&["on the right", "on the right side"]),
        "top" => rng.pick(&["at the top", "near the top"]),
        "bottom" => rng.pick(&["at the bottom", "near the bottom"]),
        _ => rng.pick(&["in the center", "in the middle"]),
    }
}

pub fn captions(a: &ShapesAttrs, rng: &mut Rng) -> Vec<String> {
    let bg = a.background;
    let mut out = Vec::with_capacity(10);
    if let [s] = a.shapes.as_slice() {
        let (c, sh) = (s.color, s.shape);
        let d = |rng: &mut Rng| noun(s, rng, true);
        out.push(format!("a {} {} on a {bg} background", d(rng), place(s.position, rng)));
        out.push(format!("a {c} {sh} {}", place(s.position, rng)));
        out.push(format!("{}, {bg} background", d(rng)));
        out.push(format!("a picture of a {c} {sh} against a {bg} background"));
        out.push(format!("there is a {} {} of the image", d(rng), place(s.position, rng)));
        out.push(format!("{c} {sh} on {bg}"));
        out.push(format!("a simple drawing of one {} {sh} coloured {c}", size_word(s, rng)));
        out.push(format!("the {bg} background has a {c} {sh} {}", place(s.position, rng)));
        out.push(format!("one {c} {sh}, {}, {}", size_word(s, rng), place(s.position, rng)));
        out.push(format!("an image with a single {} on a {bg} background", d(rng)));
    } else if let [s1, s2] = a.shapes.as_slice() {
        let horizontal = s1.position == "left";
        let d = |s: &Shape, rng: &mut Rng| {
            let with_size = rng.chance(0.5);
            noun(s, rng, with_size)
        };
        let before = |rng: &mut Rng| {
            if horizontal { rng.pick(&["on the left of", "to the left of", "left of"]) } else { rng.pick(&["above", "over"]) }
        };
        let after = |rng: &mut Rng| {
            if horizontal { rng.pick(&["on the right of", "to the right of", "right of"]) } else { rng.pick(&["below", "under", "beneath"]) }
        };
        out.push(format!("a {} {} a {} on a {bg} background", d(s1, rng), before(rng), d(s2, rng)));
        out.push(format!("a {} {} a {}", d(s2, rng), after(rng), d(s1, rng)));
        out.push(format!("two shapes: a {} and a {}, {bg} background", d(s1, rng), d(s2, rng)));
        out.push(format!("{} {} and {} {}", d(s1, rng), place(s1.position, rng), d(s2, rng), place(s2.position, rng)));
        let next = if horizontal { "next to" } else { "stacked above" };
        out.push(format!("a {} {next} a {}", d(s1, rng), d(s2, rng)));
        out.push(format!("a {bg} background with a {} and a {}", d(s1, rng), d(s2, rng)));
        out.push(format!("{} {} {}, {bg} background", d(s2, rng), after(rng), d(s1, rng)));
        out.push(format!("a picture of a {} {} a {}", d(s1, rng), before(rng), d(s2, rng)));
        out.push(format!("{} a {}, {} a {}", place(s1.position, rng), d(s1, rng), place(s2.position, rng), d(s2, rng)));
        out.push(format!("a {} {} and a {} {} on {bg}", s1.color, s1.shape, s2.color, s2.shape));
    }
    out
}
