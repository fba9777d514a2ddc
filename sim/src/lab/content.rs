//! The bytes of a scenario's files, made once per process and shared.
//!
//! A sweep runs one scenario for many seeds, and every run needs the same
//! files: staged into the server's root before it starts, and compared with
//! what the clients received after it ends. rpi4-netboot's 11 MB of
//! generated content cost more than its trace to make twice per run;
//! [`shared`] makes each (size, seed) once and hands out the one copy.
//! [`Staging`] does the same for the files on disk: each is written once per
//! sweep and hard-linked into every run's root (the server never writes a
//! file in place: an upload is a new file renamed over the name, so a run
//! cannot change what the next run is served).

use super::scenario::{generate, FileContent, FileSpec, Scenario};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// At most this much generated content stays cached; beyond it the oldest
/// entries are let go (a later run makes them again).
const CACHE_BYTES: usize = 256 << 20;

#[derive(Default)]
struct Cache {
    entries: BTreeMap<(u64, u64), Arc<[u8]>>,
    order: VecDeque<(u64, u64)>,
    bytes: usize,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// [`generate`]'s bytes for (size, seed), made once while they stay cached.
pub fn generated(size: u64, seed: u64) -> Arc<[u8]> {
    let key = (size, seed);
    if let Some(hit) = cache()
        .lock()
        .ok()
        .and_then(|c| c.entries.get(&key).cloned())
    {
        return hit;
    }
    // Made outside the lock: two threads may both make it once.
    let made: Arc<[u8]> = generate(size, seed).into();
    if made.len() <= CACHE_BYTES {
        if let Ok(mut c) = cache().lock() {
            if !c.entries.contains_key(&key) {
                while c.bytes + made.len() > CACHE_BYTES {
                    let Some(old) = c.order.pop_front() else {
                        break;
                    };
                    if let Some(gone) = c.entries.remove(&old) {
                        c.bytes -= gone.len();
                    }
                }
                c.bytes += made.len();
                c.order.push_back(key);
                c.entries.insert(key, made.clone());
            }
        }
    }
    made
}

/// The bytes of inline or generated content (`None` for a path or link),
/// shared (see the module).
pub fn shared(content: &FileContent) -> Option<Arc<[u8]>> {
    match content {
        FileContent::Inline(b) => Some(b.as_slice().into()),
        FileContent::Generated { size, seed } => Some(generated(*size, *seed)),
        FileContent::Path(_) | FileContent::Symlink(_) => None,
    }
}

/// The bytes of one `[[files]]` entry (`None` for a symlink, or a path
/// that cannot be read).
pub fn file_bytes(scenario: &Scenario, f: &FileSpec) -> Option<Arc<[u8]>> {
    match &f.content {
        FileContent::Path(p) => std::fs::read(source_path(scenario, p)).ok().map(Arc::from),
        other => shared(other),
    }
}

/// Where a `path = ...` entry's bytes are read from.
fn source_path(scenario: &Scenario, p: &Path) -> PathBuf {
    scenario.path.parent().unwrap_or(Path::new(".")).join(p)
}

/// Files written once per sweep and hard-linked into each run's root (see
/// the module). Dropping it removes them; the runs' roots keep their links.
pub struct Staging {
    dir: tempfile::TempDir,
    /// Where each content's one copy is, by what it is.
    written: Mutex<BTreeMap<String, PathBuf>>,
}

impl Staging {
    pub fn new() -> io::Result<Staging> {
        Ok(Staging {
            dir: tempfile::Builder::new()
                .prefix("tftplab-staging")
                .tempdir()?,
            written: Mutex::default(),
        })
    }

    /// The one copy of `f`'s content, written on first use; `None` for
    /// content not worth sharing (inline bytes, links) or that could not be
    /// written (the caller then writes it itself and says why if that
    /// fails too).
    fn copy_of(&self, scenario: &Scenario, f: &FileSpec) -> Option<PathBuf> {
        let key = match &f.content {
            FileContent::Generated { size, seed } => format!("generated-{size}-{seed}"),
            FileContent::Path(p) => {
                let source = std::fs::canonicalize(source_path(scenario, p)).ok()?;
                format!(
                    "path-{}",
                    crate::shard::fnv64(source.as_os_str().as_encoded_bytes())
                )
            }
            FileContent::Inline(_) | FileContent::Symlink(_) => return None,
        };
        let mut written = self.written.lock().ok()?;
        if let Some(p) = written.get(&key) {
            return Some(p.clone());
        }
        let path = self.dir.path().join(&key);
        std::fs::write(&path, file_bytes(scenario, f)?).ok()?;
        written.insert(key, path.clone());
        Some(path)
    }
}

/// Writes the scenario's files into `root`: inline and generated content,
/// files named by path (relative to the scenario file), and symbolic links;
/// with `staging`, a link to its one copy where it has one. The message
/// names the file that could not be written.
pub fn stage(scenario: &Scenario, root: &Path, staging: Option<&Staging>) -> Result<(), String> {
    for f in &scenario.files {
        let path = root.join(f.name.trim_start_matches('/'));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("staging {}: {e}", f.name))?;
        }
        let linked = || {
            let copy = staging?.copy_of(scenario, f)?;
            std::fs::hard_link(copy, &path).ok()
        };
        let written = match &f.content {
            #[cfg(unix)]
            FileContent::Symlink(target) => std::os::unix::fs::symlink(target, &path),
            _ if linked().is_some() => Ok(()),
            _ => match file_bytes(scenario, f) {
                Some(bytes) => std::fs::write(&path, bytes),
                None => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "source file missing",
                )),
            },
        };
        written.map_err(|e| format!("staging {}: {e}", f.name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_content_is_made_once_and_equals_generate() {
        let a = generated(100_000, 7);
        let b = generated(100_000, 7);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, generate(100_000, 7).as_slice());
        assert_ne!(&*generated(100_000, 8), &*a);
    }

    #[test]
    fn a_staged_file_is_one_copy_linked_into_each_root_and_survives_an_upload() {
        use std::os::unix::fs::MetadataExt;
        let scenario = Scenario::parse(
            "[[files]]\nname = \"boot/kernel.img\"\nsize = 5000\nseed = 3\n\n\
             [[files]]\nname = \"config.txt\"\ncontent = \"a=1\\n\"\n\n\
             [[clients]]\nname = \"b\"\nprofile = \"u-boot\"\n\
             actions = [{ get = \"boot/kernel.img\" }]\n",
            Path::new("staging-test.toml"),
        )
        .expect("loads");
        let staging = Staging::new().expect("temp dir");
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        stage(&scenario, one.path(), Some(&staging)).expect("stages");
        stage(&scenario, two.path(), Some(&staging)).expect("stages");
        let (a, b) = (
            one.path().join("boot/kernel.img"),
            two.path().join("boot/kernel.img"),
        );
        assert_eq!(std::fs::read(&a).unwrap(), generate(5000, 3));
        assert_eq!(
            std::fs::metadata(&a).unwrap().ino(),
            std::fs::metadata(&b).unwrap().ino()
        );
        assert_eq!(
            std::fs::read(one.path().join("config.txt")).unwrap(),
            b"a=1\n"
        );
        // An upload replaces the name, as the store does: the other root
        // still has the staged bytes.
        let temp = one.path().join("boot/.upload");
        std::fs::write(&temp, b"new").unwrap();
        std::fs::rename(&temp, &a).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), generate(5000, 3));
        // Without staging, the same files, each its own.
        let three = tempfile::tempdir().unwrap();
        stage(&scenario, three.path(), None).expect("stages");
        let c = three.path().join("boot/kernel.img");
        assert_eq!(std::fs::read(&c).unwrap(), generate(5000, 3));
        assert_ne!(
            std::fs::metadata(&c).unwrap().ino(),
            std::fs::metadata(&b).unwrap().ino()
        );
    }
}
