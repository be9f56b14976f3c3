//! Tokens, password hashes and signatures.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// A random token: `prefix` + 32 random bytes in hex.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    // The OS random source failing is not recoverable.
    getrandom::fill(&mut bytes).expect("OS random source");
    format!("{prefix}{}", hex::encode(bytes))
}

/// A random id: `prefix` + 12 random bytes in hex.
pub fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("OS random source");
    format!("{prefix}{}", hex::encode(bytes))
}

/// SHA-256 of a random token, in hex: how tokens are stored (they carry 192 random bits, so a
/// fast hash is enough; passwords use argon2).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// An argon2 hash of a password.
///
/// # Errors
/// When hashing fails (it does not for valid parameters).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("OS random source");
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// Whether `password` matches an argon2 hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// An argon2 hash of a password nobody has, made once: a login for an unknown email verifies
/// against it, so that it costs what a known email costs.
pub fn dummy_password_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&random_token("")).expect("argon2 with default parameters"))
}

/// Hex HMAC-SHA256 of `message` with `key`.
pub fn hmac_hex(key: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` (hex) is the HMAC-SHA256 of `message` with `key`, in constant time.
pub fn hmac_verify(key: &str, message: &[u8], signature: &str) -> bool {
    let Ok(sig) = hex::decode(signature.trim()) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("hunter2").unwrap();
        assert!(verify_password("hunter2", &h));
        assert!(!verify_password("hunter3", &h));
        assert!(!verify_password("hunter2", "not a hash"));
    }

    #[test]
    fn hmac_known_vector_and_verify() {
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_hex("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let sig = hmac_hex("k", b"user_1");
        assert!(hmac_verify("k", b"user_1", &sig));
        assert!(!hmac_verify("k", b"user_2", &sig));
        assert!(!hmac_verify("k", b"user_1", "zz"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = random_token("vt_");
        assert!(a.starts_with("vt_") && a.len() == 3 + 48);
        assert_ne!(a, random_token("vt_"));
        assert_eq!(token_hash("x").len(), 64);
    }
}
