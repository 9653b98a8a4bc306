//! SHA-256 hex digests: content-addressed benchmark images (`images/<sha256[:16]>.<ext>`) and the
//! `sha256_data` field of a benchmark manifest, as Python's `hashlib.sha256(...).hexdigest()`
//! writes them (so the exporter and the loader agree).

use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// SHA-256 of `data` as lowercase hex.
pub fn hex_digest(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::hex_digest;

    #[test]
    fn known_digests() {
        assert_eq!(
            hex_digest(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let long = vec![b'a'; 1000];
        assert_eq!(
            hex_digest(&long),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
        );
    }
}
