use std::fs;
use std::io;
use std::path::Path;
use std::sync::{Arc, Barrier};

use crate::wire::ErrorCode;
use proptest::prelude::*;
use tempfile::TempDir;

use super::*;
use crate::data::{Sink, Source};

/// A temp dir holding `root/` (the store) so tests can put things beside it.
fn setup(configure: impl FnOnce(StoreConfig) -> StoreConfig) -> (TempDir, Store) {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let store = Store::new(configure(StoreConfig::new(&root))).unwrap();
    (tmp, store)
}

fn writable(policy: WritePolicy) -> impl FnOnce(StoreConfig) -> StoreConfig {
    move |c| c.write(policy)
}

fn put(dir: &Path, rel: &str, data: &[u8]) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

fn read_all(store: &Store, name: &str) -> Vec<u8> {
    let mut src = store.open_read(name).unwrap();
    let mut buf = vec![0u8; src.size().unwrap() as usize + 1];
    let n = src.read_at(0, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn code<T>(r: Result<T, StoreError>) -> u16 {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.error_code().0,
    }
}

/// Everything in `dir`, one level, sorted.
fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn upload(store: &Store, name: &str, data: &[u8]) -> io::Result<()> {
    let mut sink = store.open_write(name).map_err(io::Error::other)?;
    sink.write_at(0, data)?;
    sink.commit()
}

#[test]
fn nested_paths_read() {
    let (_t, store) = setup(|c| c);
    put(store.root(), "9ffefdef/start4.elf", b"elf");
    put(store.root(), "overlays/x.dtbo", b"dtbo");
    put(store.root(), "01-dc-a6-32-00-00-01/pxelinux.cfg", b"cfg");
    assert_eq!(read_all(&store, "9ffefdef/start4.elf"), b"elf");
    assert_eq!(read_all(&store, "overlays/x.dtbo"), b"dtbo");
    assert_eq!(
        read_all(&store, "01-dc-a6-32-00-00-01/pxelinux.cfg"),
        b"cfg"
    );
}

#[test]
fn leading_slashes_and_dots_are_relative_to_root() {
    let (_t, store) = setup(|c| c);
    put(store.root(), "overlays/x.dtbo", b"dtbo");
    for name in [
        "/overlays/x.dtbo",
        "//overlays//x.dtbo",
        "/./overlays/./x.dtbo",
    ] {
        assert_eq!(read_all(&store, name), b"dtbo", "{name}");
    }
}

#[test]
fn dotdot_that_escapes_is_access_violation() {
    let (_t, store) = setup(|c| c);
    put(store.root(), "b", b"bee");
    for name in [
        "..",
        "../x",
        "/../x",
        "a/../../etc/passwd",
        "a/b/../../../x",
    ] {
        assert_eq!(code(store.open_read(name)), 2, "{name}");
    }
    // Staying inside is allowed, and settled without touching the disk.
    assert_eq!(read_all(&store, "a/../b"), b"bee");
    assert_eq!(read_all(&store, "missing/dir/../../b"), b"bee");
}

#[test]
fn nul_byte_is_access_violation() {
    let (_t, store) = setup(|c| c);
    put(store.root(), "a", b"x");
    assert_eq!(code(store.open_read("a\0")), 2);
    assert_eq!(code(store.open_read("\0/a")), 2);
}

#[test]
fn directory_and_root_are_not_found() {
    let (_t, store) = setup(|c| c);
    fs::create_dir(store.root().join("overlays")).unwrap();
    for name in ["overlays", "overlays/", "", "/", ".", "a/.."] {
        assert_eq!(code(store.open_read(name)), 1, "{name:?}");
    }
}

#[test]
fn missing_file_is_not_found() {
    let (_t, store) = setup(|c| c);
    put(store.root(), "file", b"x");
    for name in ["nope", "dir/nope", "file/child"] {
        assert_eq!(code(store.open_read(name)), 1, "{name}");
    }
}

#[test]
fn sibling_with_root_name_as_prefix_is_unreachable() {
    let (tmp, store) = setup(|c| c);
    put(tmp.path(), "root-private/secret", b"secret");
    assert_eq!(code(store.open_read("../root-private/secret")), 2);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("../root-private", store.root().join("priv")).unwrap();
        assert_eq!(code(store.open_read("priv/secret")), 2);
    }
}

#[cfg(unix)]
mod symlinks {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn link_to_outside_file_is_access_violation() {
        let (tmp, store) = setup(|c| c);
        put(tmp.path(), "outside", b"secret");
        symlink(tmp.path().join("outside"), store.root().join("out")).unwrap();
        assert_eq!(code(store.open_read("out")), 2);
        if Path::new("/etc/passwd").exists() {
            symlink("/etc/passwd", store.root().join("passwd")).unwrap();
            assert_eq!(code(store.open_read("passwd")), 2);
            assert!(!store.exists("passwd"));
        }
    }

    #[test]
    fn linked_directory_outside_is_access_violation_whatever_is_below() {
        let (tmp, store) = setup(|c| c);
        put(tmp.path(), "outdir/secret", b"secret");
        symlink(tmp.path().join("outdir"), store.root().join("d")).unwrap();
        assert_eq!(code(store.open_read("d/secret")), 2);
        // Same answer for a missing file: nothing is learned about outdir.
        assert_eq!(code(store.open_read("d/absent")), 2);
        let store = Store::new(store.config().clone().write(WritePolicy::Overwrite)).unwrap();
        assert_eq!(code(store.open_write("d/new")), 2);
        assert_eq!(code(store.put_bytes("d/new", b"x")), 2);
        assert!(!tmp.path().join("outdir/new").exists());
    }

    #[test]
    fn links_inside_root_are_followed() {
        let (_t, store) = setup(|c| c);
        put(store.root(), "real/kernel8.img", b"kernel");
        symlink("real/kernel8.img", store.root().join("kernel")).unwrap();
        symlink("real", store.root().join("alias")).unwrap();
        symlink(store.root().join("real"), store.root().join("abs")).unwrap();
        assert_eq!(read_all(&store, "kernel"), b"kernel");
        assert_eq!(read_all(&store, "alias/kernel8.img"), b"kernel");
        assert_eq!(read_all(&store, "abs/kernel8.img"), b"kernel");
    }

    #[test]
    fn dangling_link_is_not_found_for_reads_and_refused_for_writes() {
        let (tmp, store) = setup(writable(WritePolicy::Overwrite));
        symlink("nowhere", store.root().join("dangle")).unwrap();
        symlink(
            store.root().join("nodir/x"),
            store.root().join("dangle-abs"),
        )
        .unwrap();
        for name in ["dangle", "dangle-abs"] {
            assert_eq!(code(store.open_read(name)), 1, "{name}");
            assert_eq!(code(store.open_write(name)), 2, "{name}");
        }
        assert!(!store.root().join("nowhere").exists());
        // A dangling link that points outside is outside: ERROR 2 for both,
        // so the answer says nothing about what exists there.
        symlink(tmp.path().join("nowhere"), store.root().join("out")).unwrap();
        assert_eq!(code(store.open_read("out")), 2);
        assert_eq!(code(store.open_write("out")), 2);
        assert!(!tmp.path().join("nowhere").exists());
    }

    #[test]
    fn overwrite_through_inner_link_replaces_the_target() {
        let (_t, store) = setup(writable(WritePolicy::Overwrite));
        put(store.root(), "real/f", b"old");
        symlink("real/f", store.root().join("f")).unwrap();
        upload(&store, "f", b"new").unwrap();
        assert_eq!(fs::read(store.root().join("real/f")).unwrap(), b"new");
        assert!(fs::symlink_metadata(store.root().join("f"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn delete_removes_the_link_not_the_target() {
        let (_t, store) = setup(|c| c);
        put(store.root(), "real", b"x");
        symlink("real", store.root().join("link")).unwrap();
        store.delete("link").unwrap();
        assert!(!store.exists("link"));
        assert!(store.exists("real"));
    }
}

#[test]
fn backslash_conversion_is_opt_in() {
    let (_t, store) = setup(|c| c);
    put(store.root(), "overlays/x.dtbo", b"dtbo");
    assert_eq!(code(store.open_read("overlays\\x.dtbo")), 1);
    let on = Store::new(store.config().clone().backslash_to_slash(true)).unwrap();
    assert_eq!(read_all(&on, "overlays\\x.dtbo"), b"dtbo");
    assert_eq!(read_all(&on, "\\overlays\\x.dtbo"), b"dtbo");
    assert_eq!(code(on.open_read("..\\..\\etc\\passwd")), 2);
}

#[test]
fn write_policy_off_refuses_with_access_violation() {
    let (_t, store) = setup(|c| c);
    assert_eq!(code(store.open_write("new")), 2);
    assert!(dir_names(store.root()).is_empty());
}

#[test]
fn write_policy_create_refuses_existing_with_file_exists() {
    let (_t, store) = setup(writable(WritePolicy::Create));
    put(store.root(), "old", b"old");
    assert_eq!(code(store.open_write("old")), 6);
    assert_eq!(fs::read(store.root().join("old")).unwrap(), b"old");
    upload(&store, "new", b"fresh").unwrap();
    assert_eq!(read_all(&store, "new"), b"fresh");
}

#[test]
fn write_policy_overwrite_replaces() {
    let (_t, store) = setup(writable(WritePolicy::Overwrite));
    put(store.root(), "f", b"old content, longer");
    upload(&store, "f", b"new").unwrap();
    assert_eq!(read_all(&store, "f"), b"new");
    assert_eq!(dir_names(store.root()), ["f"]);
}

#[test]
fn write_to_directory_root_or_escape_is_access_violation() {
    let (_t, store) = setup(writable(WritePolicy::Overwrite));
    fs::create_dir(store.root().join("dir")).unwrap();
    for name in ["dir", "", "/", "../x", "a\0"] {
        assert_eq!(code(store.open_write(name)), 2, "{name:?}");
    }
}

#[test]
fn missing_upload_directory_needs_create_dirs() {
    let (_t, store) = setup(writable(WritePolicy::Create));
    assert_eq!(code(store.open_write("serial/x")), 1);
    assert!(dir_names(store.root()).is_empty());
    let store = Store::new(store.config().clone().create_dirs(true)).unwrap();
    upload(&store, "serial/sub/x", b"data").unwrap();
    assert_eq!(read_all(&store, "serial/sub/x"), b"data");
}

#[test]
fn aborted_upload_keeps_old_file_and_leaves_no_temp() {
    let (_t, store) = setup(writable(WritePolicy::Overwrite));
    put(store.root(), "f", b"old");
    let mut sink = store.open_write("f").unwrap();
    sink.write_at(0, b"partial new data").unwrap();
    assert_eq!(
        dir_names(store.root()).len(),
        2,
        "temp file exists meanwhile"
    );
    sink.abort();
    assert_eq!(read_all(&store, "f"), b"old");
    assert_eq!(dir_names(store.root()), ["f"]);
    drop(sink);
    assert_eq!(dir_names(store.root()), ["f"]);
}

#[test]
fn dropped_upload_keeps_old_file_and_leaves_no_temp() {
    let (_t, store) = setup(writable(WritePolicy::Overwrite));
    put(store.root(), "f", b"old");
    let mut sink = store.open_write("f").unwrap();
    sink.write_at(0, b"partial").unwrap();
    drop(sink);
    assert_eq!(read_all(&store, "f"), b"old");
    assert_eq!(dir_names(store.root()), ["f"]);
}

#[test]
fn size_limit_refuses_excess_and_leaves_nothing() {
    let (_t, store) = setup(|c| c.write(WritePolicy::Create).max_upload(Some(10)));
    let mut sink = store.open_write("big").unwrap();
    sink.write_at(0, b"12345678").unwrap();
    let err = sink.write_at(8, b"9abc").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
    assert_eq!(ErrorCode::for_io_error(&err).0, 3);
    drop(sink);
    assert!(dir_names(store.root()).is_empty());
    // Exactly at the limit is fine.
    upload(&store, "exact", b"0123456789").unwrap();
    assert_eq!(read_all(&store, "exact"), b"0123456789");
}

#[test]
fn concurrent_create_uploads_one_wins_whole() {
    let (_t, store) = setup(writable(WritePolicy::Create));
    let store = Arc::new(store);
    let inputs = [vec![b'a'; 100_000], vec![b'b'; 70_000]];
    let sinks: Vec<_> = inputs
        .iter()
        .map(|_| store.open_write("img").unwrap())
        .collect();
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = sinks
        .into_iter()
        .zip(inputs.clone())
        .map(|(mut sink, data)| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                for (i, chunk) in data.chunks(512).enumerate() {
                    sink.write_at(i as u64 * 512, chunk).unwrap();
                }
                barrier.wait();
                sink.commit()
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert_eq!(loser.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(ErrorCode::for_io_error(loser).0, 6);
    let got = fs::read(store.root().join("img")).unwrap();
    assert!(inputs.contains(&got));
    assert_eq!(dir_names(store.root()), ["img"]);
}

#[test]
fn concurrent_overwrite_uploads_last_wins_whole() {
    let (_t, store) = setup(writable(WritePolicy::Overwrite));
    let mut a = store.open_write("img").unwrap();
    let mut b = store.open_write("img").unwrap();
    a.write_at(0, &[b'a'; 3000]).unwrap();
    b.write_at(0, &[b'b'; 2000]).unwrap();
    b.commit().unwrap();
    a.commit().unwrap();
    assert_eq!(fs::read(store.root().join("img")).unwrap(), [b'a'; 3000]);
    assert_eq!(dir_names(store.root()), ["img"]);
}

#[test]
fn temp_names_are_reserved() {
    let (_t, store) = setup(writable(WritePolicy::Overwrite));
    let mut sink = store.open_write("f").unwrap();
    sink.write_at(0, b"secret in progress").unwrap();
    let temp = dir_names(store.root()).pop().unwrap();
    assert!(
        temp.starts_with(".f.tftplab-") && temp.ends_with(".part"),
        "{temp}"
    );
    assert_eq!(code(store.open_read(&temp)), 2);
    assert_eq!(code(store.open_write(&temp)), 2);
    // Ordinary dot files are fine.
    put(store.root(), ".hidden.part", b"h");
    assert_eq!(read_all(&store, ".hidden.part"), b"h");
}

#[cfg(unix)]
fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&fs::metadata(path).unwrap())
}

#[test]
fn put_bytes_creates_replaces_and_skips_identical() {
    let (_t, store) = setup(|c| c);
    let first = store
        .put_bytes("boot/cmdline.txt", b"console=ttyS0")
        .unwrap();
    assert!(first.created && !first.skipped_identical);
    assert_eq!(first.size, 13);
    let path = store.root().join("boot/cmdline.txt");
    #[cfg(unix)]
    let before = inode(&path);
    let again = store
        .put_bytes("boot/cmdline.txt", b"console=ttyS0")
        .unwrap();
    assert!(!again.created && again.skipped_identical);
    assert_eq!(again.sha256, first.sha256);
    #[cfg(unix)]
    assert_eq!(inode(&path), before, "identical put must not rewrite");
    let changed = store
        .put_bytes("boot/cmdline.txt", b"console=ttyAMA0")
        .unwrap();
    assert!(!changed.created && !changed.skipped_identical);
    #[cfg(unix)]
    assert_ne!(inode(&path), before);
    assert_eq!(fs::read(&path).unwrap(), b"console=ttyAMA0");
    assert_eq!(dir_names(&store.root().join("boot")), ["cmdline.txt"]);
}

#[test]
fn put_file_and_put_reader() {
    let (tmp, store) = setup(|c| c);
    put(tmp.path(), "local.bin", b"firmware");
    let out = store
        .put_file("fw/start4.elf", tmp.path().join("local.bin"))
        .unwrap();
    assert!(out.created);
    assert_eq!(read_all(&store, "fw/start4.elf"), b"firmware");
    assert!(
        store
            .put_file("fw/start4.elf", tmp.path().join("local.bin"))
            .unwrap()
            .skipped_identical
    );
    let missing = store.put_file("x", tmp.path().join("absent")).unwrap_err();
    assert!(matches!(missing, StoreError::Local { .. }));

    let same = store.put_reader("fw/start4.elf", &b"firmware"[..]).unwrap();
    assert!(same.skipped_identical && !same.created);
    let new = store
        .put_reader("fw/fixup4.dat", io::Cursor::new(vec![7u8; 200_000]))
        .unwrap();
    assert!(new.created && !new.skipped_identical && new.size == 200_000);
    assert_eq!(
        dir_names(&store.root().join("fw")),
        ["fixup4.dat", "start4.elf"]
    );
}

#[test]
fn puts_ignore_write_policy_but_not_confinement() {
    let (tmp, store) = setup(|c| c);
    assert_eq!(store.config().write, WritePolicy::Off);
    store.put_bytes("ok", b"x").unwrap();
    assert_eq!(code(store.put_bytes("../escape", b"x")), 2);
    assert!(!tmp.path().join("escape").exists());
}

#[test]
fn list_is_recursive_sorted_with_sizes_and_hides_temps() {
    let (_t, store) = setup(writable(WritePolicy::Overwrite));
    store.put_bytes("z", b"1").unwrap();
    store.put_bytes("a/b/c", b"123").unwrap();
    store.put_bytes("a/a", b"12").unwrap();
    store.put_bytes(".dot", b"").unwrap();
    fs::create_dir(store.root().join("empty")).unwrap();
    let mut pending = store.open_write("a/a").unwrap();
    pending.write_at(0, b"in flight").unwrap();
    let got: Vec<_> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.size))
        .collect();
    let want = [(".dot", 0), ("a/a", 2), ("a/b/c", 3), ("z", 1)];
    let want: Vec<_> = want.iter().map(|(n, s)| (n.to_string(), *s)).collect();
    assert_eq!(got, want);
}

#[test]
fn delete_then_exists_is_false() {
    let (_t, store) = setup(|c| c);
    store.put_bytes("d/f", b"x").unwrap();
    assert!(store.exists("d/f"));
    store.delete("/d/f").unwrap();
    assert!(!store.exists("d/f"));
    assert_eq!(code(store.delete("d/f")), 1);
    assert_eq!(code(store.delete("d")), 1);
    assert_eq!(code(store.delete("../root")), 2);
}

#[test]
fn sha256_of_known_string() {
    let (_t, store) = setup(|c| c);
    let out = store.put_bytes("abc", b"abc").unwrap();
    let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(store.sha256("abc").unwrap(), want);
    assert_eq!(out.sha256_hex(), want);
    assert_eq!(code(store.sha256("nope")), 1);
}

#[test]
fn close_removes_only_files_puts_created() {
    let (_t, store) = setup(|c| c.remove_created_on_close(true));
    put(store.root(), "preexisting", b"old");
    put(store.root(), "keepdir/x", b"x");
    store.put_bytes("preexisting", b"overwritten").unwrap();
    store.put_bytes("new1", b"1").unwrap();
    store.put_bytes("nested/deep/new2", b"2").unwrap();
    store.put_bytes("keepdir/new3", b"3").unwrap();
    store.put_bytes("gone", b"4").unwrap();
    store.delete("gone").unwrap();
    let removed = store.close().unwrap();
    assert_eq!(removed, ["keepdir/new3", "nested/deep/new2", "new1"]);
    assert_eq!(dir_names(store.root()), ["keepdir", "preexisting"]);
    assert_eq!(
        fs::read(store.root().join("preexisting")).unwrap(),
        b"overwritten"
    );
    assert_eq!(dir_names(&store.root().join("keepdir")), ["x"]);
    assert!(store.close().unwrap().is_empty());
}

#[test]
fn close_without_the_flag_removes_nothing() {
    let (_t, store) = setup(|c| c);
    store.put_bytes("new", b"1").unwrap();
    assert!(store.close().unwrap().is_empty());
    assert!(store.exists("new"));
}

#[test]
fn write_policy_parses_and_displays() {
    for p in [
        WritePolicy::Off,
        WritePolicy::Create,
        WritePolicy::Overwrite,
    ] {
        assert_eq!(p.to_string().parse::<WritePolicy>().unwrap(), p);
    }
    assert_eq!(
        "Overwrite".parse::<WritePolicy>().unwrap(),
        WritePolicy::Overwrite
    );
    assert!("yes".parse::<WritePolicy>().is_err());
    assert_eq!(WritePolicy::default(), WritePolicy::Off);
}

#[test]
fn new_requires_an_existing_directory() {
    let tmp = TempDir::new().unwrap();
    put(tmp.path(), "file", b"x");
    let err = Store::new(StoreConfig::new(tmp.path().join("file"))).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert!(Store::new(StoreConfig::new(tmp.path().join("absent"))).is_err());
}

#[test]
fn io_error_codes() {
    use io::ErrorKind::*;
    let cases = [
        (NotFound, 1),
        (PermissionDenied, 2),
        (StorageFull, 3),
        (FileTooLarge, 3),
        (QuotaExceeded, 3),
        (AlreadyExists, 6),
        (TimedOut, 0),
    ];
    for (kind, want) in cases {
        assert_eq!(ErrorCode::for_io_error(&kind.into()).0, want, "{kind:?}");
    }
}

#[test]
fn messages_do_not_leak_host_paths() {
    let (tmp, store) = setup(writable(WritePolicy::Create));
    put(store.root(), "f", b"x");
    let host = tmp.path().to_string_lossy().into_owned();
    let errors = [
        store.open_read("../x").unwrap_err(),
        store.open_read("missing").unwrap_err(),
        store.open_write("f").unwrap_err(),
        StoreError::Io {
            name: "f".into(),
            source: io::ErrorKind::StorageFull.into(),
        },
    ];
    for e in errors {
        assert!(!e.message().contains(&host), "{}", e.message());
        assert!(!e.message().is_empty());
    }
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
    check::<UploadSink>();
}

proptest! {
    #[test]
    fn resolve_never_panics_and_stays_inside(name in "[a-z./\\\\\0-]{0,24}|\\PC{0,40}") {
        let (_t, store) = setup(|c| c.backslash_to_slash(true).create_dirs(true));
        put(store.root(), "a/b", b"x");
        for intent in [Intent::Read, Intent::Write] {
            if let Ok(path) = store.resolve(&name, intent) {
                prop_assert!(path.starts_with(store.root()), "{name:?} -> {path:?}");
            }
        }
    }
}

/// A name longer than the file system allows is simply not there (ERROR 1),
/// not an undefined error (found by the path_resolve fuzz target).
#[test]
fn overlong_names_are_not_found() {
    let (dir, store) = fixture_for_overlong();
    let long = "a".repeat(300);
    let err = store.open_read(&long).unwrap_err();
    assert_eq!(err.error_code(), ErrorCode::FILE_NOT_FOUND, "{err}");
    let nested = format!("dir/{}", "b".repeat(5000));
    let err = store.open_read(&nested).unwrap_err();
    assert_eq!(err.error_code(), ErrorCode::FILE_NOT_FOUND, "{err}");
    drop(dir);
}

fn fixture_for_overlong() -> (tempfile::TempDir, Store) {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::create_dir(dir.path().join("dir")).unwrap();
    let store = Store::new(StoreConfig::new(dir.path())).unwrap();
    (dir, store)
}
