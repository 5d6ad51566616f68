//! The CQL native protocol codec (v3, v4, v5). No NGINX types.

pub mod compression;
pub mod crc;
pub mod error;
pub mod header;
pub mod reader;
pub mod segment;

pub use compression::Compression;
pub use error::CodecError;
pub use header::{Direction, Flags, Header, Opcode};
pub use reader::{Event, FrameReader};
pub use segment::SegmentHeader;
pub mod messages;
pub mod primitives;
