//! Writes a grid of synthetic images, as in docs/synth/:
//! `cargo run --example synth_grid -- faces 64 8 docs/synth/faces.png [seed]`.

use ratlip::data::synth::{self, Kind, Sample};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, size, n, out, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: synth_grid shapes|faces SIZE COUNT OUT.png [SEED]");
    };
    let kind = match kind.as_str() {
        "shapes" => Kind::Shapes,
        "faces" => Kind::Faces,
        k => anyhow::bail!("unknown kind {k:?}"),
    };
    let (size, n): (usize, usize) = (size.parse()?, n.parse()?);
    let seed: u64 = rest.first().map_or(Ok(0), |s| s.parse())?;
    let cols = n.min(8);
    let rows = n.div_ceil(cols);
    let gap = 2;
    let (w, h) = (cols * size + (cols + 1) * gap, rows * size + (rows + 1) * gap);
    let mut grid = vec![255u8; w * h * 3];
    for i in 0..n {
        let s: Sample = synth::sample(kind, seed, i as u64, size);
        let (x0, y0) = (gap + (i % cols) * (size + gap), gap + (i / cols) * (size + gap));
        for y in 0..size {
            let dst = ((y0 + y) * w + x0) * 3;
            grid[dst..dst + size * 3].copy_from_slice(&s.rgb[y * size * 3..(y + 1) * size * 3]);
        }
        println!("{i}: {}", s.captions[0]);
    }
    image::save_buffer(out, &grid, w as u32, h as u32, image::ExtendedColorType::Rgb8)?;
    Ok(())
}
