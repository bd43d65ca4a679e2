//! Weight files on the host: reading Hugging Face / ratlip safetensors, converting f16 and
//! bf16 to f32, and handing tensors out by name with their shapes checked.
//!
//! Loading is "take what you expect": a model asks for each tensor by name and shape, and
//! `finish` reports what nobody asked for. A missing, mis-shaped or unexpected tensor is an
//! error that names it (and both shapes), so a wrong file never half-loads silently.

pub mod clip_names;
pub mod pth;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A tensor in host memory, row-major f32.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> HostTensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        HostTensor { shape, data }
    }

    /// The transpose of a 2-D tensor (HF Linear weights are [out, in]; OpenAI's projections
    /// are [in, out]).
    pub fn transposed(&self) -> HostTensor {
        assert_eq!(self.shape.len(), 2, "transposed() needs a matrix");
        let (r, c) = (self.shape[0], self.shape[1]);
        let mut data = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                data[j * r + i] = self.data[i * c + j];
            }
        }
        HostTensor { shape: vec![c, r], data }
    }

    /// Rows stacked along dim 0 (q, k, v → in_proj).
    pub fn concat0(parts: &[HostTensor]) -> HostTensor {
        let mut shape = parts[0].shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        HostTensor { shape, data: parts.iter().flat_map(|p| p.data.iter().copied()).collect() }
    }
}

/// Tensors by name plus the file's string metadata.
pub struct WeightFile {
    pub source: PathBuf,
    tensors: BTreeMap<String, HostTensor>,
    pub metadata: HashMap<String, String>,
}

/// Element types found in weight files, decoded little-endian to f32. One decoder serves
/// safetensors and torch's `.pth` storages.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ElementType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl ElementType {
    pub(crate) fn size(self) -> usize {
        match self {
            ElementType::F64 | ElementType::I64 => 8,
            ElementType::F32 | ElementType::I32 => 4,
            ElementType::F16 | ElementType::BF16 | ElementType::I16 => 2,
            ElementType::I8 | ElementType::U8 | ElementType::Bool => 1,
        }
    }

    /// One element from its `size()` little-endian bytes.
    pub(crate) fn read(self, b: &[u8]) -> f32 {
        match self {
            ElementType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            ElementType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            ElementType::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            ElementType::F64 => f64::from_le_bytes(b[..8].try_into().unwrap()) as f32,
            ElementType::I64 => i64::from_le_bytes(b[..8].try_into().unwrap()) as f32,
            ElementType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            ElementType::I16 => i16::from_le_bytes([b[0], b[1]]) as f32,
            ElementType::I8 => b[0] as i8 as f32,
            ElementType::U8 | ElementType::Bool => b[0] as f32,
        }
    }
}

fn to_f32(name: &str, view: &safetensors::tensor::TensorView<'_>, path: &Path) -> Result<Vec<f32>> {
    use safetensors::Dtype;
    let element = match view.dtype() {
        Dtype::F32 => ElementType::F32,
        Dtype::F16 => ElementType::F16,
        Dtype::BF16 => ElementType::BF16,
        Dtype::F64 => ElementType::F64,
        Dtype::I64 => ElementType::I64,
        other => {
            return Err(Error::Other(format!(
                "{}: tensor {name} has dtype {other:?}; ratlip reads f32, f16, bf16, f64 and i64",
                path.display()
            )))
        }
    };
    Ok(view.data().chunks_exact(element.size()).map(|b| element.read(b)).collect())
}

impl WeightFile {
    pub fn from_tensors(source: impl Into<PathBuf>, tensors: BTreeMap<String, HostTensor>) -> WeightFile {
        WeightFile { source: source.into(), tensors, metadata: HashMap::new() }
    }

    /// Reads a whole safetensors file. A truncated or corrupt file is an error naming it.
    pub fn load(path: &Path) -> Result<WeightFile> {
        let bytes = std::fs::read(path).map_err(|e| Error::Other(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&bytes, path)
    }

    /// The `__metadata__` of a safetensors file's header, without reading its tensors.
    pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
        use std::io::Read;
        let bad = |e: String| Error::Other(format!("{}: bad safetensors header: {e}", path.display()));
        let mut f = std::fs::File::open(path).map_err(|e| Error::Other(format!("cannot read {}: {e}", path.display())))?;
        let mut len = [0u8; 8];
        f.read_exact(&mut len).map_err(|e| bad(e.to_string()))?;
        let len = u64::from_le_bytes(len);
        // safetensors caps the header at 100 MB; a larger length is not a header.
        if len > 100_000_000 {
            return Err(bad(format!("a header of {len} bytes")));
        }
        let mut header = vec![0u8; len as usize];
        f.read_exact(&mut header).map_err(|e| bad(e.to_string()))?;
        let v: serde_json::Value = serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
        Ok(v.get("__metadata__")
            .and_then(|m| m.as_object())
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default())
    }

    pub fn parse(bytes: &[u8], path: &Path) -> Result<WeightFile> {
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
            Error::Other(format!("{} is not a valid safetensors file (truncated or corrupt?): {e}", path.display()))
        })?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::Other(format!("{}: bad safetensors header: {e}", path.display())))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.iter() {
            let data = to_f32(name, &view, path)?;
            tensors.insert(name.to_string(), HostTensor { shape: view.shape().to_vec(), data });
        }
        Ok(WeightFile { source: path.to_path_buf(), tensors, metadata: meta.metadata().clone().unwrap_or_default() })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// Removes and returns `name`, checking its shape.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let t = self.tensors.remove(name).ok_or_else(|| {
            Error::Other(format!("{}: missing tensor {name} (expected shape {shape:?})", self.source.display()))
        })?;
        if t.shape != shape {
            return Err(Error::Other(format!(
                "{}: tensor {name} has shape {:?}, expected {shape:?}",
                self.source.display(),
                t.shape
            )));
        }
        Ok(t)
    }

    /// Removes and returns `name` whatever its shape (for callers that infer sizes).
    pub fn take_any(&mut self, name: &str) -> Option<HostTensor> {
        self.tensors.remove(name)
    }

    /// Puts a tensor in (renaming during import).
    pub fn insert(&mut self, name: String, t: HostTensor) {
        self.tensors.insert(name, t);
    }

    /// Errors if anything was not taken, naming up to 10 of the leftovers.
    pub fn finish(self) -> Result<()> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        let names: Vec<String> =
            self.tensors.iter().take(10).map(|(n, t)| format!("{n} {:?}", t.shape)).collect();
        Err(Error::Other(format!(
            "{}: {} unexpected tensor(s): {}{}",
            self.source.display(),
            self.tensors.len(),
            names.join(", "),
            if self.tensors.len() > 10 { ", …" } else { "" }
        )))
    }

    /// Keeps only the tensors whose name starts with `prefix`, with the prefix removed.
    pub fn strip_prefix(self, prefix: &str) -> WeightFile {
        let tensors = self
            .tensors
            .into_iter()
            .filter_map(|(n, t)| n.strip_prefix(prefix).map(|s| (s.to_string(), t)))
            .collect();
        WeightFile { source: self.source, tensors, metadata: self.metadata }
    }
}

/// Writes tensors and metadata as safetensors, atomically (temp file + rename): a crash
/// mid-write never leaves a truncated file under the final name.
pub fn save_safetensors(path: &Path, tensors: &BTreeMap<String, HostTensor>, metadata: &HashMap<String, String>) -> Result<()> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, t)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), bytemuck::cast_slice(&t.data))
                .map_err(|e| Error::Other(format!("tensor {n}: {e}")))?;
            Ok((n.clone(), v))
        })
        .collect::<Result<_>>()?;
    let meta = if metadata.is_empty() { None } else { Some(metadata.clone()) };
    let bytes = safetensors::serialize(views, meta).map_err(|e| Error::Other(format!("serialising {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a sibling temp file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("out"), std::process::id()));
    let io = |e: std::io::Error| Error::Other(format!("writing {}: {e}", path.display()));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}
