//! Batch payloads: one zstd frame holding whole COPY text rows.
//!
//! The agent compresses a batch with its exact content size written in the
//! frame header. The collector refuses a frame before allocating anything
//! when the header's size is missing, differs from the declared `raw_len`, or
//! exceeds its cap; it then decodes into a buffer of exactly that size with a
//! bounded zstd window, so a decompression bomb can cost at most the cap.

use thiserror::Error;

use crate::limits::MAX_ZSTD_WINDOW_LOG;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch declares {declared} raw bytes, above the limit of {limit}")]
    TooLarge { declared: u64, limit: u64 },
    #[error("batch is not a single zstd frame with a declared content size")]
    NoContentSize,
    #[error("zstd frame declares {frame} bytes but the batch declares raw_len {declared}")]
    SizeMismatch { frame: u64, declared: u64 },
    #[error("batch does not decompress: {0}")]
    Corrupt(String),
    #[error("batch checksum mismatch: computed crc32c {computed:08x}, declared {declared:08x}")]
    Checksum { computed: u32, declared: u32 },
}

/// Compresses raw COPY bytes into one zstd frame with the content size set.
pub fn compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    BatchCompressor::new(level)?.compress(raw)
}

/// A zstd context and output buffer kept across a job's batches (a new
/// context per batch costs its workspace allocation each time).
pub struct BatchCompressor {
    zstd: zstd::bulk::Compressor<'static>,
    out: Vec<u8>,
    last: usize,
}

impl BatchCompressor {
    pub fn new(level: i32) -> std::io::Result<Self> {
        let mut zstd = zstd::bulk::Compressor::new(level)?;
        zstd.include_contentsize(true)?;
        zstd.include_checksum(false)?;
        Ok(Self {
            zstd,
            out: Vec::new(),
            last: 0,
        })
    }

    /// Changes the level for the next frames, keeping the context.
    pub fn set_level(&mut self, level: i32) -> std::io::Result<()> {
        self.zstd.set_compression_level(level)
    }

    /// The size of the last frame [`Self::compress_in_place`] produced.
    pub fn last_frame_len(&self) -> usize {
        self.last
    }

    /// One zstd frame with the content size set.
    pub fn compress(&mut self, raw: &[u8]) -> std::io::Result<Vec<u8>> {
        Ok(self.compress_in_place(raw)?.to_vec())
    }

    /// As [`Self::compress`], into the compressor's own buffer.
    pub fn compress_in_place(&mut self, raw: &[u8]) -> std::io::Result<&[u8]> {
        self.out.clear();
        self.out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        let n = self.zstd.compress_to_buffer(raw, &mut self.out)?;
        self.last = n;
        Ok(&self.out[..n])
    }
}

/// Decompresses a batch under a cap, verifying its size and CRC-32C.
pub fn decompress_checked(
    data: &[u8],
    declared_raw_len: u64,
    declared_crc: u32,
    max_raw: u64,
) -> Result<Vec<u8>, BatchError> {
    if declared_raw_len > max_raw {
        return Err(BatchError::TooLarge {
            declared: declared_raw_len,
            limit: max_raw,
        });
    }
    let frame = match zstd::zstd_safe::get_frame_content_size(data) {
        Ok(Some(n)) => n,
        Ok(None) | Err(_) => return Err(BatchError::NoContentSize),
    };
    if frame > max_raw {
        return Err(BatchError::TooLarge {
            declared: frame,
            limit: max_raw,
        });
    }
    if frame != declared_raw_len {
        return Err(BatchError::SizeMismatch {
            frame,
            declared: declared_raw_len,
        });
    }
    let mut d = zstd::bulk::Decompressor::new().map_err(|e| BatchError::Corrupt(e.to_string()))?;
    d.window_log_max(MAX_ZSTD_WINDOW_LOG)
        .map_err(|e| BatchError::Corrupt(e.to_string()))?;
    // `frame` is bounded by `max_raw` above, so this allocation is bounded.
    let raw = d
        .decompress(data, frame as usize)
        .map_err(|e| BatchError::Corrupt(e.to_string()))?;
    if raw.len() as u64 != frame {
        return Err(BatchError::SizeMismatch {
            frame: raw.len() as u64,
            declared: declared_raw_len,
        });
    }
    let computed = crate::checksum::crc32c(&raw);
    if computed != declared_crc {
        return Err(BatchError::Checksum {
            computed,
            declared: declared_crc,
        });
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::crc32c;

    #[test]
    fn round_trip() {
        let raw = b"1\tfoo\n2\t\\N\n".repeat(1000);
        let z = compress(&raw, 3).unwrap();
        let back = decompress_checked(&z, raw.len() as u64, crc32c(&raw), 1 << 20).unwrap();
        assert_eq!(back, raw);
    }

    #[test]
    fn bomb_refused_before_allocation() {
        let raw = vec![0u8; 8 << 20];
        let z = compress(&raw, 3).unwrap();
        assert!(z.len() < 4096, "zeros compress well");
        let err = decompress_checked(&z, raw.len() as u64, crc32c(&raw), 1 << 20).unwrap_err();
        assert!(matches!(err, BatchError::TooLarge { .. }), "{err}");
        // Lying about raw_len does not help: the frame header is checked too.
        let err = decompress_checked(&z, 1000, crc32c(&raw), 1 << 20).unwrap_err();
        assert!(matches!(err, BatchError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn frame_without_size_refused() {
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        std::io::Write::write_all(&mut enc, b"abc\n").unwrap();
        let z = enc.finish().unwrap();
        let err = decompress_checked(&z, 4, crc32c(b"abc\n"), 1 << 20).unwrap_err();
        assert_eq!(err, BatchError::NoContentSize);
    }

    #[test]
    fn corruption_and_checksum_detected() {
        let raw: Vec<u8> = (0..100_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let z = compress(&raw, 3).unwrap();
        let err = decompress_checked(&z, raw.len() as u64, crc32c(&raw) ^ 1, 1 << 22).unwrap_err();
        assert!(matches!(err, BatchError::Checksum { .. }), "{err}");
        let mut bad = z.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        let err = decompress_checked(&bad, raw.len() as u64, crc32c(&raw), 1 << 22).unwrap_err();
        assert!(
            matches!(err, BatchError::Corrupt(_) | BatchError::Checksum { .. }),
            "{err}"
        );
        let err = decompress_checked(b"not zstd", 3, 0, 1 << 22).unwrap_err();
        assert_eq!(err, BatchError::NoContentSize);
    }
}
