//! Secrets: random tokens, kept as PBKDF2-SHA512 hashes in Mosquitto's `$7$` format
//! (`$7$<iterations>$<salt, base64>$<hash, base64>`, 12-byte salt, 64-byte hash).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// PBKDF2 rounds of a new hash. Secrets are 192-bit random tokens, which no number of
/// guesses finds; the rounds protect a password a person chose (Mosquitto's own tool uses
/// 101), and cost about a millisecond per login.
pub const HASH_ITERATIONS: u32 = 1000;
const SALT_BYTES: usize = 12;
const HASH_BYTES: usize = 64;
const SECRET_BYTES: usize = 24;

/// A new secret: 24 random bytes (rand's thread generator, a CSPRNG seeded by the OS), URL-safe base64
/// (32 characters).
pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of `secret`, with a fresh random salt.
pub fn hash_secret(secret: &str) -> String {
    let mut salt = [0u8; SALT_BYTES];
    rand::rng().fill_bytes(&mut salt);
    let hash = derive(secret, &salt, HASH_ITERATIONS);
    format!(
        "$7${HASH_ITERATIONS}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(hash)
    )
}

/// Whether `secret` matches `stored` (a `$7$` hash, as [`hash_secret`] or Mosquitto's
/// `mosquitto_passwd` writes it). A malformed `stored` matches nothing.
pub fn verify_secret(secret: &str, stored: &str) -> bool {
    let Some(rest) = stored.strip_prefix("$7$") else {
        return false;
    };
    let mut parts = rest.split('$');
    let (Some(iterations), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(hash)) = (
        iterations.parse::<u32>(),
        STANDARD.decode(salt),
        STANDARD.decode(hash),
    ) else {
        return false;
    };
    if iterations == 0 || hash.len() != HASH_BYTES {
        return false;
    }
    derive(secret, &salt, iterations).ct_eq(&hash).into()
}

/// A quick fingerprint (SHA-256) of a secret already verified, kept instead of the secret
/// to recognise it again without a second PBKDF2; compared in constant time.
#[derive(Clone)]
pub struct SecretFingerprint([u8; 32]);

impl SecretFingerprint {
    pub fn of(secret: &str) -> Self {
        SecretFingerprint(Sha256::digest(secret.as_bytes()).into())
    }

    pub fn matches(&self, secret: &str) -> bool {
        Self::of(secret).0.ct_eq(&self.0).into()
    }
}

fn derive(secret: &str, salt: &[u8], iterations: u32) -> [u8; HASH_BYTES] {
    let mut out = [0u8; HASH_BYTES];
    pbkdf2::pbkdf2_hmac::<Sha512>(secret.as_bytes(), salt, iterations, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_verifies_against_its_hash_and_nothing_else_does() {
        let secret = new_secret();
        assert_eq!(secret.len(), 32);
        let stored = hash_secret(&secret);
        assert!(stored.starts_with("$7$1000$"), "{stored}");
        assert!(verify_secret(&secret, &stored));
        assert!(!verify_secret(&new_secret(), &stored));
        assert!(!verify_secret("", &stored));
        // Two hashes of one secret differ by their salt.
        assert_ne!(stored, hash_secret(&secret));
        for bad in [
            "",
            "$7$",
            "$6$abc$def",
            "$7$0$AAAA$AAAA",
            "$7$x$AAAA$AAAA",
            "plain",
        ] {
            assert!(!verify_secret(&secret, bad), "{bad}");
        }
    }

    #[test]
    fn a_fingerprint_recognises_its_secret_only() {
        let fingerprint = SecretFingerprint::of("s3cret");
        assert!(fingerprint.matches("s3cret"));
        assert!(!fingerprint.matches("s3cret "));
        assert!(!fingerprint.matches(""));
    }

    /// A hash written by Debian's `mosquitto_passwd` (2.0.11) verifies here; ours verify in
    /// Mosquitto (`tests/device_identity.rs` runs it on a password file of ours).
    #[test]
    fn mosquitto_passwd_hashes_verify() {
        // mosquitto_passwd -b -c FILE sw-01 'correct horse battery staple'
        let stored = "$7$101$2qllcwpICgXTLdiK$y5tYPvrRY7GFo8PgHVmUhIqnIChHpl9JXQxilWTOUI7f4syMdqJ8aYj91r2ewoklfIGhurE2yOco0MYPaHihIw==";
        assert!(verify_secret("correct horse battery staple", stored));
        assert!(!verify_secret("correct horse battery stapler", stored));
    }
}
