//! Password hashing with Argon2id. Hashing is CPU-bound: call it from a blocking thread.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};
use hamlet_shared::{ErrorCode, ErrorDetail};
use std::sync::OnceLock;

/// Argon2id cost. The defaults are OWASP's recommendation (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct PasswordParams {
    /// Argon2id memory cost in KiB.
    #[arg(
        long = "argon2-memory-kib",
        env = "HAMLET_ARGON2_MEMORY_KIB",
        default_value_t = 19_456
    )]
    pub memory_kib: u32,
    /// Argon2id passes.
    #[arg(
        long = "argon2-iterations",
        env = "HAMLET_ARGON2_ITERATIONS",
        default_value_t = 2
    )]
    pub iterations: u32,
    /// Argon2id lanes.
    #[arg(
        long = "argon2-parallelism",
        env = "HAMLET_ARGON2_PARALLELISM",
        default_value_t = 1
    )]
    pub parallelism: u32,
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 128;

impl PasswordParams {
    fn hasher(&self) -> Result<Argon2<'static>, String> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| format!("invalid Argon2 parameters: {e}"))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// A PHC string (`$argon2id$v=19$m=...`) with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, String> {
        let salt = SaltString::generate(&mut OsRng);
        self.hasher()?
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| format!("hashing failed: {e}"))
    }

    /// Does the same work whether or not the user exists: an unknown user is checked against a
    /// dummy hash of the same cost, so timing does not reveal which usernames exist.
    pub fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        // The parameters are fixed for the life of a process, so one dummy hash serves.
        static DUMMY: OnceLock<String> = OnceLock::new();
        let phc = stored
            .unwrap_or_else(|| DUMMY.get_or_init(|| self.hash("hamlet-dummy-password").unwrap_or_default()));
        // Verification reads the cost from the PHC string itself.
        let ok = PasswordHash::new(phc)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        ok && stored.is_some()
    }
}

/// The password policy: 10 to 128 characters, no control characters, not the username.
pub fn check_policy(username: &str, password: &str) -> Result<(), ErrorDetail> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(ErrorDetail::field(
            "password",
            ErrorCode::InvalidValue,
            format!("password must have at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(ErrorDetail::field(
            "password",
            ErrorCode::TooLong,
            format!("password must have at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    // A NUL or a newline cannot be typed on a phone, and other tools may cut the password there.
    if password.chars().any(char::is_control) {
        return Err(ErrorDetail::field(
            "password",
            ErrorCode::InvalidFormat,
            "password must not contain control characters",
        ));
    }
    if password.trim().eq_ignore_ascii_case(username.trim()) {
        return Err(ErrorDetail::field(
            "password",
            ErrorCode::InvalidValue,
            "password must not be the username",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordParams {
        PasswordParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn hash_and_verify() {
        let p = cheap();
        let h = p.hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(p.verify("correct horse battery", Some(&h)));
        assert!(!p.verify("wrong horse battery", Some(&h)));
        assert!(!p.verify("correct horse battery", None));
        assert!(!p.verify("x", Some("not a phc string")));
    }

    #[test]
    fn policy() {
        assert!(check_policy("lan", "short").is_err());
        assert!(check_policy("nguyenvanlan", "NguyenVanLan").is_err());
        assert!(check_policy("lan", &"x".repeat(129)).is_err());
        assert!(check_policy("lan", "a long enough one").is_ok());
        assert!(check_policy("lan", "a long\0enough one").is_err());
        assert!(check_policy("lan", "a long enough one\n").is_err());
    }
}
