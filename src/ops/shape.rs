//! Shape ops: concat, slice, permute, nearest resize, channel shuffle, batch roll, per-sample
//! translation (shaders/shape.wgsl, shaders/resize.wgsl, shaders/translate.wgsl).
//!
//! Tensors are contiguous, so everything here except the resize is the same operation: a
//! strided box copy (`Copy`) between two buffers. Each op describes its copy, dims that stay
//! adjacent in both tensors are merged, and the result picks the cheapest way to move it: a
//! plain buffer copy when both sides are contiguous, a tiled transpose when the contiguous
//! axis changes, the strided kernel otherwise (4 elements per thread where rows stay
//! contiguous on both sides). All ops are linear and their backwards
//! are the same kind of copy (or, for the resize, a gather-sum).

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Tape, Var};
use crate::ensure_shape;
use crate::error::{Error, Result};
use crate::gpu::{grid, Kernel};
use crate::kernel;
use crate::ops::batch_chunks;
use crate::tensor::{numel, Tensor};

static KERNEL: Kernel = kernel!("shape");
static RESIZE: Kernel = kernel!("resize");
static TRANSLATE: Kernel = kernel!("translate");

/// Dims the strided kernel can index (after merging, which only ever lowers the count).
pub const MAX_DIMS: usize = 6;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CopyParams {
    n: u32,
    rank: u32,
    src_base: u32,
    dst_base: u32,
    shape: [u32; 8],
    src_stride: [u32; 8],
    dst_stride: [u32; 8],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ResizeParams {
    n: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    scale_h: f32,
    scale_w: f32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct TranslateParams {
    n: u32,
    planes_per_sample: u32,
    h: u32,
    w: u32,
    sign: i32,
    _pad: [u32; 3],
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn row_bytes(t: &Tensor) -> u64 {
    (numel(&t.shape()[1..]) * t.dtype().size()) as u64
}

// ---- the strided box copy -------------------------------------------------------------

/// Element c of the box `shape` (row-major) moves from `src_base + c·src_stride` to
/// `dst_base + c·dst_stride`, in elements of the bound tensors.
#[derive(Clone, Debug)]
struct Copy {
    shape: Vec<usize>,
    src_stride: Vec<usize>,
    src_base: usize,
    dst_stride: Vec<usize>,
    dst_base: usize,
}

impl Copy {
    /// Drops size-1 dims and merges neighbours that are adjacent in both tensors, so that
    /// e.g. a concat along dim k of any rank becomes a 2-D copy.
    fn simplified(&self) -> Copy {
        let mut out = Copy { shape: vec![], src_stride: vec![], src_base: self.src_base, dst_stride: vec![], dst_base: self.dst_base };
        for i in 0..self.shape.len() {
            let (n, s, d) = (self.shape[i], self.src_stride[i], self.dst_stride[i]);
            if n == 1 {
                continue;
            }
            if let Some(last) = out.shape.len().checked_sub(1) {
                if out.src_stride[last] == s * n && out.dst_stride[last] == d * n {
                    out.shape[last] *= n;
                    out.src_stride[last] = s;
                    out.dst_stride[last] = d;
                    continue;
                }
            }
            out.shape.push(n);
            out.src_stride.push(s);
            out.dst_stride.push(d);
        }
        out
    }

    fn params(&self) -> CopyParams {
        let mut p = CopyParams {
            n: numel(&self.shape) as u32,
            rank: self.shape.len() as u32,
            src_base: self.src_base as u32,
            dst_base: self.dst_base as u32,
            ..Zeroable::zeroed()
        };
        for i in 0..self.shape.len() {
            p.shape[i] = self.shape[i] as u32;
            p.src_stride[i] = self.src_stride[i] as u32;
            p.dst_stride[i] = self.dst_stride[i] as u32;
        }
        p
    }
}

/// Copies `n` contiguous elements with the copy engine: no storage binding, so no size limit.
fn copy_elements(src: &Tensor, src_at: usize, dst: &Tensor, dst_at: usize, n: usize) {
    if n == 0 {
        return;
    }
    let size = src.dtype().size() as u64;
    let (_, so, _) = src.binding_window();
    let (_, d_o, _) = dst.binding_window();
    src.gpu().with_encoder(|e| {
        e.copy_buffer_to_buffer(src.buffer(), so + src_at as u64 * size, dst.buffer(), d_o + dst_at as u64 * size, n as u64 * size)
    });
}

/// Smallest side for which the tiled transpose beats the strided kernel: a thinner matrix
/// would leave most of each 32×32 tile empty.
const TILED_MIN_SIDE: usize = 16;

/// Runs one box copy from `src` into `dst` (both bound whole; pass `narrow0` views to split).
fn run_copy(op: &'static str, src: &Tensor, dst: &Tensor, copy: &Copy) -> Result<()> {
    let c = copy.simplified();
    let n = numel(&c.shape);
    if n == 0 {
        return Ok(());
    }
    let rank = c.shape.len();
    if rank == 0 || (rank == 1 && c.src_stride[0] == 1 && c.dst_stride[0] == 1) {
        copy_elements(src, c.src_base, dst, c.dst_base, n);
        return Ok(());
    }
    let g = src.gpu();
    let max = g.limits().max_compute_workgroups_per_dimension as usize;
    // Batched transpose: the contiguous axis of src is the second-last box dim, that of dst
    // the last one.
    if (rank == 2 || rank == 3) && c.src_stride[rank - 2] == 1 && c.dst_stride[rank - 1] == 1 {
        let (rows, cols) = (c.shape[rank - 2], c.shape[rank - 1]);
        let batches = if rank == 3 { c.shape[0] } else { 1 };
        let wg = [cols.div_ceil(32), rows.div_ceil(32), batches];
        if rows.min(cols) >= TILED_MIN_SIDE && wg.iter().all(|&w| w <= max) {
            let mut t = c.clone();
            if rank == 2 {
                t.shape.insert(0, 1);
                t.src_stride.insert(0, 0);
                t.dst_stride.insert(0, 0);
            }
            return g.dispatch(&KERNEL, "transpose_tiled", &t.params(), &[src, dst], wg.map(|w| w as u32));
        }
    }
    if rank > MAX_DIMS {
        return Err(Error::shape(op, format!("copy needs {rank} dims after merging, more than {MAX_DIMS}")));
    }
    let len = c.shape[rank - 1];
    if c.src_stride[rank - 1] == 1 && c.dst_stride[rank - 1] == 1 && len >= 4 {
        // Rows: the last dim becomes groups of 4, and its (unit) src stride slot carries
        // the row length.
        let mut p = c.params();
        p.shape[rank - 1] = len.div_ceil(4) as u32;
        p.src_stride[rank - 1] = len as u32;
        p.n = (n / len * len.div_ceil(4)) as u32;
        return g.dispatch(&KERNEL, "copy_rows", &p, &[src, dst], grid(g, p.n as u64, 256));
    }
    g.dispatch(&KERNEL, "copy_strided", &c.params(), &[src, dst], grid(g, n as u64, 256))
}

/// Splits the shared leading dim of `src` and `dst` so that each piece fits one binding, and
/// runs `copy` (whose box starts with that dim) on each pair of `narrow0` views. Ops whose
/// dim 0 is not shared (concat/slice along 0) reach `run_copy` whole instead: those become
/// buffer copies, which have no binding limit.
fn run_copy_batched(op: &'static str, src: &Tensor, dst: &Tensor, copy: &Copy) -> Result<()> {
    let batch = src.shape()[0];
    let chunks = batch_chunks(src.gpu(), op, batch, &[row_bytes(src), row_bytes(dst)])?;
    if chunks.len() == 1 {
        return run_copy(op, src, dst, copy);
    }
    for r in chunks {
        let mut c = copy.clone();
        c.shape[0] = r.len();
        run_copy(op, &src.narrow0(r.start, r.len())?, &dst.narrow0(r.start, r.len())?, &c)?;
    }
    Ok(())
}

/// Copies `small` into (`into_big` = true) or out of the window of `big` that starts at
/// `start` along `dim`; all other dims equal.
fn window_copy(op: &'static str, small: &Tensor, big: &Tensor, dim: usize, start: usize, into_big: bool) -> Result<()> {
    let big_stride = strides(big.shape());
    let copy = if into_big {
        Copy {
            shape: small.shape().to_vec(),
            src_stride: strides(small.shape()),
            src_base: 0,
            dst_stride: big_stride.clone(),
            dst_base: start * big_stride[dim],
        }
    } else {
        Copy {
            shape: small.shape().to_vec(),
            src_stride: big_stride.clone(),
            src_base: start * big_stride[dim],
            dst_stride: strides(small.shape()),
            dst_base: 0,
        }
    };
    let (src, dst) = if into_big { (small, big) } else { (big, small) };
    if dim == 0 {
        run_copy(op, src, dst, &copy)
    } else {
        run_copy_batched(op, src, dst, &copy)
    }
}

// ---- concat / slice -------------------------------------------------------------------

/// Joins tensors along `dim`; all other dims must agree.
pub fn concat(xs: &[&Tensor], dim: usize) -> Result<Tensor> {
    ensure_shape!(!xs.is_empty(), "concat", "no tensors to concatenate");
    let first = xs[0].shape();
    ensure_shape!(dim < first.len(), "concat", "dim {dim} of {:?}", first);
    let mut shape = first.to_vec();
    shape[dim] = 0;
    for x in xs {
        let s = x.shape();
        let same = s.len() == first.len() && (0..s.len()).all(|i| i == dim || s[i] == first[i]);
        ensure_shape!(same, "concat", "{:?} vs {:?}: only dim {dim} may differ", first, s);
        shape[dim] += s[dim];
    }
    let out = Tensor::empty(xs[0].gpu(), &shape)?;
    let mut at = 0;
    for x in xs {
        window_copy("concat", x, &out, dim, at, true)?;
        at += x.shape()[dim];
    }
    Ok(out)
}

/// Entries `start..start+len` of `dim`, as a new tensor.
pub fn slice(x: &Tensor, dim: usize, start: usize, len: usize) -> Result<Tensor> {
    let s = x.shape();
    ensure_shape!(dim < s.len(), "slice", "dim {dim} of {:?}", s);
    ensure_shape!(start + len <= s[dim], "slice", "{start}..{} of dim {dim} of {:?}", start + len, s);
    let mut shape = s.to_vec();
    shape[dim] = len;
    let out = Tensor::empty(x.gpu(), &shape)?;
    window_copy("slice", &out, x, dim, start, false)?;
    Ok(out)
}

/// Gradient of `slice`: `dy` written at `start` along `dim` of zeros of the input's `shape`.
pub fn slice_backward(dy: &Tensor, shape: &[usize], dim: usize, start: usize) -> Result<Tensor> {
    let s = dy.shape();
    let fits = dim < shape.len()
        && s.len() == shape.len()
        && start + s[dim] <= shape[dim]
        && (0..s.len()).all(|i| i == dim || s[i] == shape[i]);
    ensure_shape!(fits, "slice_backward", "dy {:?} at {start} along dim {dim} of {:?}", s, shape);
    let dx = Tensor::zeros(dy.gpu(), shape)?;
    window_copy("slice_backward", dy, &dx, dim, start, true)?;
    Ok(dx)
}

// ---- permute / channel shuffle --------------------------------------------------------

fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

/// Output dim i is input dim `perm[i]` (torch's `x.permute(perm)`), up to 6 dims.
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let s = x.shape();
    let mut seen = vec![false; s.len()];
    let valid = perm.len() == s.len() && perm.iter().all(|&p| p < s.len() && !std::mem::replace(&mut seen[p], true));
    ensure_shape!(valid, "permute", "{:?} is not a permutation of the dims of {:?}", perm, s);
    ensure_shape!(s.len() <= MAX_DIMS, "permute", "{:?} has more than {MAX_DIMS} dims", s);
    let shape: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    let out = Tensor::empty(x.gpu(), &shape)?;
    if out.numel() == 0 {
        return Ok(out);
    }
    let in_stride = strides(s);
    let copy = Copy {
        shape: shape.clone(),
        src_stride: perm.iter().map(|&p| in_stride[p]).collect(),
        src_base: 0,
        dst_stride: strides(&shape),
        dst_base: 0,
    };
    if perm.is_empty() {
        run_copy("permute", x, &out, &copy)?;
        return Ok(out);
    }
    if perm[0] == 0 {
        run_copy_batched("permute", x, &out, &copy)?;
        return Ok(out);
    }
    // Dim 0 moves: split the output along its dim 0 and the input along its own, and copy
    // each (output rows × input rows) block between the two views.
    let g = x.gpu();
    let q = inverse(perm)[0];
    let out_chunks = batch_chunks(g, "permute", shape[0], &[row_bytes(&out)])?;
    let in_chunks = batch_chunks(g, "permute", s[0], &[row_bytes(x)])?;
    if out_chunks.len() == 1 && in_chunks.len() == 1 {
        run_copy("permute", x, &out, &copy)?;
        return Ok(out);
    }
    for oc in &out_chunks {
        let ov = out.narrow0(oc.start, oc.len())?;
        for ic in &in_chunks {
            let mut c = copy.clone();
            c.shape[0] = oc.len();
            c.shape[q] = ic.len();
            c.src_base = oc.start * copy.src_stride[0];
            c.dst_base = ic.start * copy.dst_stride[q];
            run_copy("permute", &x.narrow0(ic.start, ic.len())?, &ov, &c)?;
        }
    }
    Ok(out)
}

fn check_4d(op: &'static str, x: &Tensor) -> Result<()> {
    ensure_shape!(x.dims() == 4, op, "expects [B, C, H, W], got {:?}", x.shape());
    Ok(())
}

/// ShuffleNet's channel shuffle: [B, g, C/g, H, W] → [B, C/g, g, H, W] → [B, C, H, W].
/// Its inverse (the backward) is the shuffle with C/g groups.
pub fn channel_shuffle(x: &Tensor, groups: usize) -> Result<Tensor> {
    check_4d("channel_shuffle", x)?;
    let &[b, c, h, w] = x.shape() else { unreachable!() };
    ensure_shape!(groups > 0 && c % groups == 0, "channel_shuffle", "{c} channels of {:?} do not split into {groups} groups", x.shape());
    let y = permute(&x.reshape(&[b, groups, c / groups, h * w])?, &[0, 2, 1, 3])?;
    y.reshape(&[b, c, h, w])
}

// ---- roll -----------------------------------------------------------------------------

/// torch.roll(x, shift, 0): row i goes to row (i + shift) mod B. Used to pair images with
/// the caption of another sample (mismatched pairs).
pub fn roll0(x: &Tensor, shift: usize) -> Result<Tensor> {
    ensure_shape!(x.dims() >= 1, "roll0", "needs a dim 0, got {:?}", x.shape());
    let out = Tensor::empty(x.gpu(), x.shape())?;
    let b = x.shape()[0];
    if b == 0 {
        return Ok(out);
    }
    let row = numel(&x.shape()[1..]);
    let s = shift % b;
    // Whole rows are contiguous: two copy-engine copies, never bound, never split.
    copy_elements(x, 0, &out, s * row, (b - s) * row);
    copy_elements(x, (b - s) * row, &out, 0, s * row);
    Ok(out)
}

// ---- nearest resize -------------------------------------------------------------------

/// PyTorch's scale for nearest with an output size: in/out rounded to f32 once.
fn nearest_scale(n_in: usize, n_out: usize) -> f32 {
    n_in as f32 / n_out as f32
}

/// One thread per element of `dst`. Forward: src = x, dst = y; backward: src = dy, dst = dx.
fn resize_dispatch(entry: &str, src: &Tensor, dst: &Tensor, (in_h, in_w): (usize, usize), (out_h, out_w): (usize, usize)) -> Result<()> {
    // Planes are independent: view both as [planes, h, w] and split the planes.
    let planes = src.shape()[0] * src.shape()[1];
    let src = src.reshape(&[planes, src.shape()[2], src.shape()[3]])?;
    let dst = dst.reshape(&[planes, dst.shape()[2], dst.shape()[3]])?;
    let g = src.gpu();
    for r in batch_chunks(g, "resize_nearest", planes, &[row_bytes(&src), row_bytes(&dst)])? {
        let (s, d) = (src.narrow0(r.start, r.len())?, dst.narrow0(r.start, r.len())?);
        let p = ResizeParams {
            n: d.numel() as u32,
            in_h: in_h as u32,
            in_w: in_w as u32,
            out_h: out_h as u32,
            out_w: out_w as u32,
            scale_h: nearest_scale(in_h, out_h),
            scale_w: nearest_scale(in_w, out_w),
            _pad: 0,
        };
        g.dispatch(&RESIZE, entry, &p, &[&s, &d], grid(g, d.numel() as u64, 256))?;
    }
    Ok(())
}

/// `F.interpolate(x, size=(out_h, out_w), mode='nearest')` on [B, C, H, W], up or down.
pub fn resize_nearest(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    check_4d("resize_nearest", x)?;
    let &[b, c, h, w] = x.shape() else { unreachable!() };
    ensure_shape!(h > 0 && w > 0 && out_h > 0 && out_w > 0, "resize_nearest", "{:?} to {out_h}×{out_w}: sizes must be positive", x.shape());
    let out = Tensor::empty(x.gpu(), &[b, c, out_h, out_w])?;
    if out.numel() > 0 {
        resize_dispatch("resize_forward", x, &out, (h, w), (out_h, out_w))?;
    }
    Ok(out)
}

/// Gradient of `resize_nearest` for an input of spatial size in_h × in_w: every input pixel
/// gathers the gradients of the output pixels that copied it.
pub fn resize_nearest_backward(dy: &Tensor, in_h: usize, in_w: usize) -> Result<Tensor> {
    check_4d("resize_nearest_backward", dy)?;
    let &[b, c, out_h, out_w] = dy.shape() else { unreachable!() };
    ensure_shape!(in_h > 0 && in_w > 0 && out_h > 0 && out_w > 0, "resize_nearest_backward", "dy {:?} to {in_h}×{in_w}: sizes must be positive", dy.shape());
    let dx = Tensor::empty(dy.gpu(), &[b, c, in_h, in_w])?;
    if dx.numel() > 0 {
        // One thread per input pixel: the grid covers dx, reading dy.
        resize_dispatch("resize_backward", dy, &dx, (in_h, in_w), (out_h, out_w))?;
    }
    Ok(dx)
}

// ---- per-sample translation ---------------------------------------------------------------

fn translate_dispatch(x: &Tensor, shifts: &Tensor, sign: i32) -> Result<Tensor> {
    check_4d("translate", x)?;
    let &[b, c, h, w] = x.shape() else { unreachable!() };
    ensure_shape!(shifts.shape() == [b, 2], "translate", "shifts {:?} for images {:?}, expected [{b}, 2]", shifts.shape(), x.shape());
    let out = Tensor::empty(x.gpu(), x.shape())?;
    let g = x.gpu();
    for r in batch_chunks(g, "translate", b, &[row_bytes(x), row_bytes(shifts)])? {
        let (s, sh, d) = (x.narrow0(r.start, r.len())?, shifts.narrow0(r.start, r.len())?, out.narrow0(r.start, r.len())?);
        if d.numel() == 0 {
            continue;
        }
        let p = TranslateParams { n: d.numel() as u32, planes_per_sample: c as u32, h: h as u32, w: w as u32, sign, _pad: [0; 3] };
        g.dispatch(&TRANSLATE, "translate", &p, &[&sh, &s, &d], grid(g, d.numel() as u64, 256))?;
    }
    Ok(out)
}

/// Moves image b of x [B, C, H, W] down by shifts[b, 0] and right by shifts[b, 1] pixels
/// (whole numbers held as f32, either sign), filling with 0: DiffAugment's translation,
/// which `ratlip train --augment-shift` puts in front of CLIP.
pub fn translate(x: &Tensor, shifts: &Tensor) -> Result<Tensor> {
    translate_dispatch(x, shifts, 1)
}

/// Gradient of `translate`: the translation is a partial permutation, so its adjoint is the
/// opposite translation with the same zero fill.
pub fn translate_backward(dy: &Tensor, shifts: &Tensor) -> Result<Tensor> {
    translate_dispatch(dy, shifts, -1)
}

// ---- on the tape ----------------------------------------------------------------------

impl Tape {
    pub fn concat(&self, xs: &[&Var], dim: usize) -> Result<Var> {
        let values: Vec<&Tensor> = xs.iter().map(|v| v.value()).collect();
        let y = concat(&values, dim)?;
        let sizes: Vec<usize> = xs.iter().map(|v| v.shape()[dim]).collect();
        Ok(self.record1("concat", xs, y, move |c| {
            let g = c.grad(0)?;
            let mut at = 0;
            let mut out = Vec::with_capacity(sizes.len());
            for (i, &n) in sizes.iter().enumerate() {
                out.push(if c.needs[i] { Some(slice(&g, dim, at, n)?) } else { None });
                at += n;
            }
            Ok(out)
        }))
    }

    pub fn slice(&self, x: &Var, dim: usize, start: usize, len: usize) -> Result<Var> {
        let y = slice(x.value(), dim, start, len)?;
        let shape = x.shape().to_vec();
        Ok(self.record1("slice", &[x], y, move |c| Ok(vec![Some(slice_backward(&c.grad(0)?, &shape, dim, start)?)])))
    }

    pub fn permute(&self, x: &Var, perm: &[usize]) -> Result<Var> {
        let y = permute(x.value(), perm)?;
        let inv = inverse(perm);
        Ok(self.record1("permute", &[x], y, move |c| Ok(vec![Some(permute(&c.grad(0)?, &inv)?)])))
    }

    pub fn resize_nearest(&self, x: &Var, out_h: usize, out_w: usize) -> Result<Var> {
        let y = resize_nearest(x.value(), out_h, out_w)?;
        let (h, w) = (x.shape()[2], x.shape()[3]);
        Ok(self.record1("resize_nearest", &[x], y, move |c| Ok(vec![Some(resize_nearest_backward(&c.grad(0)?, h, w)?)])))
    }

    pub fn channel_shuffle(&self, x: &Var, groups: usize) -> Result<Var> {
        let y = channel_shuffle(x.value(), groups)?;
        let inverse_groups = x.shape()[1] / groups;
        Ok(self.record1("channel_shuffle", &[x], y, move |c| Ok(vec![Some(channel_shuffle(&c.grad(0)?, inverse_groups)?)])))
    }

    pub fn translate(&self, x: &Var, shifts: &Tensor) -> Result<Var> {
        let y = translate(x.value(), shifts)?;
        let shifts = shifts.clone();
        Ok(self.record1("translate", &[x], y, move |c| Ok(vec![Some(translate_backward(&c.grad(0)?, &shifts)?)])))
    }

    pub fn roll0(&self, x: &Var, shift: usize) -> Result<Var> {
        let y = roll0(x.value(), shift)?;
        let b = x.shape()[0].max(1);
        let back = (b - shift % b) % b;
        Ok(self.record1("roll0", &[x], y, move |c| Ok(vec![Some(roll0(&c.grad(0)?, back)?)])))
    }
}

// ---- CPU reference --------------------------------------------------------------------

/// Plain loops over multi-indices, written independently of the copy descriptions above.
pub mod cpu {
    fn strides(shape: &[usize]) -> Vec<usize> {
        let mut s = vec![1; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * shape[i + 1];
        }
        s
    }

    /// Multi-index of flat position `i` in `shape`.
    fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
        let mut idx = vec![0; shape.len()];
        for d in (0..shape.len()).rev() {
            idx[d] = i % shape[d];
            i /= shape[d];
        }
        idx
    }

    fn ravel(idx: &[usize], shape: &[usize]) -> usize {
        idx.iter().zip(strides(shape)).map(|(i, s)| i * s).sum()
    }

    pub fn concat(xs: &[(&[f64], &[usize])], dim: usize) -> Vec<f64> {
        let mut shape = xs[0].1.to_vec();
        shape[dim] = xs.iter().map(|x| x.1[dim]).sum();
        let mut out = vec![0.0; shape.iter().product()];
        let mut at = 0;
        for (x, s) in xs {
            for (i, &v) in x.iter().enumerate() {
                let mut idx = unravel(i, s);
                idx[dim] += at;
                out[ravel(&idx, &shape)] = v;
            }
            at += s[dim];
        }
        out
    }

    pub fn slice(x: &[f64], shape: &[usize], dim: usize, start: usize, len: usize) -> Vec<f64> {
        let mut out_shape = shape.to_vec();
        out_shape[dim] = len;
        (0..out_shape.iter().product())
            .map(|i| {
                let mut idx = unravel(i, &out_shape);
                idx[dim] += start;
                x[ravel(&idx, shape)]
            })
            .collect()
    }

    pub fn permute(x: &[f64], shape: &[usize], perm: &[usize]) -> Vec<f64> {
        let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        (0..x.len())
            .map(|i| {
                let o = unravel(i, &out_shape);
                let mut idx = vec![0; shape.len()];
                for (d, &p) in perm.iter().enumerate() {
                    idx[p] = o[d];
                }
                x[ravel(&idx, shape)]
            })
            .collect()
    }

    /// PyTorch's nearest source index: min(floor(dst · (in/out in f32)), in − 1), in f32.
    pub fn nearest_source(dst: usize, n_in: usize, n_out: usize) -> usize {
        let scale = n_in as f32 / n_out as f32;
        ((dst as f32 * scale).floor() as usize).min(n_in - 1)
    }

    pub fn resize_nearest(x: &[f64], shape: &[usize], out_h: usize, out_w: usize) -> Vec<f64> {
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3]);
        let mut out = Vec::with_capacity(planes * out_h * out_w);
        for p in 0..planes {
            for oy in 0..out_h {
                let sy = nearest_source(oy, h, out_h);
                for ox in 0..out_w {
                    out.push(x[(p * h + sy) * w + nearest_source(ox, w, out_w)]);
                }
            }
        }
        out
    }

    /// out[b, j·g + i] = x[b, i·(C/g) + j].
    pub fn channel_shuffle(x: &[f64], shape: &[usize], groups: usize) -> Vec<f64> {
        let (b, c, hw) = (shape[0], shape[1], shape[2] * shape[3]);
        let per = c / groups;
        let mut out = vec![0.0; x.len()];
        for n in 0..b {
            for i in 0..groups {
                for j in 0..per {
                    let (src, dst) = ((n * c + i * per + j) * hw, (n * c + j * groups + i) * hw);
                    out[dst..dst + hw].copy_from_slice(&x[src..src + hw]);
                }
            }
        }
        out
    }

    pub fn roll0(x: &[f64], shape: &[usize], shift: usize) -> Vec<f64> {
        let b = shape[0];
        let row: usize = shape[1..].iter().product();
        let mut out = vec![0.0; x.len()];
        for i in 0..b {
            let j = (i + shift) % b;
            out[j * row..(j + 1) * row].copy_from_slice(&x[i * row..(i + 1) * row]);
        }
        out
    }

    /// Image b moved by (shifts[b].0 rows, shifts[b].1 columns), zero fill.
    pub fn translate(x: &[f64], shape: &[usize], shifts: &[(i64, i64)]) -> Vec<f64> {
        let (b, c, h, w) = (shape[0], shape[1], shape[2] as i64, shape[3] as i64);
        let mut out = vec![0.0; x.len()];
        for n in 0..b {
            let (dy, dx) = shifts[n];
            for ch in 0..c {
                let plane = (n * c + ch) * (h * w) as usize;
                for y in 0..h {
                    for xx in 0..w {
                        let (sy, sx) = (y - dy, xx - dx);
                        if (0..h).contains(&sy) && (0..w).contains(&sx) {
                            out[plane + (y * w + xx) as usize] = x[plane + (sy * w + sx) as usize];
                        }
                    }
                }
            }
        }
        out
    }
}
