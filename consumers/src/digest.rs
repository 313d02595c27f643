//! A stable 64-bit digest of a read model's state.
//!
//! FNV-1a over every entry in key order, each field prefixed with its length
//! so that `("ab", "c")` and `("a", "bc")` differ. Stable across processes,
//! platforms and versions (no random seeds), which is what comparing a
//! rebuilt model with the live one needs; not a cryptographic hash.

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// An incremental FNV-1a 64 digest of key/value entries.
#[derive(Debug, Clone)]
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Self::new()
    }
}

impl Digest {
    /// A digest of no entries.
    pub fn new() -> Self {
        Self(OFFSET_BASIS)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(PRIME);
        }
    }

    /// Adds one entry; call in key order.
    pub fn entry(&mut self, key: &[u8], value: &[u8]) {
        self.bytes(&(key.len() as u64).to_be_bytes());
        self.bytes(key);
        self.bytes(&(value.len() as u64).to_be_bytes());
        self.bytes(value);
    }

    /// The digest value.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Digest;

    #[test]
    fn field_boundaries_matter_and_values_are_stable() {
        let mut a = Digest::new();
        a.entry(b"ab", b"c");
        let mut b = Digest::new();
        b.entry(b"a", b"bc");
        assert_ne!(a.finish(), b.finish());
        assert_eq!(Digest::new().finish(), 0xcbf2_9ce4_8422_2325);
    }
}
