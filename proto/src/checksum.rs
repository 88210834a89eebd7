//! Checksums carried on the wire.
//!
//! Each batch carries the CRC-32C of its uncompressed bytes. A transmission
//! carries a digest over the ordered list of its batches: SHA-256 of, for
//! each batch in sequence order, `seq (u32 BE) || rows (u64 BE) || crc32c (u32 BE)`.
//! The collector recomputes it from its batch ledger at commit, so a batch
//! lost, doubled, reordered or swapped is detected before anything is visible.

use sha2::{Digest, Sha256};

/// CRC-32C (Castagnoli) of a batch's uncompressed bytes.
pub fn crc32c(raw: &[u8]) -> u32 {
    crc32c::crc32c(raw)
}

/// Incremental digest of a transmission's batch list (see module doc).
#[derive(Default, Clone)]
pub struct TransmissionDigest {
    hasher: Sha256,
    batches: u32,
    rows: u64,
}

impl TransmissionDigest {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next batch; batches must be added in increasing `seq` order.
    pub fn add(&mut self, seq: u32, rows: u64, crc: u32) {
        self.hasher.update(seq.to_be_bytes());
        self.hasher.update(rows.to_be_bytes());
        self.hasher.update(crc.to_be_bytes());
        self.batches += 1;
        self.rows += rows;
    }

    pub fn batches(&self) -> u32 {
        self.batches
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Lowercase hex SHA-256.
    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_depends_on_order_and_content() {
        let mut a = TransmissionDigest::new();
        a.add(1, 10, 0xdead_beef);
        a.add(2, 5, 0x1234_5678);
        let mut b = TransmissionDigest::new();
        b.add(2, 5, 0x1234_5678);
        b.add(1, 10, 0xdead_beef);
        let mut c = TransmissionDigest::new();
        c.add(1, 10, 0xdead_beef);
        c.add(2, 5, 0x1234_5678);
        assert_eq!(c.rows(), 15);
        assert_eq!(c.batches(), 2);
        let (a, b, c) = (a.finish(), b.finish(), c.finish());
        assert_ne!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn crc_is_castagnoli() {
        // Known answer for "123456789" (CRC-32C check value).
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }
}
