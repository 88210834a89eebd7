//! Argon2id (the `argon2` crate's defaults: version 0x13, 19 MiB, 2
//! passes, 1 lane — OWASP's recommendation), stored as PHC strings.
//!
//! Logins verify with [`verify_in`], in memory the caller keeps (one
//! buffer per hashing thread): allocating 19 MiB per check leaves freed
//! copies in the allocator's per-thread arenas (measured: ~12 of them,
//! 230 MiB, after 16 sequential checks on two threads).

use argon2::Argon2;
use argon2::Block;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::OperatorError;

/// A PHC string for `password`, with a fresh random salt.
pub fn hash(password: &str) -> Result<String, OperatorError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| OperatorError::Hash(e.to_string()))
}

/// Whether `password` matches `phc`. A malformed stored hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Most Argon2 memory a stored hash may ask for (64 MiB): a hash asking
/// for more never matches.
const MAX_BLOCKS: usize = 64 * 1024;

/// Memory for [`verify_in`], sized for the default parameters.
pub fn memory() -> Vec<Block> {
    vec![Block::default(); argon2::Params::DEFAULT_M_COST as usize]
}

/// [`verify`] computed in `memory` (grown, up to 64 MiB, if the stored
/// hash asks for more): the same answer, no allocation of its own.
pub fn verify_in(password: &str, phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(h) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&h) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(h.algorithm) else {
        return false;
    };
    let Ok(version) = h.version.map(argon2::Version::try_from).transpose() else {
        return false;
    };
    let need = params.block_count();
    if need > MAX_BLOCKS {
        return false;
    }
    if memory.len() < need {
        memory.resize(need, Block::default());
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    if argon
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..need])
        .is_err()
    {
        return false;
    }
    // `Output`'s equality is constant-time.
    argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

/// A hash to verify against when the name is unknown, so a login for a
/// name that does not exist costs the same time as one that does.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("decoy password, never matches anything").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("x", "not a phc string"));
        let mut m = memory();
        assert!(verify_in("correct horse battery", &h, &mut m));
        assert!(!verify_in("correct horse batterY", &h, &mut m));
        assert!(!verify_in("x", "not a phc string", &mut m));
        assert!(!verify_in(
            "x",
            "$argon2id$v=19$m=1048576,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            &mut m
        ));
        assert_eq!(m.len(), argon2::Params::DEFAULT_M_COST as usize);
        assert_ne!(hash("same").unwrap(), hash("same").unwrap(), "salted");
    }
}
