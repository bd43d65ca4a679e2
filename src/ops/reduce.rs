//! Broadcasting arithmetic, reductions and the Adam update (shaders/broadcast.wgsl,
//! shaders/reduce.wgsl, shaders/adam.wgsl).
//!
//! These are the glue of the model: the per-channel affine `gamma[B,C,1,1] ⊙ x[B,C,H,W] +
//! beta` of every fusion block, biases, the sentence embedding tiled over 7×7 in NetC, the
//! global mean pools of shuffle attention, the loss means, and the optimizer. Broadcasting
//! and reduction are each other's backward: the gradient of a broadcast operand is the
//! output gradient summed back to the operand's shape, and the gradient of a sum is the
//! output gradient broadcast back to the input's shape.
//!
//! Tensors larger than one storage binding: every op here runs in pieces. Adam splits its
//! flat tensors with `batch_chunks`. Broadcast ops split the first (collapsed) dim and
//! reductions split their flat input and output; both bind windows that start at the
//! aligned element at or below the piece (`window`) and tell the kernel where the piece
//! starts, so a piece may begin at any row, not only at multiples of the alignment — that
//! also splits a reduction whose single output needs more than a binding of input (a sum
//! over everything). Not split, returning `BindingTooLarge`: a broadcast whose first
//! collapsed dim holds more than a binding per index (e.g. [2, N] + [1, N] with N·4 bytes
//! over the limit) or whose operand broadcast along that dim is itself larger than a
//! binding, and a reduction in which two rows of the reduced axis (2·inner·4 bytes for
//! [outer, red, inner]) do not fit one binding.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Tape, Var};
use crate::ensure_shape;
use crate::error::{Error, Result};
use crate::gpu::{grid, Gpu, Kernel};
use crate::kernel;
use crate::ops::batch_chunks;
use crate::tensor::Tensor;

static BROADCAST: Kernel = kernel!("broadcast");
static REDUCE: Kernel = kernel!("reduce");
static ADAM: Kernel = kernel!("adam");

/// Most dims a broadcast kernel indexes after merging dims that broadcast alike.
const MAX_DIMS: usize = 6;
/// Threads per workgroup of every kernel here.
const WG: usize = 256;
/// Elements one reduction lane adds serially before its partial sum joins a tree: bounds
/// both the time one workgroup takes and the f32 rounding of long sums.
const PER_LANE: usize = 128;

/// Element-wise arithmetic with broadcasting; the numbers match `op` in broadcast.wgsl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    fn code(self) -> u32 {
        match self {
            BinaryOp::Add => 0,
            BinaryOp::Sub => 1,
            BinaryOp::Mul => 2,
            BinaryOp::Div => 3,
        }
    }
}

/// PyTorch's Adam hyper-parameters (no weight decay, no amsgrad).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

/// The NumPy broadcast of two shapes (dims aligned on the right; a dim of 1 stretches),
/// or `None` when they are incompatible.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() >= n { s[i + s.len() - n] } else { 1 };
    (0..n)
        .map(|i| {
            let (x, y) = (at(a, i), at(b, i));
            if x == y || y == 1 {
                Some(x)
            } else if x == 1 {
                Some(y)
            } else {
                None
            }
        })
        .collect()
}

// ---- broadcasting -----------------------------------------------------------------------

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct BroadcastParams {
    n: u32,
    ndim: u32,
    op: u32,
    alpha: f32,
    base: [u32; 4],
    shape: [u32; 8],
    sa: [u32; 8],
    sb: [u32; 8],
}

/// An output shape with its operands, with adjacent dims merged wherever every operand
/// either runs along both or is broadcast along both, and dims of 1 dropped. The kernel's
/// index arithmetic is then as short as the broadcast pattern allows ([B,C,1,1] against
/// [B,C,H,W] is two dims), and dim 0 is the one we split large tensors along.
struct Layout {
    /// Collapsed output dims, outermost first; never empty.
    dims: Vec<usize>,
    /// `varies[k][d]`: operand k runs along collapsed dim d (otherwise it is broadcast).
    varies: Vec<Vec<bool>>,
}

impl Layout {
    fn new(op: &'static str, out: &[usize], operands: &[&[usize]]) -> Result<Layout> {
        let n = out.len();
        let mut dims: Vec<usize> = Vec::new();
        let mut varies: Vec<Vec<bool>> = vec![Vec::new(); operands.len()];
        for (d, &len) in out.iter().enumerate() {
            if len == 1 {
                continue;
            }
            let status: Vec<bool> =
                operands.iter().map(|s| d + s.len() >= n && s[d + s.len() - n] == len).collect();
            let same = !dims.is_empty() && varies.iter().zip(&status).all(|(v, &s)| *v.last().unwrap() == s);
            if same {
                *dims.last_mut().unwrap() *= len;
            } else {
                dims.push(len);
                for (v, s) in varies.iter_mut().zip(status) {
                    v.push(s);
                }
            }
        }
        if dims.is_empty() {
            dims.push(1);
            for v in varies.iter_mut() {
                v.push(true);
            }
        }
        ensure_shape!(
            dims.len() <= MAX_DIMS,
            op,
            "{:?} broadcast from {:?} needs {} index dims; at most {MAX_DIMS} are supported",
            out,
            operands,
            dims.len()
        );
        Ok(Layout { dims, varies })
    }

    /// Element strides of operand k along the collapsed dims (0 where it is broadcast).
    fn strides(&self, k: usize) -> [u32; 8] {
        let mut s = [0u32; 8];
        let mut acc = 1usize;
        for d in (0..self.dims.len()).rev() {
            if self.varies[k][d] {
                s[d] = acc as u32;
                acc *= self.dims[d];
            }
        }
        s
    }
}

/// Runs one broadcast.wgsl entry over the output, in pieces of whole rows of collapsed
/// dim 0 when the tensors outgrow a binding (any row count: each piece binds aligned
/// windows and passes where its data starts). Binding order: operands (a, b), then `g`
/// (output-shaped, for the gradient terms), then `out`.
#[allow(clippy::too_many_arguments)]
fn run_broadcast(
    entry: &str,
    name: &'static str,
    layout: &Layout,
    operands: &[&Tensor],
    g: Option<&Tensor>,
    out: &Tensor,
    op: u32,
    alpha: f32,
) -> Result<()> {
    if out.numel() == 0 {
        return Ok(());
    }
    let gpu = out.gpu();
    let d0 = layout.dims[0];
    let row = out.numel() / d0;
    // (tensor, elements per row of dim 0, or None when it is bound whole).
    let mut tensors: Vec<(&Tensor, Option<usize>)> = Vec::new();
    for (k, t) in operands.iter().enumerate() {
        tensors.push((t, (layout.varies[k][0] && d0 > 1).then(|| t.numel() / d0)));
    }
    if let Some(g) = g {
        tensors.push((g, Some(row)));
    }
    tensors.push((out, Some(row)));
    let mut params = BroadcastParams {
        n: 0,
        ndim: layout.dims.len() as u32,
        op,
        alpha,
        base: [0; 4],
        shape: [1; 8],
        sa: layout.strides(0),
        sb: if operands.len() > 1 { layout.strides(1) } else { [0; 8] },
    };
    for (d, &len) in layout.dims.iter().enumerate() {
        params.shape[d] = len as u32;
    }
    let limit = gpu.max_binding_bytes();
    let lim = ((limit / 4) as usize).saturating_sub(align_elems(gpu));
    let widest = tensors.iter().filter_map(|t| t.1).max().unwrap_or(1);
    let per = lim / widest;
    if per == 0 {
        return Err(Error::BindingTooLarge {
            what: format!("one index of the first dim of {name} (collapsed {:?})", layout.dims),
            shape: out.shape().to_vec(),
            bytes: (widest * 4) as u64,
            limit,
        });
    }
    // Slot of each tensor in `base`: a, b, then g, then out (always the last).
    let slots: Vec<usize> = (0..tensors.len()).map(|i| if i + 1 == tensors.len() { 3 } else { i }).collect();
    for r0 in (0..d0).step_by(per) {
        let len = per.min(d0 - r0);
        let mut views = Vec::with_capacity(tensors.len());
        for (&(t, rowlen), &slot) in tensors.iter().zip(&slots) {
            let (view, base) = match rowlen {
                Some(rl) => window(t, r0 * rl, len * rl)?,
                None => (t.clone(), 0),
            };
            params.base[slot] = base;
            views.push(view);
        }
        let refs: Vec<&Tensor> = views.iter().collect();
        params.shape[0] = len as u32;
        params.n = (len * row) as u32;
        gpu.dispatch(&BROADCAST, entry, &params, &refs, grid(gpu, (len * row) as u64, WG as u64))?;
    }
    Ok(())
}

/// a ∘ b with NumPy/PyTorch broadcasting; the output has the broadcast shape.
pub fn broadcast_binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    let name = "broadcast_binary";
    let Some(shape) = broadcast_shape(a.shape(), b.shape()) else {
        return Err(Error::shape(name, format!("{op:?}: {:?} and {:?} do not broadcast", a.shape(), b.shape())));
    };
    let layout = Layout::new(name, &shape, &[a.shape(), b.shape()])?;
    let out = Tensor::empty(a.gpu(), &shape)?;
    run_broadcast("broadcast_binary", name, &layout, &[a, b], None, &out, op.code(), 0.0)?;
    Ok(out)
}

/// x broadcast (copied) to `shape`, e.g. the sentence embedding [B,512,1,1] tiled to
/// [B,512,7,7] before NetC's concat.
pub fn expand(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    expand_scaled(x, shape, 1.0, "expand")
}

/// alpha · x broadcast to `shape`: the backward of sum (alpha 1) and mean (1/count).
fn expand_scaled(x: &Tensor, shape: &[usize], alpha: f32, name: &'static str) -> Result<Tensor> {
    ensure_shape!(
        broadcast_shape(x.shape(), shape).as_deref() == Some(shape),
        name,
        "{:?} cannot be broadcast to {:?}",
        x.shape(),
        shape
    );
    let layout = Layout::new(name, shape, &[x.shape()])?;
    let out = Tensor::empty(x.gpu(), shape)?;
    run_broadcast("broadcast_copy", name, &layout, &[x], None, &out, 0, alpha)?;
    Ok(out)
}

/// Gradients of `a ∘ b` for the operands flagged in `needs`, each summed back to its
/// operand's shape. `dy` has the broadcast shape.
pub fn broadcast_binary_backward(
    a: &Tensor,
    b: &Tensor,
    dy: &Tensor,
    op: BinaryOp,
    needs: [bool; 2],
) -> Result<[Option<Tensor>; 2]> {
    let name = "broadcast_binary_backward";
    let shape = broadcast_shape(a.shape(), b.shape());
    ensure_shape!(
        shape.as_deref() == Some(dy.shape()),
        name,
        "a {:?} ∘ b {:?} does not give dy {:?}",
        a.shape(),
        b.shape(),
        dy.shape()
    );
    if matches!(op, BinaryOp::Add | BinaryOp::Sub) {
        return pass_through_grads(dy, a.shape(), b.shape(), op, needs);
    }
    let layout = Layout::new(name, dy.shape(), &[a.shape(), b.shape()])?;
    let mut grads = [None, None];
    for (k, target) in [a.shape(), b.shape()].into_iter().enumerate() {
        if !needs[k] {
            continue;
        }
        let other = if k == 0 { b } else { a };
        if op == BinaryOp::Mul && other.shape() == dy.shape() && target != dy.shape() {
            // gamma of gamma ⊙ x: Σ dy ⊙ x over the broadcast dims in one pass, without an
            // output-sized temporary.
            grads[k] = Some(sum_to_shape_of(dy, Some(other), target, 1.0, name)?);
            continue;
        }
        let term = Tensor::empty(dy.gpu(), dy.shape())?;
        run_broadcast("broadcast_grad", name, &layout, &[a, b], Some(dy), &term, op.code() | (k as u32) << 2, 0.0)?;
        grads[k] = Some(if target == dy.shape() { term } else { sum_to_shape_scaled(&term, target, 1.0, name)? });
    }
    Ok(grads)
}

/// Add and sub: each operand's gradient is ±dy summed to its shape (dy itself when the
/// shapes already agree, as the same-shape `add` does).
fn pass_through_grads(dy: &Tensor, a: &[usize], b: &[usize], op: BinaryOp, needs: [bool; 2]) -> Result<[Option<Tensor>; 2]> {
    let name = "broadcast_binary_backward";
    let mut grads = [None, None];
    for (k, target) in [a, b].into_iter().enumerate() {
        if !needs[k] {
            continue;
        }
        let sign = if k == 1 && op == BinaryOp::Sub { -1.0 } else { 1.0 };
        grads[k] = Some(if target == dy.shape() && sign == 1.0 {
            dy.clone()
        } else {
            sum_to_shape_scaled(dy, target, sign, name)?
        });
    }
    Ok(grads)
}

// ---- reductions -------------------------------------------------------------------------

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ReduceParams {
    outer: u32,
    red: u32,
    inner: u32,
    tpo: u32,
    chunk: u32,
    nchunks: u32,
    in_base: u32,
    out_base: u32,
    scale: f32,
    col: u32,
    y_base: u32,
    /// 1: sum the products x ⊙ y (a product's gradient summed in the same pass).
    dot: u32,
}

/// Storage offset alignment in elements.
fn align_elems(gpu: &Gpu) -> usize {
    (gpu.limits().min_storage_buffer_offset_alignment as usize / 4).max(1)
}

/// Elements `start..start+len` of `t` (flat) as a bindable view that begins at the aligned
/// element at or below `start`, and the distance from there to `start`. Lets a reduction
/// split anywhere, not only at multiples of the alignment.
fn window(t: &Tensor, start: usize, len: usize) -> Result<(Tensor, u32)> {
    let a = align_elems(t.gpu());
    let abs = (t.binding_window().1 / 4) as usize;
    let back = (abs + start) % a;
    // A tensor that itself starts unaligned cannot be widened below its start; dispatch
    // then reports the misalignment.
    let back = if back <= start { back } else { 0 };
    let flat = t.reshape(&[t.numel()])?;
    Ok((flat.narrow0(start - back, len + back)?, back as u32))
}

/// One pass over bound windows: dst[out_base + o·inner + i] = scale · Σ_r x[in_base +
/// (o·red + r)·inner + i] (times the same element of `y` when given, a window with its
/// own base). Long reductions are cut into chunks of `tpo·PER_LANE` elements whose partial
/// sums are reduced by a second pass.
#[allow(clippy::too_many_arguments)]
fn reduce_window(
    x: &Tensor,
    in_base: u32,
    y: Option<(&Tensor, u32)>,
    outer: usize,
    red: usize,
    inner: usize,
    dst: &Tensor,
    out_base: u32,
    scale: f32,
) -> Result<()> {
    let gpu = x.gpu();
    let n_out = outer * inner;
    let col = inner > 1;
    let tpo = if col {
        // Enough adjacent outputs per workgroup for contiguous reads, the rest as lanes.
        let want = red.div_ceil(16).next_power_of_two().min(WG);
        let opw = n_out.next_power_of_two().min((WG / want).max(32)).min(WG);
        WG / opw
    } else {
        red.div_ceil(32).next_power_of_two().min(WG)
    };
    let opw = WG / tpo;
    let chunk = tpo * PER_LANE;
    let nchunks = red.div_ceil(chunk);
    let mut params = ReduceParams {
        outer: outer as u32,
        red: red as u32,
        inner: inner as u32,
        tpo: tpo as u32,
        chunk: red as u32,
        nchunks: 1,
        in_base,
        out_base,
        scale,
        col: col as u32,
        y_base: y.map_or(0, |y| y.1),
        dot: y.is_some() as u32,
    };
    // Without a factor, x is bound in y's place too (read-only both times) and not read.
    let yt = y.map_or(x, |y| y.0);
    if nchunks == 1 {
        let groups = n_out.div_ceil(opw) as u64;
        return gpu.dispatch(&REDUCE, "reduce_axis", &params, &[x, yt, dst], grid(gpu, groups, 1));
    }
    let partial = Tensor::empty(gpu, &[nchunks, n_out])?;
    params.chunk = chunk as u32;
    params.nchunks = nchunks as u32;
    params.out_base = 0;
    params.scale = 1.0;
    let groups = (n_out.div_ceil(opw) * nchunks) as u64;
    gpu.dispatch(&REDUCE, "reduce_axis", &params, &[x, yt, &partial], grid(gpu, groups, 1))?;
    reduce_window(&partial, 0, None, 1, nchunks, n_out, dst, out_base, scale)
}

/// x (⊙ y, same size, when given) viewed as [outer, red, inner] summed over the middle
/// axis and scaled: [outer·inner]. Runs in binding-sized windows: whole outer items when
/// one fits, else row ranges of each item whose partial sums are reduced again.
#[allow(clippy::too_many_arguments)]
fn reduce_axis(
    x: &Tensor,
    y: Option<&Tensor>,
    outer: usize,
    red: usize,
    inner: usize,
    scale: f32,
    name: &'static str,
) -> Result<Tensor> {
    let yw = |start: usize, len: usize| y.map(|y| window(y, start, len)).transpose();
    let gpu = x.gpu();
    let dst = Tensor::empty(gpu, &[outer * inner])?;
    let limit = gpu.max_binding_bytes();
    let lim = ((limit / 4) as usize).saturating_sub(align_elems(gpu));
    let item = red * inner;
    if item <= lim {
        let per = lim / item;
        for o0 in (0..outer).step_by(per) {
            let o1 = (o0 + per).min(outer);
            let (xw, xb) = window(x, o0 * item, (o1 - o0) * item)?;
            let yv = yw(o0 * item, (o1 - o0) * item)?;
            let (dw, db) = window(&dst, o0 * inner, (o1 - o0) * inner)?;
            reduce_window(&xw, xb, yv.as_ref().map(|(t, b)| (t, *b)), o1 - o0, red, inner, &dw, db, scale)?;
        }
        return Ok(dst);
    }
    let rows = lim / inner;
    if rows < 2 {
        return Err(Error::BindingTooLarge {
            what: format!("one row of the reduced axis of {name}"),
            shape: vec![outer, red, inner],
            bytes: (inner * 4) as u64,
            limit,
        });
    }
    let nk = red.div_ceil(rows);
    let partial = Tensor::empty(gpu, &[outer * nk * inner])?;
    for o in 0..outer {
        for k in 0..nk {
            let (r0, r1) = (k * rows, ((k + 1) * rows).min(red));
            let (xw, xb) = window(x, (o * red + r0) * inner, (r1 - r0) * inner)?;
            let yv = yw((o * red + r0) * inner, (r1 - r0) * inner)?;
            let (pw, pb) = window(&partial, (o * nk + k) * inner, inner)?;
            reduce_window(&xw, xb, yv.as_ref().map(|(t, b)| (t, *b)), 1, r1 - r0, inner, &pw, pb, 1.0)?;
        }
    }
    reduce_axis(&partial, None, outer, nk, inner, scale, name)
}

/// scale · Σ of x (⊙ y, same shape, when given) over the dims flagged in `mask`, flat in
/// the order of the kept dims. Adjacent reduced dims are merged, then the largest reduced
/// group goes first (the data shrinks most), one [outer, red, inner] pass per group; the
/// product is taken in the first pass and `scale` joins the last.
fn reduce_mask(x: &Tensor, mut y: Option<&Tensor>, mask: &[bool], scale: f32, name: &'static str) -> Result<Tensor> {
    let gpu = x.gpu();
    let kept: usize = x.shape().iter().zip(mask).filter(|(_, &m)| !m).map(|(&n, _)| n).product();
    if x.numel() == 0 {
        return if kept == 0 { Tensor::empty(gpu, &[0]) } else { Tensor::zeros(gpu, &[kept]) };
    }
    let mut groups: Vec<(usize, bool)> = Vec::new();
    for (&n, &m) in x.shape().iter().zip(mask) {
        push_group(&mut groups, n, m);
    }
    let mut cur = x.reshape(&[x.numel()])?;
    if !groups.iter().any(|g| g.1) {
        // Nothing to sum: still a fresh tensor (scaled copy), as every op's output is.
        return reduce_axis(&cur, y, x.numel(), 1, 1, scale, name);
    }
    loop {
        let j = (0..groups.len()).filter(|&j| groups[j].1).max_by_key(|&j| groups[j].0).unwrap();
        let outer: usize = groups[..j].iter().map(|g| g.0).product();
        let inner: usize = groups[j + 1..].iter().map(|g| g.0).product();
        let red = groups[j].0;
        let rest: Vec<(usize, bool)> = groups.iter().enumerate().filter(|&(i, _)| i != j).map(|(_, &g)| g).collect();
        groups.clear();
        for (n, m) in rest {
            push_group(&mut groups, n, m);
        }
        let last = !groups.iter().any(|g| g.1);
        cur = reduce_axis(&cur, y.take(), outer, red, inner, if last { scale } else { 1.0 }, name)?;
        if last {
            return Ok(cur);
        }
    }
}

/// Appends a dim to a list of (length, reduced) groups, merging it into the last group
/// when both are reduced or both kept; dims of 1 change nothing and are dropped.
fn push_group(groups: &mut Vec<(usize, bool)>, n: usize, reduced: bool) {
    if n == 1 {
        return;
    }
    match groups.last_mut() {
        Some(g) if g.1 == reduced => g.0 *= n,
        _ => groups.push((n, reduced)),
    }
}

/// Validates `axes` and returns the per-dim mask.
fn axes_mask(shape: &[usize], axes: &[usize], name: &'static str) -> Result<Vec<bool>> {
    let mut mask = vec![false; shape.len()];
    for &a in axes {
        ensure_shape!(a < shape.len(), name, "axis {a} of {:?} (axes {:?})", shape, axes);
        ensure_shape!(!mask[a], name, "axis {a} repeated in {:?} for {:?}", axes, shape);
        mask[a] = true;
    }
    Ok(mask)
}

fn reduced_shape(shape: &[usize], mask: &[bool], keepdim: bool) -> Vec<usize> {
    shape
        .iter()
        .zip(mask)
        .filter_map(|(&n, &m)| if !m { Some(n) } else if keepdim { Some(1) } else { None })
        .collect()
}

fn reduce_axes(x: &Tensor, axes: &[usize], keepdim: bool, mean: bool, name: &'static str) -> Result<Tensor> {
    let mask = axes_mask(x.shape(), axes, name)?;
    let count: usize = x.shape().iter().zip(&mask).filter(|(_, &m)| m).map(|(&n, _)| n).product();
    ensure_shape!(!mean || count > 0, name, "mean over zero elements of {:?} (axes {:?})", x.shape(), axes);
    let scale = if mean { (1.0 / count as f64) as f32 } else { 1.0 };
    reduce_mask(x, None, &mask, scale, name)?.reshape(&reduced_shape(x.shape(), &mask, keepdim))
}

/// Σ over `axes` (PyTorch's `x.sum(axes, keepdim)`, except that an empty `axes` sums over
/// nothing and returns a copy).
pub fn sum(x: &Tensor, axes: &[usize], keepdim: bool) -> Result<Tensor> {
    reduce_axes(x, axes, keepdim, false, "sum")
}

/// Mean over `axes` (the losses' `mean`, shuffle attention's `mean_hw`).
pub fn mean(x: &Tensor, axes: &[usize], keepdim: bool) -> Result<Tensor> {
    reduce_axes(x, axes, keepdim, true, "mean")
}

/// x summed over the dims along which `shape` was broadcast to x's shape (leading extra
/// dims and dims of 1): the gradient of a broadcast operand.
pub fn sum_to_shape(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    sum_to_shape_scaled(x, shape, 1.0, "sum_to_shape")
}

fn sum_to_shape_scaled(x: &Tensor, shape: &[usize], scale: f32, name: &'static str) -> Result<Tensor> {
    sum_to_shape_of(x, None, shape, scale, name)
}

/// scale · (x ⊙ y) summed to `shape` (y: None for x alone, else x's shape).
fn sum_to_shape_of(x: &Tensor, y: Option<&Tensor>, shape: &[usize], scale: f32, name: &'static str) -> Result<Tensor> {
    ensure_shape!(
        broadcast_shape(shape, x.shape()).as_deref() == Some(x.shape()),
        name,
        "{:?} does not broadcast to {:?}, so {:?} cannot be summed to it",
        shape,
        x.shape(),
        x.shape()
    );
    let lead = x.dims() - shape.len();
    let mask: Vec<bool> = (0..x.dims()).map(|d| d < lead || (shape[d - lead] == 1 && x.dim(d) != 1)).collect();
    reduce_mask(x, y, &mask, scale, name)?.reshape(shape)
}

/// Global mean pool [B,C,H,W] → [B,C].
pub fn mean_pool(x: &Tensor) -> Result<Tensor> {
    ensure_shape!(x.dims() == 4, "mean_pool", "expects [B, C, H, W], got {:?}", x.shape());
    let s = x.shape();
    ensure_shape!(s[2] * s[3] > 0, "mean_pool", "mean over an empty {}×{} map of {:?}", s[2], s[3], s);
    let y = reduce_mask(x, None, &[false, false, true, true], (1.0 / (s[2] * s[3]) as f64) as f32, "mean_pool")?;
    y.reshape(&[s[0], s[1]])
}

/// Gradient of `sum(x, axes, keepdim)`: dy broadcast back to x's shape.
pub fn sum_backward(dy: &Tensor, x_shape: &[usize], axes: &[usize], keepdim: bool) -> Result<Tensor> {
    reduce_backward(dy, x_shape, axes, keepdim, false, "sum_backward")
}

/// Gradient of `mean(x, axes, keepdim)`: dy / count broadcast back to x's shape.
pub fn mean_backward(dy: &Tensor, x_shape: &[usize], axes: &[usize], keepdim: bool) -> Result<Tensor> {
    reduce_backward(dy, x_shape, axes, keepdim, true, "mean_backward")
}

fn reduce_backward(dy: &Tensor, x_shape: &[usize], axes: &[usize], keepdim: bool, mean: bool, name: &'static str) -> Result<Tensor> {
    let mask = axes_mask(x_shape, axes, name)?;
    let want = reduced_shape(x_shape, &mask, keepdim);
    ensure_shape!(dy.shape() == want, name, "dy {:?} for a reduction of {:?} over {:?} (expected {:?})", dy.shape(), x_shape, axes, want);
    let count: usize = x_shape.iter().zip(&mask).filter(|(_, &m)| m).map(|(&n, _)| n).product();
    let alpha = if mean && count > 0 { (1.0 / count as f64) as f32 } else { 1.0 };
    expand_scaled(&dy.reshape(&reduced_shape(x_shape, &mask, true))?, x_shape, alpha, name)
}

/// Gradient of `mean_pool`: dy[B,C] / (H·W) spread over every pixel.
pub fn mean_pool_backward(dy: &Tensor, x_shape: &[usize]) -> Result<Tensor> {
    let name = "mean_pool_backward";
    ensure_shape!(x_shape.len() == 4, name, "x must be [B, C, H, W], got {:?}", x_shape);
    ensure_shape!(dy.shape() == &x_shape[..2], name, "dy {:?} for x {:?}", dy.shape(), x_shape);
    let hw = (x_shape[2] * x_shape[3]).max(1);
    expand_scaled(&dy.reshape(&[x_shape[0], x_shape[1], 1, 1])?, x_shape, (1.0 / hw as f64) as f32, name)
}

// ---- Adam -------------------------------------------------------------------------------

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AdamUniform {
    n: u32,
    _pad: u32,
    w1: f32,
    beta2: f32,
    w2: f32,
    step_size: f32,
    sqrt_bc2: f32,
    eps: f32,
}

/// One Adam step (PyTorch semantics, bias-corrected, `step` counting from 1) updating
/// `param`, `m` and `v` in place from `grad`.
pub fn adam_step(param: &Tensor, grad: &Tensor, m: &Tensor, v: &Tensor, p: &AdamParams, step: u32) -> Result<()> {
    let name = "adam_step";
    for (what, t) in [("grad", grad), ("m", m), ("v", v)] {
        ensure_shape!(t.shape() == param.shape(), name, "param {:?} vs {what} {:?}", param.shape(), t.shape());
    }
    if step == 0 {
        return Err(Error::Other("adam_step: steps count from 1 (bias correction divides by 1 − β^step)".into()));
    }
    let bc1 = 1.0 - (p.beta1 as f64).powi(step as i32);
    let bc2 = 1.0 - (p.beta2 as f64).powi(step as i32);
    let mut u = AdamUniform {
        n: 0,
        _pad: 0,
        w1: (1.0 - p.beta1 as f64) as f32,
        beta2: p.beta2,
        w2: (1.0 - p.beta2 as f64) as f32,
        step_size: (p.lr as f64 / bc1) as f32,
        sqrt_bc2: bc2.sqrt() as f32,
        eps: p.eps,
    };
    let gpu = param.gpu();
    let n = param.numel();
    let flat: Vec<Tensor> = [param, grad, m, v].iter().map(|t| t.reshape(&[n])).collect::<Result<_>>()?;
    for r in batch_chunks(gpu, name, n, &[4; 4])? {
        let views: Vec<Tensor> = flat.iter().map(|t| t.narrow0(r.start, r.len())).collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = views.iter().collect();
        u.n = r.len() as u32;
        gpu.dispatch(&ADAM, "adam_step", &u, &refs, grid(gpu, r.len() as u64, WG as u64))?;
    }
    Ok(())
}

// ---- on the tape ------------------------------------------------------------------------

impl Tape {
    /// a ∘ b with broadcasting; each operand's gradient is summed back to its shape.
    pub fn broadcast_binary(&self, a: &Var, b: &Var, op: BinaryOp) -> Result<Var> {
        let y = broadcast_binary(a.value(), b.value(), op)?;
        let inputs = [a, b];
        if matches!(op, BinaryOp::Add | BinaryOp::Sub) {
            // Only the shapes are needed: do not keep the operands alive until backward.
            let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
            return Ok(self.record1("broadcast_binary", &inputs, y, move |c| {
                let [ga, gb] = pass_through_grads(&c.grad(0)?, &sa, &sb, op, [c.needs[0], c.needs[1]])?;
                Ok(vec![ga, gb])
            }));
        }
        let (av, bv) = (a.value().clone(), b.value().clone());
        Ok(self.record1("broadcast_binary", &inputs, y, move |c| {
            let [ga, gb] = broadcast_binary_backward(&av, &bv, &c.grad(0)?, op, [c.needs[0], c.needs[1]])?;
            Ok(vec![ga, gb])
        }))
    }

    /// a + b, broadcasting.
    pub fn add_b(&self, a: &Var, b: &Var) -> Result<Var> {
        self.broadcast_binary(a, b, BinaryOp::Add)
    }
    /// a − b, broadcasting.
    pub fn sub_b(&self, a: &Var, b: &Var) -> Result<Var> {
        self.broadcast_binary(a, b, BinaryOp::Sub)
    }
    /// a ⊙ b, broadcasting.
    pub fn mul_b(&self, a: &Var, b: &Var) -> Result<Var> {
        self.broadcast_binary(a, b, BinaryOp::Mul)
    }
    /// a / b, broadcasting.
    pub fn div_b(&self, a: &Var, b: &Var) -> Result<Var> {
        self.broadcast_binary(a, b, BinaryOp::Div)
    }

    pub fn expand(&self, x: &Var, shape: &[usize]) -> Result<Var> {
        let y = expand(x.value(), shape)?;
        let xs = x.shape().to_vec();
        Ok(self.record1("expand", &[x], y, move |c| Ok(vec![Some(sum_to_shape(&c.grad(0)?, &xs)?)])))
    }

    pub fn sum(&self, x: &Var, axes: &[usize], keepdim: bool) -> Result<Var> {
        let y = sum(x.value(), axes, keepdim)?;
        let (xs, axes) = (x.shape().to_vec(), axes.to_vec());
        Ok(self.record1("sum", &[x], y, move |c| Ok(vec![Some(sum_backward(&c.grad(0)?, &xs, &axes, keepdim)?)])))
    }

    pub fn mean(&self, x: &Var, axes: &[usize], keepdim: bool) -> Result<Var> {
        let y = mean(x.value(), axes, keepdim)?;
        let (xs, axes) = (x.shape().to_vec(), axes.to_vec());
        Ok(self.record1("mean", &[x], y, move |c| Ok(vec![Some(mean_backward(&c.grad(0)?, &xs, &axes, keepdim)?)])))
    }

    pub fn sum_to_shape(&self, x: &Var, shape: &[usize]) -> Result<Var> {
        let y = sum_to_shape(x.value(), shape)?;
        let xs = x.shape().to_vec();
        Ok(self.record1("sum_to_shape", &[x], y, move |c| Ok(vec![Some(expand(&c.grad(0)?, &xs)?)])))
    }

    pub fn mean_pool(&self, x: &Var) -> Result<Var> {
        let y = mean_pool(x.value())?;
        let xs = x.shape().to_vec();
        Ok(self.record1("mean_pool", &[x], y, move |c| Ok(vec![Some(mean_pool_backward(&c.grad(0)?, &xs)?)])))
    }
}

// ---- CPU reference ----------------------------------------------------------------------

/// Plain f64 references. Shapes are row-major; operands align on the right.
pub mod cpu {
    use super::{AdamParams, BinaryOp};

    pub use super::broadcast_shape;

    fn numel(shape: &[usize]) -> usize {
        shape.iter().product()
    }

    /// Row-major coordinates of flat index i.
    fn coords(mut i: usize, shape: &[usize]) -> Vec<usize> {
        let mut c = vec![0; shape.len()];
        for d in (0..shape.len()).rev() {
            c[d] = i % shape[d];
            i /= shape[d];
        }
        c
    }

    /// Flat index into an operand of `shape` for output coordinates `c` (broadcast dims
    /// read index 0).
    fn source(c: &[usize], shape: &[usize]) -> usize {
        let lead = c.len() - shape.len();
        shape.iter().enumerate().fold(0, |acc, (d, &n)| acc * n + if n == 1 { 0 } else { c[lead + d] })
    }

    pub fn broadcast_binary(a: &[f64], a_shape: &[usize], b: &[f64], b_shape: &[usize], op: BinaryOp) -> Vec<f64> {
        let out = broadcast_shape(a_shape, b_shape).expect("shapes broadcast");
        (0..numel(&out))
            .map(|i| {
                let c = coords(i, &out);
                let (x, y) = (a[source(&c, a_shape)], b[source(&c, b_shape)]);
                match op {
                    BinaryOp::Add => x + y,
                    BinaryOp::Sub => x - y,
                    BinaryOp::Mul => x * y,
                    BinaryOp::Div => x / y,
                }
            })
            .collect()
    }

    pub fn expand(x: &[f64], x_shape: &[usize], shape: &[usize]) -> Vec<f64> {
        (0..numel(shape)).map(|i| x[source(&coords(i, shape), x_shape)]).collect()
    }

    /// Σ over `axes`; the result is row-major over the kept dims (keepdim only changes the
    /// shape, not the order).
    pub fn sum(x: &[f64], shape: &[usize], axes: &[usize]) -> Vec<f64> {
        let kept: Vec<usize> = (0..shape.len()).filter(|d| !axes.contains(d)).collect();
        let kshape: Vec<usize> = kept.iter().map(|&d| shape[d]).collect();
        let mut out = vec![0.0; numel(&kshape)];
        for (i, &v) in x.iter().enumerate() {
            let c = coords(i, shape);
            let o = kept.iter().fold(0, |acc, &d| acc * shape[d] + c[d]);
            out[o] += v;
        }
        out
    }

    pub fn mean(x: &[f64], shape: &[usize], axes: &[usize]) -> Vec<f64> {
        let count: usize = axes.iter().map(|&a| shape[a]).product();
        sum(x, shape, axes).into_iter().map(|s| s / count as f64).collect()
    }

    pub fn sum_to_shape(x: &[f64], x_shape: &[usize], shape: &[usize]) -> Vec<f64> {
        let mut out = vec![0.0; numel(shape)];
        for (i, &v) in x.iter().enumerate() {
            out[source(&coords(i, x_shape), shape)] += v;
        }
        out
    }

    pub fn mean_pool(x: &[f64], shape: &[usize]) -> Vec<f64> {
        mean(x, shape, &[2, 3])
    }

    /// torch.optim.Adam's update for one tensor (no weight decay), in f64.
    pub fn adam_step(param: &mut [f64], grad: &[f64], m: &mut [f64], v: &mut [f64], p: &AdamParams, step: u32) {
        let (b1, b2) = (p.beta1 as f64, p.beta2 as f64);
        let bc1 = 1.0 - b1.powi(step as i32);
        let bc2 = 1.0 - b2.powi(step as i32);
        for i in 0..param.len() {
            m[i] = b1 * m[i] + (1.0 - b1) * grad[i];
            v[i] = b2 * v[i] + (1.0 - b2) * grad[i] * grad[i];
            param[i] -= p.lr as f64 / bc1 * m[i] / (v[i].sqrt() / bc2.sqrt() + p.eps as f64);
        }
    }
}
