//! Writing `.pth` checkpoints that PyTorch's own `torch.load` accepts, with or without
//! `weights_only=True`.
//!
//! Format choices, each matching what `torch.save` writes (checked against torch 2.x) or the
//! smallest part of it that `torch.load` needs:
//!
//! - **Pickle protocol 2.** torch.save uses protocol 2 by default, and `weights_only=True`
//!   runs a restricted unpickler that knows only the opcodes protocol 2 pickles use (no
//!   FRAME, SHORT_BINUNICODE or MEMOIZE), so a higher protocol would be refused there.
//!   Only the allow-listed callables appear: `collections.OrderedDict`,
//!   `torch._utils._rebuild_tensor_v2` and the `torch.*Storage` names in persistent ids.
//! - **One storage per tensor**, persistent id `('storage', torch.FloatStorage, key, 'cpu',
//!   numel)` with keys "0", "1", … in pickling order, each tensor contiguous at offset 0.
//!   Storage data is raw little-endian and the archive says so in `byteorder`.
//! - **Stored, not deflated.** torch writes every record stored and reads storages straight
//!   out of the archive (with `mmap=True`, as views of the mapped file), so compression would
//!   only cost time and break memory mapping.
//! - **64-byte aligned records.** torch pads each local header's extra field so record data
//!   starts on a 64-byte boundary; with `mmap=True` a storage is used in place, so a
//!   misaligned f32/i64 storage would be a misaligned pointer. The zip crate's alignment
//!   padding does the same job.
//! - **No `.format_version` / `.storage_alignment` / `.data/serialization_id`.** With
//!   `.format_version` present, torch's lazy paths (meta device, fake tensors, mmap) compute
//!   each storage's offset from the previous one assuming torch's own writer (its header
//!   padding and trailing data descriptors) instead of reading the local header. Leaving it
//!   out makes torch read every offset from the archive, which is correct for any valid zip.
//!   The serialization id only tags files for torch's own caches.
//! - **Deterministic bytes.** Fixed 1980 timestamps and memo numbering by first use, so the
//!   same input gives the same file (the tests compare `data.pkl` against a checked-in copy).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::weights::{write_atomic, HostTensor};

/// The element type a tensor is stored as. `HostTensor` holds f32; `I64` converts each value
/// (which must be a whole number) for tensors torch expects as int64, such as BatchNorm's
/// `num_batches_tracked` (`load_state_dict` copies into the module's buffer, whose dtype is
/// int64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PthDtype {
    F32,
    I64,
}

/// A Python value to save. Dict entries keep their order, as Python dicts do.
///
/// The layout GALIP/RATLIP's code loads (`checkpoint['model']['netG']`, then
/// `load_state_dict`, strict):
///
/// ```no_run
/// # use std::collections::BTreeMap;
/// # use ratlip::weights::HostTensor;
/// # use ratlip::weights::pth::{save_pth, PthValue};
/// # fn f(g: BTreeMap<String, HostTensor>, d: BTreeMap<String, HostTensor>, c: BTreeMap<String, HostTensor>) -> ratlip::Result<()> {
/// let sd = |m: &BTreeMap<String, HostTensor>| PthValue::state_dict(m.iter().map(|(k, v)| (k.as_str(), v)));
/// let model = PthValue::Dict(vec![("netG".into(), sd(&g)), ("netD".into(), sd(&d)), ("netC".into(), sd(&c))]);
/// let root = PthValue::Dict(vec![("model".into(), model), ("epoch".into(), PthValue::Int(600))]);
/// save_pth(std::path::Path::new("state_epoch_600.pth"), &root)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum PthValue {
    /// A plain `dict` (the top level of a training checkpoint: `{'model': …, 'epoch': N}`).
    Dict(Vec<(String, PthValue)>),
    /// A `collections.OrderedDict`, the type `Module.state_dict()` returns.
    OrderedDict(Vec<(String, PthValue)>),
    /// A CPU tensor, saved contiguous; shape `[]` is a 0-dim tensor.
    Tensor(HostTensor, PthDtype),
    List(Vec<PthValue>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    None,
}

impl PthValue {
    /// A state dict of f32 tensors, in the iterator's order.
    pub fn state_dict<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a HostTensor)>) -> PthValue {
        PthValue::OrderedDict(
            tensors.into_iter().map(|(n, t)| (n.to_string(), PthValue::Tensor(t.clone(), PthDtype::F32))).collect(),
        )
    }
}

/// Pickle opcodes used (protocol 2 subset).
mod op {
    pub const PROTO: u8 = 0x80;
    pub const STOP: u8 = b'.';
    pub const MARK: u8 = b'(';
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_LIST: u8 = b']';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const APPENDS: u8 = b'e';
    pub const TUPLE: u8 = b't';
    pub const TUPLE1: u8 = 0x85;
    pub const NONE: u8 = b'N';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const BINFLOAT: u8 = b'G';
    pub const BINUNICODE: u8 = b'X';
    pub const GLOBAL: u8 = b'c';
    pub const REDUCE: u8 = b'R';
    pub const BINPERSID: u8 = b'Q';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
}

/// Python's pickler batches SETITEMS/APPENDS by 1000; doing the same keeps the unpickler's
/// stack use bounded and the output shaped like torch's.
const BATCH: usize = 1000;

/// Pickles the value tree, collecting tensor storages as it goes.
struct Pickler {
    out: Vec<u8>,
    /// Globals and strings are memoised so repeated `_rebuild_tensor_v2`, storage type names,
    /// 'storage' and 'cpu' cost a BINGET each. Both are immutable in Python, so sharing them is
    /// invisible to the loaded object.
    memo: HashMap<(u8, String), u32>,
    storages: Vec<Vec<u8>>,
}

impl Pickler {
    fn put(&mut self, key: (u8, String)) {
        let i = self.memo.len() as u32;
        self.memo.insert(key, i);
        if i < 256 {
            self.out.extend([op::BINPUT, i as u8]);
        } else {
            self.out.push(op::LONG_BINPUT);
            self.out.extend(i.to_le_bytes());
        }
    }

    fn get(&mut self, key: &(u8, String)) -> bool {
        match self.memo.get(key) {
            Some(&i) if i < 256 => self.out.extend([op::BINGET, i as u8]),
            Some(&i) => {
                self.out.push(op::LONG_BINGET);
                self.out.extend(i.to_le_bytes());
            }
            None => return false,
        }
        true
    }

    fn global(&mut self, module: &str, name: &str) {
        let key = (op::GLOBAL, format!("{module}\n{name}"));
        if !self.get(&key) {
            self.out.push(op::GLOBAL);
            self.out.extend(format!("{module}\n{name}\n").as_bytes());
            self.put(key);
        }
    }

    fn str(&mut self, s: &str) -> Result<()> {
        let key = (op::BINUNICODE, s.to_string());
        if !self.get(&key) {
            let n = u32::try_from(s.len())
                .map_err(|_| Error::Other(format!("string of {} bytes is too long for a pickle", s.len())))?;
            self.out.push(op::BINUNICODE);
            self.out.extend(n.to_le_bytes());
            self.out.extend(s.as_bytes());
            self.put(key);
        }
        Ok(())
    }

    /// The shortest int opcode, as Python's pickler chooses it.
    fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.out.extend([op::BININT1, v as u8]);
        } else if (0..65536).contains(&v) {
            self.out.push(op::BININT2);
            self.out.extend((v as u16).to_le_bytes());
        } else if i32::try_from(v).is_ok() {
            self.out.push(op::BININT);
            self.out.extend((v as i32).to_le_bytes());
        } else {
            // LONG1: minimal little-endian two's complement.
            let b = v.to_le_bytes();
            let mut n = 8;
            while n > 1 && ((b[n - 1] == 0 && b[n - 2] & 0x80 == 0) || (b[n - 1] == 0xff && b[n - 2] & 0x80 != 0)) {
                n -= 1;
            }
            self.out.extend([op::LONG1, n as u8]);
            self.out.extend(&b[..n]);
        }
    }

    fn int_tuple(&mut self, v: &[usize]) -> Result<()> {
        if v.is_empty() {
            self.out.push(op::EMPTY_TUPLE);
            return Ok(());
        }
        if v.len() > 3 {
            self.out.push(op::MARK);
        }
        for &x in v {
            let x = i64::try_from(x).map_err(|_| Error::Other(format!("dimension {x} does not fit an i64")))?;
            self.int(x);
        }
        self.out.push(if v.len() > 3 { op::TUPLE } else { op::TUPLE1 + (v.len() as u8 - 1) });
        Ok(())
    }

    fn items(&mut self, items: &[(String, PthValue)], path: &str) -> Result<()> {
        let mut seen = HashSet::new();
        for chunk in items.chunks(BATCH) {
            self.out.push(op::MARK);
            for (k, v) in chunk {
                if !seen.insert(k.as_str()) {
                    return Err(Error::Other(format!("duplicate key {k:?} in dict {}", shown(path))));
                }
                self.str(k)?;
                self.value(v, &join(path, k))?;
            }
            self.out.push(op::SETITEMS);
        }
        Ok(())
    }

    fn value(&mut self, v: &PthValue, path: &str) -> Result<()> {
        match v {
            PthValue::Dict(items) => {
                self.out.push(op::EMPTY_DICT);
                self.items(items, path)?;
            }
            PthValue::OrderedDict(items) => {
                self.global("collections", "OrderedDict");
                self.out.extend([op::EMPTY_TUPLE, op::REDUCE]);
                self.items(items, path)?;
            }
            PthValue::List(items) => {
                self.out.push(op::EMPTY_LIST);
                for (chunk_i, chunk) in items.chunks(BATCH).enumerate() {
                    self.out.push(op::MARK);
                    for (i, x) in chunk.iter().enumerate() {
                        self.value(x, &join(path, &(chunk_i * BATCH + i).to_string()))?;
                    }
                    self.out.push(op::APPENDS);
                }
            }
            PthValue::Tensor(t, dtype) => self.tensor(t, *dtype, path)?,
            PthValue::Int(i) => self.int(*i),
            PthValue::Float(f) => {
                self.out.push(op::BINFLOAT);
                self.out.extend(f.to_be_bytes());
            }
            PthValue::Bool(b) => self.out.push(if *b { op::NEWTRUE } else { op::NEWFALSE }),
            PthValue::Str(s) => self.str(s)?,
            PthValue::None => self.out.push(op::NONE),
        }
        Ok(())
    }

    /// `torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())`.
    fn tensor(&mut self, t: &HostTensor, dtype: PthDtype, path: &str) -> Result<()> {
        let bad = |what: String| Error::Other(format!("tensor {} (shape {:?}): {what}", shown(path), t.shape));
        let numel = t.shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n)).ok_or_else(|| bad("too large".into()))?;
        if numel != t.data.len() {
            return Err(bad(format!("has {} values, its shape needs {numel}", t.data.len())));
        }
        let bytes: Vec<u8> = match dtype {
            PthDtype::F32 => bytemuck::cast_slice(&t.data).to_vec(),
            PthDtype::I64 => {
                let mut b = Vec::with_capacity(numel * 8);
                for &x in &t.data {
                    // ±2^63 are exact in f32; 2^63 itself is one past i64::MAX. NaN and the
                    // infinities fail the range test.
                    const TWO_63: f32 = 9_223_372_036_854_775_808.0;
                    if !(-TWO_63..TWO_63).contains(&x) || x.fract() != 0.0 {
                        return Err(bad(format!("value {x} is not an int64")));
                    }
                    b.extend((x as i64).to_le_bytes());
                }
                b
            }
        };
        let key = self.storages.len().to_string();
        self.storages.push(bytes);

        self.global("torch._utils", "_rebuild_tensor_v2");
        self.out.extend([op::MARK, op::MARK]);
        self.str("storage")?;
        self.global("torch", if dtype == PthDtype::F32 { "FloatStorage" } else { "LongStorage" });
        self.str(&key)?;
        self.str("cpu")?;
        self.int(numel as i64);
        self.out.extend([op::TUPLE, op::BINPERSID]);
        self.int(0);
        self.int_tuple(&t.shape)?;
        let mut stride = vec![1usize; t.shape.len()];
        for d in (0..t.shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * t.shape[d + 1];
        }
        self.int_tuple(&stride)?;
        self.out.push(op::NEWFALSE);
        // Backward hooks: torch pickles an empty OrderedDict here.
        self.global("collections", "OrderedDict");
        self.out.extend([op::EMPTY_TUPLE, op::REDUCE, op::TUPLE, op::REDUCE]);
        Ok(())
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn shown(path: &str) -> &str {
    if path.is_empty() {
        "<root>"
    } else {
        path
    }
}

/// The pickle (`data.pkl`) for `root` and its storages, keyed "0", "1", … by index.
fn pickle_pth(root: &PthValue) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
    let mut p = Pickler { out: vec![op::PROTO, 2], memo: HashMap::new(), storages: Vec::new() };
    p.value(root, "")?;
    p.out.push(op::STOP);
    Ok((p.out, p.storages))
}

/// torch names the archive's top folder after the file; the reader takes whatever the first
/// entry's folder is, so odd characters are replaced to keep zip names plain ASCII.
fn archive_name(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' { c } else { '_' }).collect();
    if name.is_empty() {
        "archive".into()
    } else {
        name
    }
}

/// The bytes of a `.pth` zip for `root`; `archive` is the folder every entry sits under.
fn pth_bytes(root: &PthValue, archive: &str) -> Result<Vec<u8>> {
    let (pkl, storages) = pickle_pth(root)?;
    let zerr = |e: &dyn std::fmt::Display| Error::Other(format!("building the .pth archive: {e}"));
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let entry = |z: &mut zip::ZipWriter<_>, name: String, data: &[u8]| -> Result<()> {
        let opts = zip::write::SimpleFileOptions::DEFAULT
            .compression_method(zip::CompressionMethod::Stored)
            .with_alignment(64)
            .large_file(data.len() as u64 >= u32::MAX as u64);
        z.start_file(name, opts).map_err(|e| zerr(&e))?;
        z.write_all(data).map_err(|e| zerr(&e))
    };
    entry(&mut z, format!("{archive}/data.pkl"), &pkl)?;
    entry(&mut z, format!("{archive}/byteorder"), b"little")?;
    for (i, s) in storages.iter().enumerate() {
        entry(&mut z, format!("{archive}/data/{i}"), s)?;
    }
    entry(&mut z, format!("{archive}/version"), b"3\n")?;
    Ok(z.finish().map_err(|e| zerr(&e))?.into_inner())
}

/// Writes `root` as a PyTorch checkpoint that `torch.load(path)` (and
/// `torch.load(path, weights_only=True)`) returns as the same Python value; tensors come back
/// as CPU tensors. Written atomically: a crash never leaves a partial file at `path`.
pub fn save_pth(path: &Path, root: &PthValue) -> Result<()> {
    let bytes = pth_bytes(root, &archive_name(path)).map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}
