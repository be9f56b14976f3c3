//! Tokens, password hashes and signatures.

use std::sync::{mpsc, Arc, Mutex};

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

/// The most argon2 memory a stored hash may ask for, in 1 KiB blocks (64 MiB).
const MAX_ARGON2_BLOCKS: usize = 64 * 1024;

/// [`verify_password`] in caller-owned memory: `blocks` is reused from call to call, so a
/// thread that verifies many passwords allocates argon2's 19 MiB once.
pub fn verify_password_in(password: &str, hash: &str, blocks: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(parsed.algorithm), Params::try_from(&parsed))
    else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    if params.block_count() > MAX_ARGON2_BLOCKS {
        return false;
    }
    blocks.resize(params.block_count(), Block::default());
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..]).is_err() {
        return false;
    }
    // `Output` compares in constant time.
    Output::new(&out).is_ok_and(|out| out == expected)
}

type Check = (String, Option<String>, tokio::sync::oneshot::Sender<bool>);

/// A fixed set of threads that verify passwords, each with its own reused argon2 memory: a
/// login flood costs those threads and their memory (threads × 19 MiB), never more, and never
/// blocks the async workers. Checks beyond the queue's room are refused (the caller answers
/// 429), not queued without end.
#[derive(Debug)]
pub struct PasswordChecker {
    tx: mpsc::SyncSender<Check>,
}

impl PasswordChecker {
    /// `threads` verifying threads with room for `queue` waiting checks.
    pub fn new(threads: usize, queue: usize) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Check>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("password-{i}")).spawn(move || {
                let mut blocks = Vec::new();
                loop {
                    let job = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                    let Ok((password, hash, reply)) = job else { return };
                    let hash = match &hash {
                        Some(hash) => hash.as_str(),
                        None => dummy_password_hash(),
                    };
                    let _ = reply.send(verify_password_in(&password, hash, &mut blocks));
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password thread");
            }
        }
        PasswordChecker { tx }
    }

    /// Whether `password` matches `hash`; `None` when too many checks wait already. Without a
    /// hash (an unknown account) the password is checked against [`dummy_password_hash`], which
    /// costs the same and never matches.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Option<bool> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx.try_send((password.to_owned(), hash.map(str::to_owned), reply)).ok()?;
        answer.await.ok()
    }
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
    fn reused_memory_verifies_like_the_library() {
        let h = hash_password("hunter2").unwrap();
        let mut blocks = Vec::new();
        assert!(verify_password_in("hunter2", &h, &mut blocks));
        assert!(!verify_password_in("hunter3", &h, &mut blocks));
        assert!(!verify_password_in("hunter2", "not a hash", &mut blocks));
        assert!(verify_password_in("hunter2", &h, &mut blocks));
        assert_eq!(blocks.len(), 19 * 1024);
    }

    #[tokio::test]
    async fn the_checker_answers_and_refuses_when_full() {
        let h = hash_password("pw-123456").unwrap();
        let checker = PasswordChecker::new(1, 4);
        assert_eq!(checker.verify("pw-123456", Some(&h)).await, Some(true));
        assert_eq!(checker.verify("nope", Some(&h)).await, Some(false));
        assert_eq!(checker.verify("pw-123456", None).await, Some(false));
        let many: Vec<_> = (0..20).map(|_| checker.verify("nope", Some(&h))).collect();
        let answers = futures_util::future::join_all(many).await;
        assert!(answers.iter().any(Option::is_none), "a full queue refuses");
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
