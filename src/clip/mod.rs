//! CLIP, the frozen text and image encoders RATLIP is built around. The text side starts from
//! CLIP's own tokenizer, since the encoder's weights only mean something for its token ids.

pub mod tokenizer;
