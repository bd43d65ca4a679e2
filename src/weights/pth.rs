//! PyTorch `.pth` checkpoints (the zip format `torch.save` writes since 1.6), read without
//! running any pickle code.
//!
//! GALIP/RATLIP save `{'model': {'netG': ..., 'netD': ..., 'netC': ...}, 'optimizers': ...,
//! 'epoch': N}`. The archive holds `<name>/data.pkl` (the object graph) and
//! `<name>/data/<key>` (one raw little-endian storage per key). Python's unpickler would import
//! and call whatever globals the pickle names, so a checkpoint from the internet is code. Here a
//! small pickle VM treats GLOBAL and REDUCE as data: it recognises the handful of callables
//! torch uses to rebuild tensors and dicts and turns everything else into an opaque value that
//! is never called. Tensors found in nested dicts are named by joining the keys with '.'.
//!
//! Writing lives in the `write` submodule ([`save_pth`], [`PthValue`]); its doc comment
//! explains the format choices.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use super::{ElementType, HostTensor, WeightFile};
use crate::error::{Error, Result};

mod write;
pub use write::{save_pth, PthDtype, PthValue};

/// torch's storage class names for the element types.
fn storage_type(name: &str) -> Option<ElementType> {
    Some(match name {
        "FloatStorage" => ElementType::F32,
        "HalfStorage" => ElementType::F16,
        "BFloat16Storage" => ElementType::BF16,
        "DoubleStorage" => ElementType::F64,
        "LongStorage" => ElementType::I64,
        "IntStorage" => ElementType::I32,
        "ShortStorage" => ElementType::I16,
        "CharStorage" => ElementType::I8,
        "ByteStorage" => ElementType::U8,
        "BoolStorage" => ElementType::Bool,
        _ => return None,
    })
}

/// A tensor as the pickle describes it: a view into a storage in the archive.
#[derive(Clone, Debug)]
struct TensorRef {
    key: String,
    dtype: ElementType,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// Pickle values. Lists and dicts are shared (Rc) because a memoised container may be
/// mutated after it was memoised and then fetched again by BINGET. Some payloads are only
/// read through `Debug`, in error messages about unexpected persistent ids.
#[derive(Clone, Debug)]
#[allow(dead_code)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// `module.name` from GLOBAL/STACK_GLOBAL: a name, never imported.
    Global(String, String),
    /// A persistent id resolved to a storage of the archive.
    Storage { key: String, dtype: ElementType },
    Tensor(Rc<TensorRef>),
    /// The result of calling something we do not know; kept as a description only.
    Opaque(String),
}

fn new_dict() -> Value {
    Value::Dict(Rc::new(RefCell::new(Vec::new())))
}

/// What the VM needs to report errors and resolve persistent ids.
struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    file: &'a Path,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl<'a> Vm<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::Other(format!("{}: data.pkl at byte {}: {msg}", self.file.display(), self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.data.len() - self.pos < n {
            return Err(self.err("pickle ends early (truncated or corrupt checkpoint)"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| self.err("GLOBAL without a newline"))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn string(&mut self, n: usize) -> Result<Value> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| self.err("string is not UTF-8"))?;
        Ok(Value::Str(s.to_string()))
    }

    fn pop(&mut self) -> Result<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("pickle stack underflow (corrupt pickle)"));
        }
        Ok(self.stack.pop().unwrap())
    }

    fn top(&self) -> Result<&Value> {
        self.stack.last().ok_or_else(|| self.err("pickle stack underflow (corrupt pickle)"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| self.err("pickle needs a MARK that is not there"))?;
        Ok(self.stack.split_off(m))
    }

    fn memo_get(&self, i: u32) -> Result<Value> {
        self.memo.get(&i).cloned().ok_or_else(|| self.err(format!("memo entry {i} is not set")))
    }

    fn memo_put(&mut self, i: u32) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<()> {
        if items.len() % 2 != 0 {
            return Err(self.err("SETITEMS with an odd number of values"));
        }
        match self.top()? {
            Value::Dict(d) => {
                let mut d = d.borrow_mut();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
                Ok(())
            }
            // Setting items on an opaque object changes nothing we read.
            Value::Opaque(_) => Ok(()),
            other => Err(self.err(format!("SETITEM on a {} (not a dict)", kind(other)))),
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Result<()> {
        match self.top()? {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            Value::Opaque(_) => Ok(()),
            other => Err(self.err(format!("APPEND on a {} (not a list)", kind(other)))),
        }
    }

    /// The persistent id torch writes for each storage:
    /// `('storage', torch.FloatStorage, key, location, numel)`.
    fn persistent_load(&self, pid: Value) -> Result<Value> {
        let t = match &pid {
            Value::Tuple(t) => t.clone(),
            other => return Err(self.err(format!("persistent id is a {}, expected a tuple", kind(other)))),
        };
        match (t.first(), t.get(1), t.get(2)) {
            (Some(Value::Str(tag)), Some(Value::Global(m, n)), Some(Value::Str(key))) if tag == "storage" => {
                let dtype = storage_type(n).filter(|_| m == "torch").ok_or_else(|| {
                    self.err(format!("storage type {m}.{n} is not supported (f32, f16, bf16, f64 and integer storages are)"))
                })?;
                Ok(Value::Storage { key: key.clone(), dtype })
            }
            _ => Err(self.err(format!("unrecognised persistent id {pid:?}"))),
        }
    }

    /// REDUCE without calling anything: known torch/collections callables are rebuilt as
    /// data, everything else becomes an opaque description.
    fn reduce(&self, callable: &Value, args: &Value) -> Result<Value> {
        let (m, n) = match callable {
            Value::Global(m, n) => (m.as_str(), n.as_str()),
            other => return Ok(Value::Opaque(format!("call of a {}", kind(other)))),
        };
        let args: &[Value] = match args {
            Value::Tuple(t) => t,
            _ => return Ok(Value::Opaque(format!("{m}.{n}(…)"))),
        };
        match (m, n) {
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                let (key, dtype) = match args.first() {
                    Some(Value::Storage { key, dtype }) => (key.clone(), *dtype),
                    _ => return Err(self.err(format!("{m}.{n} without a storage argument"))),
                };
                let offset = as_usize(args.get(1)).ok_or_else(|| self.err("tensor storage offset is not an int"))?;
                let shape = usize_tuple(args.get(2)).ok_or_else(|| self.err("tensor size is not a tuple of ints"))?;
                let stride = usize_tuple(args.get(3)).ok_or_else(|| self.err("tensor stride is not a tuple of ints"))?;
                if shape.len() != stride.len() {
                    return Err(self.err(format!("tensor size {shape:?} and stride {stride:?} differ in rank")));
                }
                Ok(Value::Tensor(Rc::new(TensorRef { key, dtype, offset, shape, stride })))
            }
            // nn.Parameter(data, requires_grad, hooks[, state]): the data is the tensor.
            ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
                Ok(args.first().cloned().unwrap_or(Value::None))
            }
            // Tensor subclasses: _rebuild_from_type_v2(func, type, args, state) → func(*args).
            // The inner call is only followed one level, so nesting cannot recurse deeply.
            ("torch._tensor", "_rebuild_from_type_v2") => match (args.first(), args.get(2)) {
                (Some(f @ Value::Global(fm, _)), Some(a)) if fm == "torch._utils" => self.reduce(f, a),
                _ => Ok(Value::Opaque(format!("{m}.{n}(…)"))),
            },
            ("collections", "OrderedDict") => {
                let d = new_dict();
                if let (Value::Dict(dd), Some(Value::List(pairs))) = (&d, args.first()) {
                    for p in pairs.borrow().iter() {
                        if let Value::Tuple(kv) = p {
                            if kv.len() == 2 {
                                dd.borrow_mut().push((kv[0].clone(), kv[1].clone()));
                            }
                        }
                    }
                }
                Ok(d)
            }
            _ => Ok(Value::Opaque(format!("{m}.{n}(…)"))),
        }
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint only
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.stack.push(new_dict()),
                b']' | 0x8f => self.stack.push(Value::List(Rc::new(RefCell::new(Vec::new())))), // EMPTY_LIST, EMPTY_SET
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i64))
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64))
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement of n bytes.
                    let n = if op == 0x8a { self.u8()? as usize } else { self.u32()? as usize };
                    let b = self.take(n)?;
                    let v = if n == 0 {
                        Value::Int(0)
                    } else if n <= 8 {
                        let fill = if b[n - 1] & 0x80 != 0 { 0xff } else { 0 };
                        let mut w = [fill; 8];
                        w[..n].copy_from_slice(b);
                        Value::Int(i64::from_le_bytes(w))
                    } else {
                        Value::Opaque("integer wider than 64 bits".into())
                    };
                    self.stack.push(v)
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.stack.push(Value::Float(v))
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v)
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v)
                }
                0x8d => {
                    let n = self.u64()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v)
                }
                b'U' | b'T' | b'C' | b'B' | 0x8e => {
                    // SHORT_BINSTRING, BINSTRING, SHORT_BINBYTES, BINBYTES, BINBYTES8
                    let n = match op {
                        b'U' | b'C' => self.u8()? as usize,
                        0x8e => self.u64()? as usize,
                        _ => self.u32()? as usize,
                    };
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b))
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memo_put(i)?
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    let v = self.memo_get(i)?;
                    self.stack.push(v)
                }
                b'j' => {
                    let i = self.u32()?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v)
                }
                b'c' => {
                    let m = self.line()?;
                    let n = self.line()?;
                    self.stack.push(Value::Global(m, n))
                }
                0x93 => {
                    let n = self.pop()?;
                    let m = self.pop()?;
                    match (m, n) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.stack.push(Value::Tuple(Rc::new(items)))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))))
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(new_dict());
                    self.set_items(items)?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.stack.push(v)
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(&callable, &args)?;
                    self.stack.push(v)
                }
                0x81 => {
                    // NEWOBJ cls.__new__(cls, *args): never called.
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    self.stack.push(Value::Opaque(format!("instance of {}", describe(&cls))))
                }
                b'b' => {
                    // BUILD sets state on the object below it. OrderedDict state (a state_dict's
                    // `_metadata`) and opaque objects' state are not tensors we need.
                    let _state = self.pop()?;
                    self.top()?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.append(items)?
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v)
                }
                other => {
                    self.pos = at;
                    return Err(self.err(format!(
                        "unsupported pickle opcode 0x{other:02x} ({:?}); ratlip reads the subset torch.save writes",
                        other as char
                    )));
                }
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "tuple",
        Value::List(_) => "list",
        Value::Dict(_) => "dict",
        Value::Global(..) => "global",
        Value::Storage { .. } => "storage",
        Value::Tensor(_) => "tensor",
        Value::Opaque(_) => "opaque object",
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Global(m, n) => format!("{m}.{n}"),
        other => kind(other).to_string(),
    }
}

fn as_usize(v: Option<&Value>) -> Option<usize> {
    match v {
        Some(Value::Int(i)) if *i >= 0 => Some(*i as usize),
        _ => None,
    }
}

fn usize_tuple(v: Option<&Value>) -> Option<Vec<usize>> {
    match v {
        Some(Value::Tuple(t)) => t.iter().map(|x| as_usize(Some(x))).collect(),
        _ => None,
    }
}

/// Walks nested dicts, collecting tensors (and scalar leaves as metadata) under dotted names.
/// Depth is bounded because a crafted pickle can make a dict contain itself.
fn collect(v: &Value, prefix: &str, depth: usize, tensors: &mut Vec<(String, Rc<TensorRef>)>, meta: &mut HashMap<String, String>) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Tensor(t) => tensors.push((prefix.to_string(), t.clone())),
        Value::Dict(d) => {
            for (k, v) in d.borrow().iter() {
                let k = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                let name = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                collect(v, &name, depth + 1, tensors, meta);
            }
        }
        Value::Int(i) => {
            meta.insert(prefix.to_string(), i.to_string());
        }
        Value::Float(f) => {
            meta.insert(prefix.to_string(), f.to_string());
        }
        Value::Str(s) => {
            meta.insert(prefix.to_string(), s.clone());
        }
        _ => {}
    }
}

/// Reads a storage view into contiguous row-major f32, gathering through the strides.
fn materialise(t: &TensorRef, bytes: &[u8], name: &str, file: &Path) -> Result<HostTensor> {
    let es = t.dtype.size();
    let len = bytes.len() / es;
    let bad = |what: &str| {
        Error::Other(format!(
            "{}: tensor {name} (shape {:?}, stride {:?}, offset {}) {what}",
            file.display(),
            t.shape,
            t.stride,
            t.offset
        ))
    };
    // Checked arithmetic: the sizes come from the file, and a crafted one must not overflow.
    let numel = t.shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n)).ok_or_else(|| bad("is too large"))?;
    if numel > 0 {
        let last = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |a, (&n, &s)| (n - 1).checked_mul(s).and_then(|x| a.checked_add(x)))
            .ok_or_else(|| bad("is too large"))?;
        if last >= len {
            return Err(Error::Other(format!(
                "{}: tensor {name} (shape {:?}, stride {:?}, offset {}) reaches element {last} of storage {} which has {len} (truncated or corrupt?)",
                file.display(), t.shape, t.stride, t.offset, t.key
            )));
        }
    }
    let mut data = Vec::with_capacity(numel);
    let mut idx = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let e = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        data.push(t.dtype.read(&bytes[e * es..e * es + es]));
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < t.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(HostTensor::new(t.shape.clone(), data))
}

/// Reads every tensor of a `torch.save` zip checkpoint as f32, named by its dict path
/// (`model.netG.fc.weight`). Scalar leaves (`epoch`) become metadata; lists, optimizer
/// param groups and unknown objects are skipped. No pickle code is executed.
pub fn load_pth(path: &Path) -> Result<WeightFile> {
    let file = std::fs::File::open(path).map_err(|e| Error::Other(format!("cannot read {}: {e}", path.display())))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
        let legacy = std::fs::read(path).ok().and_then(|b| b.first().copied()) == Some(0x80);
        Error::Other(format!(
            "{} is not a readable PyTorch zip checkpoint (truncated or corrupt?): {e}{}",
            path.display(),
            if legacy {
                "; it looks like the legacy torch.save format (_use_new_zipfile_serialization=False), \
                 which ratlip does not read: re-save it with a current torch"
            } else {
                ""
            }
        ))
    })?;
    let zerr = |what: &str, e: &dyn std::fmt::Display| {
        Error::Other(format!("{}: {what} (truncated or corrupt checkpoint?): {e}", path.display()))
    };
    let pkl_name = zip
        .file_names()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| n.len())
        .map(str::to_string)
        .ok_or_else(|| Error::Other(format!("{}: zip archive has no data.pkl; not a torch.save checkpoint", path.display())))?;
    let prefix = &pkl_name[..pkl_name.len() - "data.pkl".len()];
    let read_entry = |zip: &mut zip::ZipArchive<_>, name: &str| -> Result<Vec<u8>> {
        let mut f = zip.by_name(name).map_err(|e| zerr(&format!("cannot open {name}"), &e))?;
        // The size is the archive's claim; cap the up-front reservation so a corrupt header
        // cannot ask for an absurd allocation before any bytes are read.
        let mut buf = Vec::with_capacity((f.size() as usize).min(1 << 28));
        f.read_to_end(&mut buf).map_err(|e| zerr(&format!("cannot read {name}"), &e))?;
        Ok(buf)
    };
    if let Ok(mut f) = zip.by_name(&format!("{prefix}byteorder")) {
        let mut s = String::new();
        let _ = f.read_to_string(&mut s);
        if s.trim() == "big" {
            return Err(Error::Other(format!("{}: big-endian checkpoint; ratlip reads little-endian ones", path.display())));
        }
    }
    let pkl = read_entry(&mut zip, &pkl_name)?;
    let vm = Vm { data: &pkl, pos: 0, file: path, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() };
    let root = vm.run()?;

    let mut refs = Vec::new();
    let mut metadata = HashMap::new();
    collect(&root, "", 0, &mut refs, &mut metadata);
    // Storages are shared between views (a transpose and its base); read each once.
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = BTreeMap::new();
    for (name, t) in refs {
        if !storages.contains_key(&t.key) {
            let bytes = read_entry(&mut zip, &format!("{prefix}data/{}", t.key))?;
            storages.insert(t.key.clone(), bytes);
        }
        let ht = materialise(&t, &storages[&t.key], &name, path)?;
        tensors.insert(name, ht);
    }
    metadata.insert("format".into(), "pth".into());
    Ok(WeightFile { source: path.to_path_buf(), tensors, metadata })
}

/// Drops the `module.` component DataParallel adds to every state_dict key, wherever it
/// appears after the first component (`model.netD.module.conv.weight` →
/// `model.netD.conv.weight`). A name that would collide with another keeps its original form
/// rather than silently replacing a tensor.
pub fn strip_module_prefix(w: WeightFile) -> WeightFile {
    let WeightFile { source, tensors, metadata } = w;
    let mut out = BTreeMap::new();
    let mut clashes = Vec::new();
    let originals: std::collections::BTreeSet<String> = tensors.keys().cloned().collect();
    for (name, t) in tensors {
        let parts: Vec<&str> = name.split('.').collect();
        let kept: Vec<&str> =
            parts.iter().enumerate().filter(|(i, p)| *i == 0 || **p != "module").map(|(_, p)| *p).collect();
        let new = kept.join(".");
        if new != name && (out.contains_key(&new) || originals.contains(&new)) {
            clashes.push((name, t));
        } else {
            out.insert(new, t);
        }
    }
    for (name, t) in clashes {
        out.insert(name, t);
    }
    WeightFile { source, tensors: out, metadata }
}

/// A plain pickle holding a list of strings, e.g. AttnGAN's `train/filenames.pickle`
/// (Python 2 `str` arrives as bytes, Python 3 `str` as text; both become `String`). Read with
/// the same VM as checkpoints, so nothing in the file is ever imported or called.
pub fn load_string_list(path: &Path) -> Result<Vec<String>> {
    let data = std::fs::read(path).map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    let vm = Vm { data: &data, pos: 0, file: path, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() };
    let items = match vm.run()? {
        Value::List(l) => l.borrow().clone(),
        Value::Tuple(t) => t.as_ref().clone(),
        other => return Err(Error::Other(format!("{}: expected a pickled list of names, found a {}", path.display(), kind(&other)))),
    };
    items
        .into_iter()
        .map(|v| match v {
            Value::Str(s) => Ok(s),
            Value::Bytes(b) => String::from_utf8(b).map_err(|_| Error::Other(format!("{}: a name is not UTF-8", path.display()))),
            other => Err(Error::Other(format!("{}: expected strings in the list, found a {}", path.display(), kind(&other)))),
        })
        .collect()
}
