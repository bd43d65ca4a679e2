//! conv2d forward, dx and dw at two of G's shapes: the 512-channel 3×3 convs of the first
//! image blocks (32×32) and the last block's 128→64 conv at full 224×224 resolution.

use super::{time, Row};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::conv2d::{conv2d, conv2d_backward, Conv2dParams};
use crate::tensor::Tensor;

/// [B, Cin, H, W], [Cout, Cin, k, k], padding, as named in the rows.
const CASES: [(&str, [usize; 4], [usize; 4], usize); 2] = [
    ("conv3x3 512->512 @32", [1, 512, 32, 32], [512, 512, 3, 3], 1),
    ("conv3x3 128->64 @224", [1, 128, 224, 224], [64, 128, 3, 3], 1),
];

fn filled(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    Tensor::from_slice(gpu, shape, &v)
}

pub fn rows(gpu: &Gpu, reps: usize) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (name, xs, ws, pad) in CASES {
        let p = Conv2dParams::new(1, pad);
        let (x, w, b) = (filled(gpu, &xs)?, filled(gpu, &ws)?, filled(gpu, &ws[..1])?);
        let y = conv2d(&x, &w, Some(&b), p)?;
        let dy = filled(gpu, y.shape())?;
        let gflop = 2.0 * (y.numel() * ws[1] * ws[2] * ws[3]) as f64 / 1e9;
        let fwd = time(gpu, reps, || conv2d(&x, &w, Some(&b), p).map(drop))?;
        let dx = time(gpu, reps, || conv2d_backward(&x, &w, &dy, p, [true, false, false]).map(drop))?;
        let dw = time(gpu, reps, || conv2d_backward(&x, &w, &dy, p, [false, true, false]).map(drop))?;
        rows.push(Row { name: format!("{name} fwd"), gflop, ms: fwd });
        rows.push(Row { name: format!("{name} dx"), gflop, ms: dx });
        rows.push(Row { name: format!("{name} dw"), gflop, ms: dw });
    }
    Ok(rows)
}
