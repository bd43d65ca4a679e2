//! A tiny supersampled rasteriser: shapes are inside/outside tests evaluated on a grid 3 or 4
//! times finer than the output, then box-filtered down, so edges come out anti-aliased without
//! any per-primitive coverage maths. Coordinates are in image units (0..1, y down) so a
//! picture looks the same at every output size.
//!
//! Everything here is plain IEEE arithmetic (+, ×, ÷, sqrt are correctly rounded) and no libm
//! call, so a given seed gives the same bytes on every machine.

pub type Rgb = [u8; 3];

pub struct Canvas {
    /// Samples per output pixel along each axis.
    ss: usize,
    /// Side of the supersampled grid.
    n: usize,
    px: Vec<Rgb>,
}

impl Canvas {
    pub fn new(size: usize, background: Rgb) -> Self {
        // 16 samples a pixel keeps thin lines (wrinkles, glasses) smooth at 64 px; at larger
        // sizes those lines span several pixels and 9 look as clean for half the work.
        let ss = if size <= 128 { 4 } else { 3 };
        let n = size * ss;
        Canvas { ss, n, px: vec![background; n * n] }
    }

    /// Paints every sample whose centre satisfies `inside`, visiting only the bounding box
    /// `(x0, y0, x1, y1)` (image units) so small primitives stay cheap at large sizes.
    pub fn fill(&mut self, bbox: (f32, f32, f32, f32), colour: Rgb, inside: impl Fn(f32, f32) -> bool) {
        let n = self.n as f32;
        let lo = |v: f32| ((v * n).floor().max(0.0) as usize).min(self.n);
        let hi = |v: f32| ((v * n).ceil().max(0.0) as usize).min(self.n);
        let (sx0, sx1, sy0, sy1) = (lo(bbox.0), hi(bbox.2), lo(bbox.1), hi(bbox.3));
        for sy in sy0..sy1 {
            let y = (sy as f32 + 0.5) / n;
            let row = &mut self.px[sy * self.n..(sy + 1) * self.n];
            for (sx, p) in row.iter_mut().enumerate().take(sx1).skip(sx0) {
                if inside((sx as f32 + 0.5) / n, y) {
                    *p = colour;
                }
            }
        }
    }

    pub fn ellipse(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, colour: Rgb) {
        self.fill((cx - rx, cy - ry, cx + rx, cy + ry), colour, |x, y| in_ellipse(x, y, cx, cy, rx, ry));
    }

    pub fn circle(&mut self, cx: f32, cy: f32, r: f32, colour: Rgb) {
        self.ellipse(cx, cy, r, r, colour);
    }

    /// A ring: a circle outline of the given stroke width (glasses frames).
    pub fn ring(&mut self, cx: f32, cy: f32, r: f32, width: f32, colour: Rgb) {
        let (ro, ri) = (r + width / 2.0, (r - width / 2.0).max(0.0));
        self.fill((cx - ro, cy - ro, cx + ro, cy + ro), colour, |x, y| {
            let d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
            d2 <= ro * ro && d2 >= ri * ri
        });
    }

    pub fn rect(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, colour: Rgb) {
        self.fill((x0, y0, x1, y1), colour, |x, y| x >= x0 && x <= x1 && y >= y0 && y <= y1);
    }

    /// Any simple polygon, convex or not (stars), by the even-odd rule.
    pub fn polygon(&mut self, pts: &[(f32, f32)], colour: Rgb) {
        if pts.len() < 3 {
            return;
        }
        self.fill(bounds(pts, 0.0), colour, |x, y| in_polygon(x, y, pts));
    }

    /// A stroke through `pts` with round caps and joins: the union of capsules, so arcs drawn
    /// as short segments have no gaps or notches.
    pub fn polyline(&mut self, pts: &[(f32, f32)], width: f32, colour: Rgb) {
        let h = width / 2.0;
        for w in pts.windows(2) {
            let (a, b) = (w[0], w[1]);
            self.fill(bounds(&[a, b], h), colour, |x, y| seg_dist2(x, y, a, b) <= h * h);
        }
        if pts.len() == 1 {
            self.circle(pts[0].0, pts[0].1, h, colour);
        }
    }

    pub fn line(&mut self, a: (f32, f32), b: (f32, f32), width: f32, colour: Rgb) {
        self.polyline(&[a, b], width, colour);
    }

    /// Box-filters the supersampled grid down to `size`×`size` RGB bytes.
    pub fn downsample(&self) -> Vec<u8> {
        let ss = self.ss;
        let size = self.n / ss;
        let mut out = Vec::with_capacity(size * size * 3);
        let area = (ss * ss) as u32;
        for y in 0..size {
            for x in 0..size {
                let mut acc = [0u32; 3];
                for sy in 0..ss {
                    let row = (y * ss + sy) * self.n + x * ss;
                    for p in &self.px[row..row + ss] {
                        for c in 0..3 {
                            acc[c] += p[c] as u32;
                        }
                    }
                }
                out.extend(acc.iter().map(|a| ((a + area / 2) / area) as u8));
            }
        }
        out
    }
}

pub fn in_ellipse(x: f32, y: f32, cx: f32, cy: f32, rx: f32, ry: f32) -> bool {
    let (dx, dy) = ((x - cx) / rx, (y - cy) / ry);
    dx * dx + dy * dy <= 1.0
}

pub fn in_polygon(x: f32, y: f32, pts: &[(f32, f32)]) -> bool {
    let mut inside = false;
    let mut j = pts.len() - 1;
    for i in 0..pts.len() {
        let ((xi, yi), (xj, yj)) = (pts[i], pts[j]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

fn seg_dist2(x: f32, y: f32, a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 { (((x - a.0) * dx + (y - a.1) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
    let (px, py) = (a.0 + t * dx - x, a.1 + t * dy - y);
    px * px + py * py
}

fn bounds(pts: &[(f32, f32)], pad: f32) -> (f32, f32, f32, f32) {
    let mut b = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for &(x, y) in pts {
        b = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
    }
    (b.0 - pad, b.1 - pad, b.2 + pad, b.3 + pad)
}

/// sin and cos without libm, whose last bit differs between platforms: range-reduce to
/// [-π, π] and sum the Taylor series in f64, far past f32 precision.
pub fn sin_cos(t: f32) -> (f32, f32) {
    let tau = std::f64::consts::TAU;
    let mut x = (t as f64) % tau;
    if x > std::f64::consts::PI {
        x -= tau;
    } else if x < -std::f64::consts::PI {
        x += tau;
    }
    let (mut s, mut c) = (0.0f64, 0.0f64);
    let (mut term_s, mut term_c) = (x, 1.0f64);
    for k in 0..14 {
        s += term_s;
        c += term_c;
        let k = k as f64;
        term_s *= -x * x / ((2.0 * k + 2.0) * (2.0 * k + 3.0));
        term_c *= -x * x / ((2.0 * k + 1.0) * (2.0 * k + 2.0));
    }
    (s as f32, c as f32)
}

/// Points along an elliptical arc from angle `a0` to `a1` (radians, y down).
pub fn arc(cx: f32, cy: f32, rx: f32, ry: f32, a0: f32, a1: f32, steps: usize) -> Vec<(f32, f32)> {
    (0..=steps)
        .map(|i| {
            let (s, c) = sin_cos(a0 + (a1 - a0) * i as f32 / steps as f32);
            (cx + rx * c, cy + ry * s)
        })
        .collect()
}

/// Regular polygon (or star when `inner` is set: alternate vertices at that radius).
pub fn regular(cx: f32, cy: f32, r: f32, sides: usize, rot: f32, inner: Option<f32>) -> Vec<(f32, f32)> {
    let count = if inner.is_some() { sides * 2 } else { sides };
    (0..count)
        .map(|i| {
            let rad = match inner {
                Some(ri) if i % 2 == 1 => ri,
                _ => r,
            };
            let (s, c) = sin_cos(rot + std::f32::consts::TAU * i as f32 / count as f32);
            (cx + rad * c, cy + rad * s)
        })
        .collect()
}

/// splitmix64: tiny, fast, and every seed (0 included) gives a good stream; one stream per
/// image (seeded from the dataset seed and the image index) makes image i the same whatever
/// the count or the thread that renders it.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.f32()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, p: f32) -> bool {
        self.f32() < p
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Nudges each channel by up to ±`amount` so same-named colours are not one flat value.
pub fn jitter(c: Rgb, amount: i32, rng: &mut Rng) -> Rgb {
    c.map(|v| (v as i32 + rng.below(2 * amount as usize + 1) as i32 - amount).clamp(0, 255) as u8)
}

pub fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [0, 1, 2].map(|i| (a[i] as f32 + (b[i] as f32 - a[i] as f32) * t).round().clamp(0.0, 255.0) as u8)
}
