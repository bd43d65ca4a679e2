//! Matrix products (shaders/matmul.wgsl, shaders/matmul_sg8.wgsl): `matmul`, its backward,
//! and the tape ops `Tape::matmul` and `Tape::linear` (PyTorch's nn.Linear).
//!
//! One kernel computes C = op(A)·op(B) (+ bias) for every use: the transposes are absorbed
//! where the kernel reads its operands, so the backward passes are the same kernel with other
//! transposes (plus "write C transposed" and "add into C"), never a transpose copy:
//!
//! ```text
//!   Y  = op(A)·op(B)            op(A) [M,K], op(B) [K,N]
//!   dA = (dY·op(B)ᵀ)            written transposed when A is stored transposed
//!   dB = (op(A)ᵀ·dY)            written transposed when B is stored transposed
//!   db = Σ_rows dY
//! ```
//!
//! Two implementations of that kernel exist and the device picks one:
//! - `matmul.wgsl`: 64×64 tiles in workgroup memory, 256 invocations with 4×4 register
//!   blocks — the layout GPUs want.
//! - `matmul_sg8.wgsl`: for CPU drivers with 8-wide subgroups (Mesa's lavapipe). There every
//!   per-invocation memory access is a scalar loop over the lanes and barriers are coroutine
//!   switches, so workgroup memory only adds cost; the subgroup's registers hold a 64×128
//!   tile instead and A values travel by subgroup broadcast.
//!
//! Measured on lavapipe (2 cores, release build, `ratlip bench kernels`), GFLOP/s:
//!
//! | shape (M×K×N)        | naive | matmul.wgsl | matmul_sg8.wgsl fwd / bwd |
//! |----------------------|-------|-------------|---------------------------|
//! | 1024×1024×1024       | 0.29  | 0.92        | 16.0 / 15.7               |
//! | 50×768×3072 (x·Wᵀ)   |       | 0.73        | 12.2 / 11.1               |
//! | 77×512×2048 (x·Wᵀ)   |       | 0.56        |  9.5 / 10.3               |
//!
//! (77 rows fill two 64-row tiles: 60% of the work is kept. Tried and measured worse or
//! no better on lavapipe: loops over register arrays (not unrolled: 0.1), workgroup tiles
//! read with subgroup broadcasts (5.5), 32×64 and 64×64 subgroup tiles (9–13), four k per
//! pass over the accumulators instead of two (≤ 5%, twice the compile time).)

use std::cell::Cell;
use std::ops::Range;

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Tape, Var};
use crate::ensure_shape;
use crate::error::{Error, Result};
use crate::gpu::{grid, Gpu, Kernel};
use crate::kernel;
use crate::ops::batch_chunks;
use crate::tensor::{DType, Tensor};

static TILED: Kernel = kernel!("matmul");
static SUBGROUP8: Kernel = kernel!("matmul_sg8");

/// Rows of C per workgroup in both kernels.
const TILE_M: usize = 64;

const BIAS: u32 = 1;
const ACCUMULATE: u32 = 2;
const TRANS_C: u32 = 4;
const TRANS_A: u32 = 8;
const TRANS_B: u32 = 16;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    nred: u32,
    a_stride: u32,
    b_stride: u32,
    c_stride: u32,
    flags: u32,
    z_base: u32,
    y_base: u32,
    pad0: u32,
    pad1: u32,
}

thread_local! {
    static FORCE_TILED: Cell<bool> = const { Cell::new(false) };
}

/// Makes this thread use the workgroup-memory kernel even where the subgroup kernel would
/// be chosen, so that tests on lavapipe cover the kernel GPUs run. Per thread: tests running
/// beside it are unaffected.
#[doc(hidden)]
pub fn force_tiled_kernel_for_tests(on: bool) {
    FORCE_TILED.with(|f| f.set(on));
}

/// The subgroup kernel assumes one workgroup of 8 invocations is exactly one subgroup, which
/// holds where the driver reports a fixed subgroup size of 8; it only pays off on CPUs.
fn use_subgroup8(gpu: &Gpu) -> bool {
    let info = gpu.adapter_info();
    !FORCE_TILED.with(|f| f.get())
        && gpu.features().contains(wgpu::Features::SUBGROUP)
        && info.device_type == wgpu::DeviceType::Cpu
        && info.subgroup_min_size == 8
        && info.subgroup_max_size == 8
}

/// Which kernel `matmul` uses on this device (for benchmark reports).
pub fn kernel_name(gpu: &Gpu) -> &'static str {
    if use_subgroup8(gpu) {
        "matmul_sg8 (subgroup registers)"
    } else {
        "matmul (workgroup tiles)"
    }
}

// ---- one launch -----------------------------------------------------------------------

/// One kernel launch: `items` products C_z = op(A_z)·op(B_z), each of `nred` terms summed
/// (nred > 1 only with items == 1). Strides are in elements; 0 shares an operand.
struct Launch<'a> {
    a: &'a Tensor,
    b: &'a Tensor,
    c: &'a Tensor,
    bias: Option<&'a Tensor>,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    tc: bool,
    items: usize,
    nred: usize,
    a_stride: usize,
    b_stride: usize,
    accumulate: bool,
}

fn u32_of(x: usize, what: &str) -> Result<u32> {
    u32::try_from(x).map_err(|_| Error::Other(format!("matmul: {what} = {x} does not fit the kernel's 32-bit indices")))
}

impl Launch<'_> {
    fn run(&self) -> Result<()> {
        let gpu = self.c.gpu();
        let sg8 = use_subgroup8(gpu);
        let (kernel, entry, tile_n) = if sg8 {
            (&SUBGROUP8, "gemm", 128)
        } else {
            let entry = match (self.ta, self.tb) {
                (false, false) => "mm_nn",
                (false, true) => "mm_nt",
                (true, false) => "mm_tn",
                (true, true) => "mm_tt",
            };
            (&TILED, entry, 64)
        };
        let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
        let tiles_x = self.n.div_ceil(tile_n);
        let tiles_y = self.m.div_ceil(TILE_M);
        if tiles_x > max {
            return Err(Error::Other(format!(
                "matmul: N = {} needs {tiles_x} workgroups in x, more than the device's {max}",
                self.n
            )));
        }
        let mut flags = 0;
        for (on, bit) in [
            (self.bias.is_some(), BIAS),
            (self.accumulate, ACCUMULATE),
            (self.tc, TRANS_C),
            (self.ta, TRANS_A),
            (self.tb, TRANS_B),
        ] {
            if on {
                flags |= bit;
            }
        }
        // The shader reads `bias` only under its flag; any read-only tensor fills the slot.
        let bias = self.bias.unwrap_or(self.a);
        let base = Params {
            m: u32_of(self.m, "M")?,
            n: u32_of(self.n, "N")?,
            k: u32_of(self.k, "K")?,
            nred: u32_of(self.nred, "the batch")?,
            a_stride: u32_of(self.a_stride, "a's batch stride")?,
            b_stride: u32_of(self.b_stride, "b's batch stride")?,
            c_stride: u32_of(self.m * self.n, "M·N")?,
            flags,
            ..Params::zeroed()
        };
        for z0 in (0..self.items).step_by(max) {
            for y0 in (0..tiles_y).step_by(max) {
                let params = Params { z_base: z0 as u32, y_base: y0 as u32, ..base };
                let groups = [tiles_x as u32, (tiles_y - y0).min(max) as u32, (self.items - z0).min(max) as u32];
                gpu.dispatch(kernel, entry, &params, &[self.a, self.b, bias, self.c], groups)?;
            }
        }
        Ok(())
    }
}

// ---- shapes ---------------------------------------------------------------------------

/// A product's dimensions: batch dims of a, M, K, N, and whether b is a shared 2-D weight.
#[derive(Debug)]
struct Dims {
    batch: Vec<usize>,
    items: usize,
    m: usize,
    k: usize,
    n: usize,
    b_shared: bool,
}

impl Dims {
    fn check(op: &'static str, a: &[usize], b: &[usize], ta: bool, tb: bool) -> Result<Dims> {
        ensure_shape!(
            a.len() >= 2 && b.len() >= 2,
            op,
            "a {a:?} and b {b:?} must both have at least 2 dims (matrices, optionally batched)"
        );
        let (ar, ac) = (a[a.len() - 2], a[a.len() - 1]);
        let (br, bc) = (b[b.len() - 2], b[b.len() - 1]);
        let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
        let (kb, n) = if tb { (bc, br) } else { (br, bc) };
        ensure_shape!(
            k == kb,
            op,
            "a {a:?} (trans_a {ta}) is [M={m}, K={k}] but b {b:?} (trans_b {tb}) is [K={kb}, N={n}]: inner dims differ"
        );
        let batch = a[..a.len() - 2].to_vec();
        let b_shared = b.len() == 2;
        ensure_shape!(
            b_shared || b[..b.len() - 2] == batch[..],
            op,
            "a {a:?} and b {b:?}: b must have a's batch dims {batch:?} or be 2-D (a weight shared by the batch)"
        );
        let items: usize = batch.iter().product();
        ensure_shape!(m > 0 && n > 0 && k > 0 && items > 0, op, "a {a:?} and b {b:?}: empty matrices are not supported");
        Ok(Dims { batch, items, m, k, n, b_shared })
    }

    fn out_shape(&self) -> Vec<usize> {
        let mut s = self.batch.clone();
        s.extend([self.m, self.n]);
        s
    }
}

/// Runs `f` over ranges of `items` small enough that every operand's slice fits a storage
/// binding (`elems`: elements per item of each operand taking part; 0 for one that is not
/// split). `f` also learns whether its range is the first.
fn in_chunks(gpu: &Gpu, op: &'static str, items: usize, elems: &[usize], mut f: impl FnMut(Range<usize>, bool) -> Result<()>) -> Result<()> {
    let bytes: Vec<u64> = elems.iter().map(|&e| (e * DType::F32.size()) as u64).collect();
    for (i, r) in batch_chunks(gpu, op, items, &bytes)?.into_iter().enumerate() {
        f(r, i == 0)?;
    }
    Ok(())
}

/// Views a tensor as [items, rows, cols] (the batch dims flattened).
fn as3(t: &Tensor, items: usize) -> Result<Tensor> {
    let s = t.shape();
    t.reshape(&[items, s[s.len() - 2], s[s.len() - 1]])
}

/// Views a tensor as [rows, cols] with every leading dim folded into the rows.
fn as2(t: &Tensor) -> Result<Tensor> {
    let cols = *t.shape().last().unwrap();
    t.reshape(&[t.numel() / cols, cols])
}

// ---- forward / backward ---------------------------------------------------------------

/// op(a)·op(b) (+ bias). a is [..batch, M, K] ([..batch, K, M] if `trans_a`); b is
/// [..batch, K, N] ([..batch, N, K] if `trans_b`) with a's batch dims, or 2-D (one weight for
/// the whole batch). bias [N] is added to every row. Returns [..batch, M, N].
pub fn matmul(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool, bias: Option<&Tensor>) -> Result<Tensor> {
    let d = Dims::check("matmul", a.shape(), b.shape(), trans_a, trans_b)?;
    if let Some(bias) = bias {
        ensure_shape!(bias.shape() == [d.n], "matmul", "bias {:?} for an output of {} columns (a {:?}, b {:?})", bias.shape(), d.n, a.shape(), b.shape());
    }
    let gpu = a.gpu();
    let out = Tensor::empty(gpu, &d.out_shape())?;
    let (m, k, n) = (d.m, d.k, d.n);
    if d.b_shared && !trans_a {
        // One tall product: the batch folds into the rows of a and of the output.
        let (a2, c2) = (as2(a)?, as2(&out)?);
        let rows = a2.dim(0);
        in_chunks(gpu, "matmul", rows, &[k, 0, n], |r, _| {
            let (ac, cc) = (a2.narrow0(r.start, r.len())?, c2.narrow0(r.start, r.len())?);
            Launch { a: &ac, b, c: &cc, bias, m: r.len(), n, k, ta: false, tb: trans_b, tc: false, items: 1, nred: 1, a_stride: 0, b_stride: 0, accumulate: false }.run()
        })?;
    } else {
        let (a3, c3) = (as3(a, d.items)?, as3(&out, d.items)?);
        let b3 = if d.b_shared { b.clone() } else { as3(b, d.items)? };
        let b_item = if d.b_shared { 0 } else { k * n };
        in_chunks(gpu, "matmul", d.items, &[m * k, b_item, m * n], |r, _| {
            let ac = a3.narrow0(r.start, r.len())?;
            let bc = if d.b_shared { b3.clone() } else { b3.narrow0(r.start, r.len())? };
            let cc = c3.narrow0(r.start, r.len())?;
            Launch { a: &ac, b: &bc, c: &cc, bias, m, n, k, ta: trans_a, tb: trans_b, tc: false, items: r.len(), nred: 1, a_stride: m * k, b_stride: b_item, accumulate: false }.run()
        })?;
    }
    Ok(out)
}

/// Gradients of `matmul(a, b, trans_a, trans_b, bias)` given dy (the output's gradient):
/// (da, db, dbias), each computed only where `need` asks. When b is a shared 2-D weight, db
/// sums over the batch.
pub fn matmul_backward(
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
    dy: &Tensor,
    need: [bool; 3],
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let d = Dims::check("matmul_backward", a.shape(), b.shape(), trans_a, trans_b)?;
    ensure_shape!(
        dy.shape() == d.out_shape(),
        "matmul_backward",
        "dy {:?} but the output of a {:?} · b {:?} is {:?}",
        dy.shape(),
        a.shape(),
        b.shape(),
        d.out_shape()
    );
    let gpu = a.gpu();
    let da = if need[0] { Some(grad_a(gpu, &d, a, b, trans_a, trans_b, dy)?) } else { None };
    let db = if need[1] { Some(grad_b(gpu, &d, a, b, trans_a, trans_b, dy)?) } else { None };
    let dbias = if need[2] { Some(column_sums(&as2(dy)?)?) } else { None };
    Ok((da, db, dbias))
}

/// dA = dY·op(B)ᵀ, an [M, K] product (k = N) written transposed when A is stored [K, M].
fn grad_a(gpu: &Gpu, d: &Dims, a: &Tensor, b: &Tensor, ta: bool, tb: bool, dy: &Tensor) -> Result<Tensor> {
    let (m, k, n) = (d.m, d.k, d.n);
    let da = Tensor::empty(gpu, a.shape())?;
    if d.b_shared && !ta {
        let (dy2, da2) = (as2(dy)?, as2(&da)?);
        in_chunks(gpu, "matmul_backward", dy2.dim(0), &[n, 0, k], |r, _| {
            let (yc, ac) = (dy2.narrow0(r.start, r.len())?, da2.narrow0(r.start, r.len())?);
            Launch { a: &yc, b, c: &ac, bias: None, m: r.len(), n: k, k: n, ta: false, tb: !tb, tc: false, items: 1, nred: 1, a_stride: 0, b_stride: 0, accumulate: false }.run()
        })?;
    } else {
        let (dy3, da3) = (as3(dy, d.items)?, as3(&da, d.items)?);
        let b3 = if d.b_shared { b.clone() } else { as3(b, d.items)? };
        let b_item = if d.b_shared { 0 } else { k * n };
        in_chunks(gpu, "matmul_backward", d.items, &[m * n, b_item, m * k], |r, _| {
            let yc = dy3.narrow0(r.start, r.len())?;
            let bc = if d.b_shared { b3.clone() } else { b3.narrow0(r.start, r.len())? };
            let ac = da3.narrow0(r.start, r.len())?;
            Launch { a: &yc, b: &bc, c: &ac, bias: None, m, n: k, k: n, ta: false, tb: !tb, tc: ta, items: r.len(), nred: 1, a_stride: m * n, b_stride: b_item, accumulate: false }.run()
        })?;
    }
    Ok(da)
}

/// dB = op(A)ᵀ·dY, a [K, N] product (k = M) written transposed when B is stored [N, K];
/// summed over the batch when B is shared.
fn grad_b(gpu: &Gpu, d: &Dims, a: &Tensor, b: &Tensor, ta: bool, tb: bool, dy: &Tensor) -> Result<Tensor> {
    let (m, k, n) = (d.m, d.k, d.n);
    let db = Tensor::empty(gpu, b.shape())?;
    if !d.b_shared {
        let (a3, dy3, db3) = (as3(a, d.items)?, as3(dy, d.items)?, as3(&db, d.items)?);
        in_chunks(gpu, "matmul_backward", d.items, &[m * k, m * n, k * n], |r, _| {
            let (ac, yc, bc) = (a3.narrow0(r.start, r.len())?, dy3.narrow0(r.start, r.len())?, db3.narrow0(r.start, r.len())?);
            Launch { a: &ac, b: &yc, c: &bc, bias: None, m: k, n, k: m, ta: !ta, tb: false, tc: tb, items: r.len(), nred: 1, a_stride: m * k, b_stride: m * n, accumulate: false }.run()
        })?;
    } else if !ta {
        // The batch folds into the summed dimension: dB = A2ᵀ·dY2 with A2 [B·M, K].
        let (a2, dy2) = (as2(a)?, as2(dy)?);
        in_chunks(gpu, "matmul_backward", a2.dim(0), &[k, n, 0], |r, first| {
            let (ac, yc) = (a2.narrow0(r.start, r.len())?, dy2.narrow0(r.start, r.len())?);
            Launch { a: &ac, b: &yc, c: &db, bias: None, m: k, n, k: r.len(), ta: true, tb: false, tc: tb, items: 1, nred: 1, a_stride: 0, b_stride: 0, accumulate: !first }.run()
        })?;
    } else {
        // A is [B, K, M]: the kernel sums the B products itself.
        let (a3, dy3) = (as3(a, d.items)?, as3(dy, d.items)?);
        in_chunks(gpu, "matmul_backward", d.items, &[m * k, m * n, 0], |r, first| {
            let (ac, yc) = (a3.narrow0(r.start, r.len())?, dy3.narrow0(r.start, r.len())?);
            Launch { a: &ac, b: &yc, c: &db, bias: None, m: k, n, k: m, ta: false, tb: false, tc: tb, items: 1, nred: r.len(), a_stride: m * k, b_stride: m * n, accumulate: !first }.run()
        })?;
    }
    Ok(db)
}

/// Σ over rows of a [R, N] tensor: the bias gradient.
fn column_sums(dy: &Tensor) -> Result<Tensor> {
    let gpu = dy.gpu();
    let (rows, n) = (dy.dim(0), dy.dim(1));
    let out = Tensor::empty(gpu, &[n])?;
    in_chunks(gpu, "matmul_backward", rows, &[n, 0], |r, first| {
        let yc = dy.narrow0(r.start, r.len())?;
        let params = Params {
            m: u32_of(r.len(), "rows")?,
            n: u32_of(n, "N")?,
            flags: if first { 0 } else { ACCUMULATE },
            ..Params::zeroed()
        };
        gpu.dispatch(&TILED, "column_sums", &params, &[&yc, &out], grid(gpu, n as u64, 64))
    })?;
    Ok(out)
}

// ---- on the tape ----------------------------------------------------------------------

impl Tape {
    /// op(a)·op(b); see [`matmul`] for the shapes.
    pub fn matmul(&self, a: &Var, b: &Var, trans_a: bool, trans_b: bool) -> Result<Var> {
        let y = matmul(a.value(), b.value(), trans_a, trans_b, None)?;
        let (av, bv) = (a.value().clone(), b.value().clone());
        Ok(self.record1("matmul", &[a, b], y, move |c| {
            let (da, db, _) = matmul_backward(&av, &bv, trans_a, trans_b, &c.grad(0)?, [c.needs[0], c.needs[1], false])?;
            Ok(vec![da, db])
        }))
    }

    /// PyTorch's nn.Linear: x [..., in] · w[out, in]ᵀ + bias[out] → [..., out].
    pub fn linear(&self, x: &Var, w: &Var, bias: Option<&Var>) -> Result<Var> {
        ensure_shape!(w.shape().len() == 2, "linear", "weight {:?} must be [out, in]", w.shape());
        ensure_shape!(
            !x.shape().is_empty() && x.shape().last() == w.shape().last(),
            "linear",
            "x {:?} must end in the weight's in-features {} (weight {:?})",
            x.shape(),
            w.shape()[1],
            w.shape()
        );
        // A single vector is one row.
        let x_shape = x.shape().to_vec();
        let xv = if x_shape.len() == 1 { x.value().reshape(&[1, x_shape[0]])? } else { x.value().clone() };
        let mut y = matmul(&xv, w.value(), false, true, bias.map(|b| b.value()))?;
        if x_shape.len() == 1 {
            y = y.reshape(&[w.shape()[0]])?;
        }
        let wv = w.value().clone();
        let mut inputs = vec![x, w];
        inputs.extend(bias);
        let has_bias = bias.is_some();
        Ok(self.record1("linear", &inputs, y, move |c| {
            let dy = c.grad(0)?;
            let dy = if x_shape.len() == 1 { dy.reshape(&[1, dy.numel()])? } else { dy };
            let need_bias = has_bias && c.needs[2];
            let (dx, dw, db) = matmul_backward(&xv, &wv, false, true, &dy, [c.needs[0], c.needs[1], need_bias])?;
            let dx = dx.map(|t| t.reshape(&x_shape)).transpose()?;
            let mut grads = vec![dx, dw];
            if has_bias {
                grads.push(db);
            }
            Ok(grads)
        }))
    }
}

// ---- CPU reference --------------------------------------------------------------------

pub mod cpu {
    /// op(a)·op(b) (+ bias) in f64 for one batch item or a shared weight: `a` holds `items`
    /// matrices, `b` holds `items` matrices or one (`b_shared`). Returns items × M × N values.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        a: &[f64],
        b: &[f64],
        bias: Option<&[f64]>,
        items: usize,
        m: usize,
        k: usize,
        n: usize,
        trans_a: bool,
        trans_b: bool,
        b_shared: bool,
    ) -> Vec<f64> {
        let mut out = vec![0.0; items * m * n];
        for z in 0..items {
            let a = &a[z * m * k..(z + 1) * m * k];
            let b = if b_shared { b } else { &b[z * k * n..(z + 1) * k * n] };
            for i in 0..m {
                for j in 0..n {
                    let mut s = bias.map_or(0.0, |bias| bias[j]);
                    for l in 0..k {
                        let x = if trans_a { a[l * m + i] } else { a[i * k + l] };
                        let y = if trans_b { b[j * k + l] } else { b[l * n + j] };
                        s += x * y;
                    }
                    out[(z * m + i) * n + j] = s;
                }
            }
        }
        out
    }
}
