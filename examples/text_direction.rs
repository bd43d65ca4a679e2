//! Does G draw an attribute if the text says it louder? Renders prompt A's sentence embedding
//! pushed along the direction from prompt B to A, s = s_A + k (s_A − s_B), for k = 0, 2, 5,
//! 10, 20 (one row each) and seeds 1–8 (one column each), zoomed 4×, as in docs/evaluation.md:
//! `cargo run --release --example text_direction -- MODEL "… wearing glasses" "… no glasses" OUT.png`.
//! If G had learnt the attribute but the CLIP's text side says it too quietly (the caption and
//! its contrast have cosine 0.997 in the shipped CLIP), a larger k would draw it.

use ratlip::model::Model;
use ratlip::{Gpu, GpuOptions, Tensor};
fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 4 {
        anyhow::bail!("usage: text_direction MODEL.safetensors PROMPT_A PROMPT_B OUT.png");
    }
    let gpu = Gpu::new(&GpuOptions::default())?;
    let m = Model::load(&gpu, std::path::Path::new(&a[0]))?;
    let (pa, pb, out) = (&a[1], &a[2], &a[3]);
    let e = m.clip.embed_texts(&[pa.clone(), pb.clone()])?;
    let c = &m.config;
    let ks = [0.0f32, 2.0, 5.0, 10.0, 20.0];
    let seeds = 8;
    let mut imgs = Vec::new();
    for &k in &ks {
        let s: Vec<f32> = e[0].iter().zip(&e[1]).map(|(x, y)| x + k * (x - y)).collect();
        let mut sent = Vec::new();
        let mut z = Vec::new();
        for i in 0..seeds { sent.extend(&s); z.extend(ratlip::latent::seed_noise(i as u64 + 1, 0, c.z_dim)); }
        let zt = Tensor::from_slice(&gpu, &[seeds, c.z_dim], &z)?;
        let st = Tensor::from_slice(&gpu, &[seeds, c.cond_dim], &sent)?;
        let px = m.generate(&zt, &st)?.to_vec()?;
        imgs.extend(ratlip::images::from_chw_zoomed(&px, &[seeds, 3, c.image_size, c.image_size], 4)?);
    }
    let g = ratlip::images::grid(&imgs, seeds, 2)?;
    let note = format!("rows k = {ks:?}: s = s_A + k (s_A - s_B); columns seeds 1-{seeds}");
    ratlip::images::save_png(std::path::Path::new(out), &g, &[("prompt", format!("A: {pa} | B: {pb}")), ("comment", note)])?;
    Ok(())
}
