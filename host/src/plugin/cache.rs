//! The on-disk cache of compiled components.
//!
//! A cached artefact is native code that wasmtime maps and runs without
//! checking it, so the cache must not become a way to run code sluice did not
//! compile. Promises:
//! - The cache is used only when its directory is a real directory (not a
//!   symlink), owned by the user sluice runs as, and writable by no one else.
//!   sluice creates it with mode 0700.
//! - Every artefact carries an HMAC-SHA256, over its name and bytes, keyed
//!   by a secret that sluice keeps in the cache (`key`, mode 0600, owned by
//!   the user, created once from the OS random source). An artefact is
//!   loaded only when its tag verifies, from the very bytes that were
//!   checked (read into memory, never re-read from disk).
//! - Anything else (a tampered, truncated, foreign or renamed artefact, a
//!   loose directory or key) is not loaded: the component is compiled again
//!   and a warning names the reason.
//! - Artefacts are written to a fresh, unpredictable temporary file and
//!   renamed into place, so a reader never sees half of one.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type Tag = Hmac<Sha256>;

/// Bytes of the tag that ends every artefact.
const TAG_LEN: usize = 32;
/// Bytes of the secret key.
const KEY_LEN: usize = 32;

/// An opened, trusted cache directory.
pub struct Cache {
    dir: PathBuf,
    key: [u8; KEY_LEN],
}

/// Why an artefact or the cache itself was not used.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    /// The cache path is not a directory (a symlink, say).
    #[error("{0} is not a directory")]
    NotDir(PathBuf),
    /// The directory or the key file belongs to another user.
    #[error("{} is owned by uid {owner}, not by this user (uid {me})", .path.display())]
    Owner {
        /// The directory or key file.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// The effective uid sluice runs as.
        me: u32,
    },
    /// The directory is writable by group or others, or the key file is
    /// accessible to them at all.
    #[error("{} has mode {mode:o}: it must not be writable (key: readable) by others", .path.display())]
    Mode {
        /// The directory or key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a regular file of exactly the key's length.
    #[error("{} is not a valid cache key", .0.display())]
    Key(PathBuf),
    /// The artefact's HMAC does not verify (or it is too short to have one).
    #[error("its tag does not verify: it was not written by this cache")]
    Tag,
    /// Reading or creating the directory, the key or an artefact failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Cache {
    /// Open (creating if needed) `dir` as a cache.
    pub fn open(dir: &Path) -> Result<Cache, Untrusted> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let meta = std::fs::symlink_metadata(dir)?;
        if !meta.is_dir() {
            return Err(Untrusted::NotDir(dir.to_owned()));
        }
        check_owner_and_mode(dir, &meta, 0o022)?;
        let key = load_key(&dir.join("key"))?;
        Ok(Cache {
            dir: dir.to_owned(),
            key,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.cwasm"))
    }

    #[allow(clippy::expect_used, reason = "HMAC accepts a key of any length")]
    fn tag(&self, name: &str, bytes: &[u8]) -> Tag {
        let mut mac = Tag::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(bytes);
        mac
    }

    /// The verified artefact stored under `name`; `Ok(None)` when there is
    /// none, `Err` when there is one that must not be loaded.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, Untrusted> {
        let mut data = match std::fs::File::open(self.path(name)) {
            Ok(mut f) => {
                let mut data = Vec::new();
                f.read_to_end(&mut data)?;
                data
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if data.len() < TAG_LEN {
            return Err(Untrusted::Tag);
        }
        let tag = data.split_off(data.len() - TAG_LEN);
        self.tag(name, &data)
            .verify_slice(&tag)
            .map_err(|_| Untrusted::Tag)?;
        Ok(Some(data))
    }

    /// Store `bytes` under `name`, tagged.
    pub fn put(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tag = self.tag(name, bytes).finalize().into_bytes();
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(bytes)?;
        tmp.write_all(&tag)?;
        tmp.as_file().sync_data()?;
        tmp.persist(self.path(name)).map_err(|e| e.error)?;
        Ok(())
    }
}

fn check_owner_and_mode(
    path: &Path,
    meta: &std::fs::Metadata,
    forbidden: u32,
) -> Result<(), Untrusted> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(Untrusted::Owner {
            path: path.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & forbidden != 0 {
        return Err(Untrusted::Mode {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Read the cache key, creating it (0600, random) on first use.
fn load_key(path: &Path) -> Result<[u8; KEY_LEN], Untrusted> {
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    match created {
        Ok(mut f) => {
            let mut key = [0u8; KEY_LEN];
            std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
            f.write_all(&key)?;
            f.sync_all()?;
            return Ok(key);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(Untrusted::Key(path.to_owned()));
    }
    check_owner_and_mode(path, &meta, 0o077)?;
    let mut key = [0u8; KEY_LEN];
    let mut rest = Vec::new();
    f.read_exact(&mut key)
        .map_err(|_| Untrusted::Key(path.to_owned()))?;
    f.read_to_end(&mut rest)?;
    if !rest.is_empty() {
        return Err(Untrusted::Key(path.to_owned()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artefacts_round_trip_and_tampering_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c")).unwrap();
        assert!(cache.get("a").unwrap().is_none());
        cache.put("a", b"native code").unwrap();
        assert_eq!(cache.get("a").unwrap().unwrap(), b"native code");

        // Flip one byte.
        let path = cache.path("a");
        let mut data = std::fs::read(&path).unwrap();
        data[0] ^= 1;
        std::fs::write(&path, &data).unwrap();
        assert!(matches!(cache.get("a"), Err(Untrusted::Tag)));

        // A valid artefact renamed to another name does not verify either.
        cache.put("b", b"other code").unwrap();
        std::fs::copy(cache.path("b"), cache.path("a")).unwrap();
        assert!(matches!(cache.get("a"), Err(Untrusted::Tag)));

        // The same directory opened again keeps its key.
        let again = Cache::open(&dir.path().join("c")).unwrap();
        assert_eq!(again.get("b").unwrap().unwrap(), b"other code");
    }

    #[test]
    fn a_loose_directory_or_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("c");
        Cache::open(&c).unwrap();
        std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(Cache::open(&c), Err(Untrusted::Mode { .. })));
        std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(c.join("key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(Cache::open(&c), Err(Untrusted::Mode { .. })));
        std::fs::set_permissions(c.join("key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Cache::open(&c).is_ok());
    }
}
