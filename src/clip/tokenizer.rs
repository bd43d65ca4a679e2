//! CLIP's byte-level BPE tokenizer, as CLIP's text encoder expects its input: `[BOS, tokens…,
//! EOS, 0, 0, …]`, exactly `context_length` (77) ids.
//!
//! The tokenizer itself is a Hugging Face `tokenizers` JSON built from CLIP's own vocabulary by
//! `tools/reference/build_tokenizer.py`, embedded gzipped (0.55 MB instead of 1.5 MB). Beyond
//! the layout of openai/clip-vit-base-patch32's tokenizer.json, it reproduces most of the text
//! cleanup CLIP runs first (ftfy, HTML entities) as normalizers, so prompts with curly quotes,
//! `&amp;`, ligatures or fullwidth letters get CLIP's ids; `tests/tokenizer.rs` compares against
//! ids from CLIP's Python tokenizer.
//!
//! Padding and truncation are done here rather than by the tokenizer: CLIP pads with 0 where
//! Hugging Face would pad with EOS, and a cut prompt must still end in EOS because the encoder
//! reads the sentence embedding at the EOS position ([`eot_index`]).

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// `<|startoftext|>`.
pub const BOS: u32 = 49406;
/// `<|endoftext|>`; also the largest id, which is how CLIP's encoder finds it.
pub const EOS: u32 = 49407;
/// 256 byte tokens, the same with `</w>`, 48,894 merges, BOS and EOS.
pub const VOCAB_SIZE: usize = 49408;
/// The context length of every released CLIP text encoder.
pub const CONTEXT_LENGTH: usize = 77;

static BUNDLED: &[u8] = include_bytes!("../../assets/tokenizer.json.gz");

/// CLIP's tokenizer. Cheap to share: `encode` takes `&self` and the type is `Send + Sync`.
pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    /// A tokenizer.json without a post-processor leaves BOS/EOS to us.
    add_specials: bool,
}

/// Short on purpose: the inner tokenizer's derived Debug would print all 49,408 tokens.
impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("add_specials", &self.add_specials)
            .finish()
    }
}

/// One prompt's ids, ready for the text encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Exactly `context_length` ids: BOS, the prompt's tokens, EOS, then 0s.
    pub ids: Vec<u32>,
    /// The prompt did not fit and lost its tail (EOS is still last), so the CLI can say so.
    pub truncated: bool,
    /// How many ids the whole prompt takes, BOS and EOS included, before truncation.
    pub original_len: usize,
}

impl Encoded {
    /// Where the encoder reads the sentence embedding; see [`eot_index`].
    pub fn eot_index(&self) -> usize {
        eot_index(&self.ids)
    }
}

impl ClipTokenizer {
    /// The tokenizer built into the binary, so generating needs no extra file.
    pub fn bundled() -> Result<Self> {
        Self::from_bytes(BUNDLED, "the bundled assets/tokenizer.json.gz")
    }

    /// A tokenizer.json, plain or gzipped (told apart by the gzip magic, not the name). Hugging
    /// Face's own CLIP tokenizer.json loads too; it lacks CLIP's ftfy cleanup.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Other(format!("cannot read tokenizer file {}: {e}", path.display())))?;
        Self::from_bytes(&bytes, &format!("tokenizer file {}", path.display()))
    }

    fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let json = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::with_capacity(bytes.len() * 3);
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .map_err(|e| Error::Other(format!("{origin} is not valid gzip: {e}")))?;
            out
        } else {
            bytes.to_vec()
        };
        let inner = tokenizers::Tokenizer::from_bytes(&json)
            .map_err(|e| Error::Other(format!("{origin} is not a Hugging Face tokenizer.json: {e}")))?;

        // The ids must be CLIP's: the text encoder's embedding table is indexed by them.
        let size = inner.get_vocab_size(true);
        let bos = inner.token_to_id("<|startoftext|>");
        let eos = inner.token_to_id("<|endoftext|>");
        if size != VOCAB_SIZE || bos != Some(BOS) || eos != Some(EOS) {
            return Err(Error::Other(format!(
                "{origin} is not CLIP's tokenizer: {size} ids, <|startoftext|> = {bos:?}, \
                 <|endoftext|> = {eos:?} (CLIP: {VOCAB_SIZE} ids, {BOS}, {EOS})"
            )));
        }
        let mut tok = ClipTokenizer { inner, add_specials: false };
        match tok.raw_ids("", origin)?.as_slice() {
            [] => tok.add_specials = true,
            [BOS, EOS] => {}
            other => {
                return Err(Error::Other(format!(
                    "{origin}: its post-processor turns an empty prompt into {other:?}, \
                     expected [{BOS}, {EOS}] or nothing"
                )))
            }
        }
        Ok(tok)
    }

    /// BOS, the prompt's tokens and EOS, however long.
    fn raw_ids(&self, text: &str, origin: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Other(format!("{origin} failed to tokenize {text:?}: {e}")))?;
        let ids = enc.get_ids();
        if !self.add_specials {
            return Ok(ids.to_vec());
        }
        let mut out = Vec::with_capacity(ids.len() + 2);
        out.push(BOS);
        out.extend_from_slice(ids);
        out.push(EOS);
        Ok(out)
    }

    /// `clip.tokenize(text, context_length, truncate=True)`: BOS … EOS padded with 0; a prompt
    /// that does not fit keeps its first `context_length - 1` ids and ends in EOS.
    pub fn encode(&self, text: &str, context_length: usize) -> Result<Encoded> {
        if context_length < 2 {
            return Err(Error::Other(format!(
                "context length {context_length} cannot hold BOS and EOS; CLIP uses {CONTEXT_LENGTH}"
            )));
        }
        let mut ids = self.raw_ids(text, "the CLIP tokenizer")?;
        let original_len = ids.len();
        let truncated = original_len > context_length;
        if truncated {
            ids.truncate(context_length);
            ids[context_length - 1] = EOS;
        }
        ids.resize(context_length, 0);
        Ok(Encoded { ids, truncated, original_len })
    }

    /// Text back from ids: what lies between a leading BOS and the first EOS (after it comes
    /// padding; 0 inside a prompt is the token "!"). Words come out separated by spaces as in
    /// CLIP's `decode` ("it 's"), enough to show the user where a prompt was cut.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let ids = ids.strip_prefix(&[BOS]).unwrap_or(ids);
        let ids = &ids[..ids.iter().position(|&i| i == EOS).unwrap_or(ids.len())];
        self.inner
            .decode(ids, true)
            .map(|s| s.trim_end().to_string())
            .map_err(|e| Error::Other(format!("cannot decode CLIP token ids: {e}")))
    }
}

/// The position CLIP's text encoder pools: `text.argmax(dim=-1)`, the first occurrence of the
/// largest id. EOS (49407) is the largest id, so this is the end of the prompt; a prompt that
/// types `<|endoftext|>` itself gets that earlier position, as in CLIP. 0 for no ids.
pub fn eot_index(ids: &[u32]) -> usize {
    let mut best = 0;
    for (i, &id) in ids.iter().enumerate() {
        if id > ids[best] {
            best = i;
        }
    }
    best
}
