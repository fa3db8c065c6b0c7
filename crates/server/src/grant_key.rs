//! Grant keys: a secret that only a grant's holder ever sees, required to
//! renew or release it.
//!
//! Holder and token are public: GET, every 409 and every watch line show
//! them. So they cannot be what proves that a renewal or release comes
//! from the holder. With `--grant-secret FILE` (the same file on every
//! node), each 201 also carries `key = HMAC-SHA256(secret, name, holder,
//! token)`, cut to 128 bits. Any node can check a key without storing
//! anything, and no one without the secret can make one. The secret is
//! read at start only: changing it makes every grant's key wrong, so its
//! holder loses the lease at its next renewal.

use ring::hmac;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tenure_core::{HolderId, LeaseName, Token};

/// Bytes of the MAC a key carries.
const KEY_BYTES: usize = 16;
/// The shortest secret accepted, in characters.
const MIN_SECRET_CHARS: usize = 32;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantSecretError {
    #[error("cannot read the grant secret {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the grant secret in {path} is {chars} characters; it must be at least {MIN_SECRET_CHARS} \
         (`tenure certs create` makes one)"
    )]
    TooShort { path: PathBuf, chars: usize },
    #[error("cannot write a grant secret to {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no randomness for a grant secret")]
    Random,
}

/// Makes and checks grant keys.
pub struct GrantKeys {
    key: hmac::Key,
}

impl std::fmt::Debug for GrantKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrantKeys([secret])")
    }
}

/// Why a renewal or release was refused for its key.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyRefusal {
    Missing,
    Wrong,
}

impl GrantKeys {
    /// The secret in `path` (surrounding whitespace ignored).
    pub fn load(path: &Path) -> Result<GrantKeys, GrantSecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| GrantSecretError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let secret = text.trim();
        if secret.chars().count() < MIN_SECRET_CHARS {
            return Err(GrantSecretError::TooShort {
                path: path.to_path_buf(),
                chars: secret.chars().count(),
            });
        }
        Ok(GrantKeys {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
        })
    }

    /// The key of grant `token` of `name` to `holder`, in hex.
    pub fn key_of(&self, name: &LeaseName, holder: &HolderId, token: Token) -> String {
        let mut context = hmac::Context::with_key(&self.key);
        // Lengths first, so that no two (name, holder) pairs run together
        // into the same bytes.
        for part in [name.as_str(), holder.as_str()] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part.as_bytes());
        }
        context.update(&token.0.to_be_bytes());
        let tag = context.sign();
        tag.as_ref()[..KEY_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `given` is grant `token`'s key.
    pub fn check(
        &self,
        name: &LeaseName,
        holder: &HolderId,
        token: Token,
        given: Option<&str>,
    ) -> Result<(), KeyRefusal> {
        let given = given.ok_or(KeyRefusal::Missing)?;
        let expected = self.key_of(name, holder, token);
        // In constant time: how much of a guess matched must not show.
        let same = given.len() == expected.len()
            && given
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(KeyRefusal::Wrong)
        }
    }
}

/// Write a new random secret to `path` (readable by its owner only),
/// unless one is there already.
pub fn make_secret(path: &Path) -> Result<(), GrantSecretError> {
    if path.exists() {
        return Ok(());
    }
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| GrantSecretError::Random)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let write = |source| GrantSecretError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write)?;
    writeln!(file, "{hex}").map_err(write)?;
    file.sync_all().map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> GrantKeys {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, secret).expect("write");
        GrantKeys::load(&path).expect("load")
    }

    #[test]
    fn a_key_belongs_to_one_grant_and_one_secret() {
        let k = keys("0123456789abcdef0123456789abcdef");
        let (name, holder) = (LeaseName::new("job").unwrap(), HolderId::new("a").unwrap());
        let key = k.key_of(&name, &holder, Token(7));
        assert_eq!(key.len(), 32);
        assert_eq!(k.check(&name, &holder, Token(7), Some(&key)), Ok(()));
        assert_eq!(
            k.check(&name, &holder, Token(8), Some(&key)),
            Err(KeyRefusal::Wrong)
        );
        let other = HolderId::new("b").unwrap();
        assert_eq!(
            k.check(&name, &other, Token(7), Some(&key)),
            Err(KeyRefusal::Wrong)
        );
        assert_eq!(
            k.check(&name, &holder, Token(7), None),
            Err(KeyRefusal::Missing)
        );
        let elsewhere = keys("another secret, another cluster!!");
        assert_ne!(elsewhere.key_of(&name, &holder, Token(7)), key);
    }

    #[test]
    fn name_and_holder_do_not_run_together() {
        let k = keys("0123456789abcdef0123456789abcdef");
        let ab = k.key_of(
            &LeaseName::new("ab").unwrap(),
            &HolderId::new("c").unwrap(),
            Token(1),
        );
        let a_bc = k.key_of(
            &LeaseName::new("a").unwrap(),
            &HolderId::new("bc").unwrap(),
            Token(1),
        );
        assert_ne!(ab, a_bc);
    }

    #[test]
    fn a_short_secret_is_refused_and_a_made_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "short").expect("write");
        assert!(matches!(
            GrantKeys::load(&path),
            Err(GrantSecretError::TooShort { chars: 5, .. })
        ));
        let made = dir.path().join("made");
        make_secret(&made).expect("make");
        let first = std::fs::read_to_string(&made).expect("read");
        make_secret(&made).expect("kept");
        assert_eq!(std::fs::read_to_string(&made).expect("read"), first);
        GrantKeys::load(&made).expect("a made secret loads");
    }
}
