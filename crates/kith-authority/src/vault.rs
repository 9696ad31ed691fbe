//! Keys at rest: passphrase → Argon2id → key-encryption key, which unwraps a
//! random master key; the master key seals CA private keys (and, later,
//! secrets' data keys) with AES-256-GCM, binding each ciphertext to the name
//! and version of what it protects through the associated data.

use aws_lc_rs::aead::{Aad, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use zeroize::Zeroizing;

use crate::error::Error;

/// Argon2id cost parameters, stored with the wrapped master key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about a quarter second here, well above
    /// OWASP's minimum (19 MiB, 2 passes).
    fn default() -> Self {
        Self {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

impl KdfParams {
    /// The cheapest parameters [`KdfParams::check`] accepts (19 MiB, 1 pass,
    /// 1 lane): for tests and benchmarks, not for keys worth protecting.
    pub const MINIMUM: Self = Self {
        m_kib: 19 * 1024,
        t: 1,
        p: 1,
    };

    /// Refuse parameters too weak to be a deliberate choice (OWASP's floor).
    pub fn check(&self) -> Result<(), Error> {
        let min = Self::MINIMUM;
        if self.m_kib < min.m_kib || self.t < min.t || self.p < min.p {
            return Err(Error::Invalid(
                "Argon2id parameters below 19 MiB / 1 pass / 1 lane are refused".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn derive(
        &self,
        passphrase: &[u8],
        salt: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, Error> {
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| Error::Invalid(format!("Argon2id parameters: {e}")))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase, salt, out.as_mut())
            .map_err(|e| Error::Invalid(format!("Argon2id: {e}")))?;
        Ok(out)
    }
}

/// A 256-bit AES-GCM key held in zeroized memory.
pub(crate) struct SealKey(Zeroizing<[u8; 32]>);

impl SealKey {
    pub(crate) fn random() -> Result<Self, Error> {
        let mut k = Zeroizing::new([0u8; 32]);
        random_fill(k.as_mut())?;
        Ok(Self(k))
    }

    pub(crate) fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// nonce ‖ ciphertext ‖ tag, the nonce random (96 bits). The plaintext
    /// is copied once, into the output, and encrypted there.
    pub(crate) fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let key = RandomizedNonceKey::new(&AES_256_GCM, self.0.as_ref())
            .map_err(|_| Error::Internal("AES-256-GCM key".into()))?;
        let tag_len = AES_256_GCM.tag_len();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + tag_len);
        out.resize(NONCE_LEN, 0);
        out.extend_from_slice(plaintext);
        let (nonce, tag) = key
            .seal_in_place_separate_tag(Aad::from(aad.as_bytes()), &mut out[NONCE_LEN..])
            .map_err(|_| Error::Internal("AES-256-GCM seal".into()))?;
        out[..NONCE_LEN].copy_from_slice(nonce.as_ref());
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Open what [`SealKey::seal`] made with the same `aad`; `None` if the
    /// key, the associated data or a single byte differs.
    pub(crate) fn open(&self, aad: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, self.0.as_ref()).ok()?;
        let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN]).ok()?;
        let mut buf = Zeroizing::new(sealed[NONCE_LEN..].to_vec());
        let len = key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .ok()?
            .len();
        buf.truncate(len);
        Some(buf)
    }
}

impl SealKey {
    /// [`SealKey::open`] on a buffer the caller owns (a record just read
    /// from the store): decrypted where it lies, no copy of the value.
    pub(crate) fn open_owned(&self, aad: &str, sealed: Vec<u8>) -> Option<SecretBytes> {
        // Wiped on every path out, whether it opens or not.
        let mut buf = SecretBytes {
            buf: sealed,
            len: 0,
        };
        if buf.buf.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let key = aws_lc_rs::aead::LessSafeKey::new(
            aws_lc_rs::aead::UnboundKey::new(&AES_256_GCM, self.0.as_ref()).ok()?,
        );
        let nonce =
            aws_lc_rs::aead::Nonce::try_assume_unique_for_key(&buf.buf[..NONCE_LEN]).ok()?;
        buf.len = key
            .open_within(nonce, Aad::from(aad.as_bytes()), &mut buf.buf, NONCE_LEN..)
            .ok()?
            .len();
        Some(buf)
    }
}

/// A decrypted secret value. The whole buffer it was decrypted in (value,
/// and the bytes the in-place decryption left behind it) is wiped on drop,
/// eight bytes per volatile store instead of one, so wiping a large value
/// costs a fraction of decrypting it.
pub struct SecretBytes {
    buf: Vec<u8>,
    len: usize,
}

impl SecretBytes {
    /// The value.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::ops::Deref for SecretBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({} bytes, redacted)", self.len)
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        wipe(&mut self.buf);
    }
}

/// Zeroize `buf` with volatile stores of the widest aligned words.
pub(crate) fn wipe(buf: &mut [u8]) {
    use zeroize::Zeroize;
    let (head, words, tail) = bytemuck::pod_align_to_mut::<u8, u64>(buf);
    head.zeroize();
    words.zeroize();
    tail.zeroize();
}

pub(crate) fn random_fill(buf: &mut [u8]) -> Result<(), Error> {
    aws_lc_rs::rand::fill(buf).map_err(|_| Error::Internal("system RNG failed".into()))
}

/// A passphrase shorter than 12 bytes is refused: it guards every CA key.
pub(crate) fn check_passphrase_strength(p: &[u8]) -> Result<(), Error> {
    if p.len() < 12 {
        return Err(Error::Invalid(
            "the passphrase must be at least 12 characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_binds_aad_and_detects_tampering() {
        let k = SealKey::random().unwrap();
        let sealed = k.seal("authority/a:root:v1", b"secret").unwrap();
        assert_eq!(
            k.open("authority/a:root:v1", &sealed).unwrap().as_slice(),
            b"secret"
        );
        assert!(k.open("authority/b:root:v1", &sealed).is_none());
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(k.open("authority/a:root:v1", &flipped).is_none());
        let other = SealKey::random().unwrap();
        assert!(other.open("authority/a:root:v1", &sealed).is_none());
        assert_eq!(
            k.open_owned("authority/a:root:v1", sealed.clone())
                .unwrap()
                .as_slice(),
            b"secret"
        );
        assert!(k
            .open_owned("authority/b:root:v1", sealed.clone())
            .is_none());
        assert!(k.open_owned("authority/a:root:v1", flipped).is_none());
        assert!(k.open_owned("authority/a:root:v1", vec![0; 27]).is_none());
    }

    #[test]
    fn wipe_clears_every_byte_whatever_the_alignment() {
        for len in [0, 1, 7, 8, 9, 63, 64, 1000, 4099] {
            let mut v = vec![0xa5u8; len + 3];
            wipe(&mut v[3..]);
            assert!(v[3..].iter().all(|b| *b == 0), "{len}");
            assert!(v[..3].iter().all(|b| *b == 0xa5));
        }
    }
}
