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
    let err = store.open_write("serial/x").err().unwrap();
    // ERROR 1, saying it is the directory, and the log says what to do.
    assert_eq!(
        (err.error_code().0, err.message().as_str()),
        (1, "Directory not found")
    );
    assert!(err.to_string().contains("serve --create-dirs"), "{err}");
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

/// Races and escapes found by a hostile tester: a directory swapped for a
/// symlink between check and open, FIFOs swapped in, huge names, leftovers.
#[cfg(target_os = "linux")]
mod hardening {
    use super::*;
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    const RACE_FOR: Duration = Duration::from_secs(2);
    const SECRET: &[u8] = b"SECRET-OUTSIDE";

    /// Atomically swaps two entries (`renameat2(RENAME_EXCHANGE)`).
    fn exchange(a: &Path, b: &Path) {
        renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).unwrap();
    }

    /// Swaps `a` and `b` over and over until `stop` is set or the race time
    /// (plus a margin) is up.
    fn swapper(a: PathBuf, b: PathBuf, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
        thread::spawn(move || {
            let end = Instant::now() + RACE_FOR + Duration::from_secs(3);
            let mut swaps = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                exchange(&a, &b);
                swaps += 1;
            }
            swaps
        })
    }

    fn read_source(mut src: crate::data::FileSource) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let n = src.read_at(0, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    /// `root/d` is a directory holding `f` ("inside"); `root/swap` is a
    /// symlink to `outside/`, which holds `f` ("SECRET-OUTSIDE").
    fn swap_fixture(policy: WritePolicy) -> (TempDir, Store, PathBuf) {
        let (tmp, store) = setup(writable(policy));
        let outside = tmp.path().join("outside");
        put(&outside, "f", SECRET);
        put(store.root(), "d/f", b"inside");
        symlink(&outside, store.root().join("swap")).unwrap();
        (tmp, store, outside)
    }

    /// Starts swapping `d` (the inside directory) with `swap` (the link to
    /// outside) until the flag is set.
    fn swap_d(store: &Store) -> (Arc<AtomicBool>, thread::JoinHandle<u64>) {
        let stop = Arc::new(AtomicBool::new(false));
        let root = store.root();
        let swaps = swapper(root.join("d"), root.join("swap"), stop.clone());
        (stop, swaps)
    }

    #[test]
    fn directory_swapped_for_outside_link_never_serves_outside() {
        let (_tmp, store, _outside) = swap_fixture(WritePolicy::Off);
        let (stop, swaps) = swap_d(&store);
        let end = Instant::now() + RACE_FOR;
        let (mut served, mut refused, mut leaked) = (0u64, 0u64, 0u64);
        while Instant::now() < end {
            match store.open_read("d/f") {
                Ok(src) => match read_source(src).as_slice() {
                    b"inside" => served += 1,
                    other if other == SECRET => leaked += 1,
                    other => panic!("unexpected content {other:?}"),
                },
                Err(e) => {
                    assert!(matches!(e.error_code().0, 1 | 2), "{e}");
                    refused += 1;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let swaps = swaps.join().unwrap();
        assert_eq!(leaked, 0, "served the outside file {leaked} times");
        assert!(
            served > 0,
            "no read succeeded ({refused} refused, {swaps} swaps)"
        );
        assert!(swaps > 0);
    }

    #[test]
    fn directory_swapped_for_outside_link_never_receives_uploads() {
        let (_tmp, store, outside) = swap_fixture(WritePolicy::Overwrite);
        let (stop, swaps) = swap_d(&store);
        let end = Instant::now() + RACE_FOR;
        let (mut committed, mut failed) = (0u64, 0u64);
        while Instant::now() < end {
            let Ok(mut sink) = store.open_write("d/f") else {
                failed += 1;
                continue;
            };
            sink.write_at(0, b"uploaded").unwrap();
            match sink.commit() {
                Ok(()) => committed += 1,
                Err(_) => failed += 1,
            }
        }
        stop.store(true, Ordering::Relaxed);
        swaps.join().unwrap();
        assert_eq!(dir_names(&outside), ["f"], "an upload reached outside");
        assert_eq!(fs::read(outside.join("f")).unwrap(), SECRET);
        assert!(committed > 0, "no upload committed ({failed} failed)");
        // The real directory, wherever the swaps left it, got the uploads
        // and holds no temporary file.
        let real = ["d", "swap"]
            .map(|n| store.root().join(n))
            .into_iter()
            .find(|p| !fs::symlink_metadata(p).unwrap().is_symlink())
            .unwrap();
        assert_eq!(dir_names(&real), ["f"]);
        assert_eq!(fs::read(real.join("f")).unwrap(), b"uploaded");
    }

    #[test]
    fn fifo_is_not_a_file_and_does_not_block() {
        let (_t, store) = setup(|c| c);
        rustix::fs::mkfifoat(CWD, store.root().join("fifo"), 0o644.into()).unwrap();
        let start = Instant::now();
        let err = store.open_read("fifo").unwrap_err();
        assert!(matches!(err, StoreError::NotAFile { .. }), "{err}");
        assert_eq!(err.error_code().0, 1);
        assert!(!store.exists("fifo"));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    /// `root/p` flips between a regular file and a FIFO. Every open must
    /// return at once. On failure (an open blocked) the watchdog opens the
    /// FIFO's write end to free the reader, then fails the test.
    #[test]
    fn fifo_swapped_in_after_the_check_does_not_block() {
        let (_t, store) = setup(|c| c);
        let (p, alt) = (store.root().join("p"), store.root().join("p.alt"));
        put(store.root(), "p", b"data");
        rustix::fs::mkfifoat(CWD, &alt, 0o644.into()).unwrap();
        let store = Arc::new(store);
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = swapper(p.clone(), alt.clone(), stop.clone());
        let (tx, rx) = mpsc::channel();
        let reader = {
            let store = store.clone();
            thread::spawn(move || {
                let end = Instant::now() + RACE_FOR;
                let (mut max, mut served, mut refused) = (Duration::ZERO, 0u64, 0u64);
                while Instant::now() < end {
                    let start = Instant::now();
                    match store.open_read("p") {
                        Ok(_) => served += 1,
                        Err(e) => {
                            assert_eq!(e.error_code().0, 1, "{e}");
                            refused += 1;
                        }
                    }
                    max = max.max(start.elapsed());
                }
                let _ = tx.send((max, served, refused));
            })
        };
        let result = rx.recv_timeout(RACE_FOR + Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        let swaps = swaps.join().unwrap();
        let (max, served, refused) = match result {
            Ok(r) => r,
            Err(_) => {
                // Blocked in open(): give the FIFO a writer so it returns.
                let flags = rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NONBLOCK;
                let got = loop {
                    for f in [&p, &alt] {
                        let _ = rustix::fs::open(f, flags, rustix::fs::Mode::empty());
                    }
                    if let Ok(r) = rx.recv_timeout(Duration::from_millis(10)) {
                        break r;
                    }
                };
                let _ = reader.join();
                panic!("open_read blocked on a FIFO: {got:?}");
            }
        };
        reader.join().unwrap();
        assert!(
            max < Duration::from_secs(1),
            "an open took {max:?} ({served} served, {refused} refused, {swaps} swaps)"
        );
        assert!(
            served > 0 && refused > 0,
            "{served} served, {refused} refused"
        );
    }

    #[test]
    fn names_over_the_limits_are_not_found() {
        let (_t, store) = setup(|c| c);
        put(store.root(), "f", b"x");
        symlink(".", store.root().join("t")).unwrap();
        // Within the limits, both resolve (32 components, 31 links).
        let slashes = format!("{}f", "/".repeat(MAX_NAME_BYTES - 1));
        let deep = format!("{}f", "t/".repeat(MAX_NAME_COMPONENTS - 1));
        assert_eq!(read_all(&store, &slashes), b"x");
        assert_eq!(read_all(&store, &deep), b"x");
        // One over either limit: ERROR 1, "File not found".
        for name in [format!("/{slashes}"), format!("t/{deep}")] {
            let err = store.open_read(&name).unwrap_err();
            assert!(matches!(err, StoreError::NameTooLong { .. }), "{err}");
            assert_eq!(err.error_code().0, 1);
            assert_eq!(err.message(), "File not found");
        }
        assert_eq!(code(store.open_read(&format!("/{slashes}"))), 1);
        // A hostile name does not end up whole in the logs.
        let huge = "tftpboot/".repeat(60_000 / 9);
        let err = store.open_read(&huge).unwrap_err();
        assert_eq!(err.error_code().0, 1);
        assert!(err.to_string().len() < 200, "{err}");
        assert!(err.to_string().contains('…'), "{err}");
        assert!(err.name().len() < 100);
    }

    #[test]
    fn self_link_names_resolve_quickly() {
        let (_t, store) = setup(|c| c);
        put(store.root(), "start4.elf", b"elf");
        symlink(".", store.root().join("tftpboot")).unwrap();
        // As many components as fit in the byte limit: too many of them.
        let fit = (MAX_NAME_BYTES - "start4.elf".len()) / "tftpboot/".len();
        let long = format!("{}start4.elf", "tftpboot/".repeat(fit));
        assert!(long.len() <= MAX_NAME_BYTES && fit > MAX_NAME_COMPONENTS);
        let within = format!("{}start4.elf", "tftpboot/".repeat(MAX_NAME_COMPONENTS - 1));
        // Best of a few, so a busy machine does not fail the test.
        let time = |name: &str| {
            (0..5)
                .map(|_| {
                    let start = Instant::now();
                    let _ = store.open_read(name);
                    start.elapsed()
                })
                .min()
                .unwrap()
        };
        assert_eq!(code(store.open_read(&long)), 1);
        assert_eq!(read_all(&store, &within), b"elf");
        for name in [&long, &within] {
            let took = time(name);
            assert!(
                took < Duration::from_millis(10),
                "{took:?} for {} bytes",
                name.len()
            );
        }
    }

    #[test]
    fn absolute_links_inside_are_followed_and_outside_refused() {
        let (tmp, store) = setup(writable(WritePolicy::Overwrite));
        put(store.root(), "boot/kernel8.img", b"kernel");
        put(tmp.path(), "outside/kernel8.img", b"secret");
        fs::create_dir(store.root().join("9ffefdef")).unwrap();
        // A lab's per-board directory, linked with an absolute path.
        symlink(store.root().join("boot"), store.root().join("serial")).unwrap();
        symlink(
            store.root().join("boot/kernel8.img"),
            store.root().join("9ffefdef/kernel8.img"),
        )
        .unwrap();
        symlink(tmp.path().join("outside"), store.root().join("out")).unwrap();
        assert_eq!(read_all(&store, "serial/kernel8.img"), b"kernel");
        assert_eq!(read_all(&store, "9ffefdef/kernel8.img"), b"kernel");
        assert_eq!(code(store.open_read("out/kernel8.img")), 2);
        assert_eq!(code(store.open_write("out/kernel8.img")), 2);
        // Lexically under the root, then climbing out: still outside.
        let climb = format!("{}/../outside/kernel8.img", store.root().display());
        symlink(climb, store.root().join("climb")).unwrap();
        assert_eq!(code(store.open_read("climb")), 2);
        // Through a link, the upload replaces the target inside.
        upload(&store, "9ffefdef/kernel8.img", b"new").unwrap();
        assert_eq!(
            fs::read(store.root().join("boot/kernel8.img")).unwrap(),
            b"new"
        );
    }

    #[test]
    fn relative_links_that_climb_out_are_refused_even_when_dangling() {
        let (_t, store) = setup(writable(WritePolicy::Overwrite));
        fs::create_dir(store.root().join("sub")).unwrap();
        symlink("../../x", store.root().join("sub/esc")).unwrap();
        symlink("..", store.root().join("up")).unwrap();
        symlink("../../etc", store.root().join("sub/etc")).unwrap();
        for name in ["sub/esc", "up/anything", "up", "sub/etc/passwd"] {
            assert_eq!(code(store.open_read(name)), 2, "{name}");
            assert_eq!(code(store.open_write(name)), 2, "{name}");
        }
    }

    #[test]
    fn link_loops_and_long_chains_are_not_found() {
        let (_t, store) = setup(writable(WritePolicy::Overwrite));
        put(store.root(), "target", b"t");
        symlink("b", store.root().join("a")).unwrap();
        symlink("a", store.root().join("b")).unwrap();
        symlink("self", store.root().join("self")).unwrap();
        for name in ["a", "b", "self", "a/x"] {
            assert_eq!(code(store.open_read(name)), 1, "{name}");
        }
        assert_eq!(code(store.open_write("a")), 2);
        // l0 -> l1 -> ... -> l40 -> target: 41 links, one too many.
        for i in 0..=MAX_LINKS {
            let next = if i == MAX_LINKS {
                "target".to_owned()
            } else {
                format!("l{}", i + 1)
            };
            symlink(next, store.root().join(format!("l{i}"))).unwrap();
        }
        assert_eq!(read_all(&store, "l1"), b"t", "40 links are fine");
        assert_eq!(code(store.open_read("l0")), 1);
    }

    #[test]
    fn new_removes_only_dead_uploads_temp_files() {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().join("root");
        // Above Linux's largest pid_max (2^22): no such process.
        let dead = (1u32 << 22) + 12345;
        let live = std::process::id();
        let stale = [
            format!(".kernel8.img.tftplab-{dead}-0.part"),
            format!("sub/deeper/.x.tftplab-{dead}-17.part"),
        ];
        let kept = [
            format!(".a.tftplab-{live}-99.part"),
            ".b.tftplab-x-1.part".to_owned(),
            format!(".c.tftplab-{dead}-1.partial"),
            format!("c.tftplab-{dead}-1.part"),
            "sub/kernel8.img".to_owned(),
        ];
        for name in stale.iter().chain(&kept) {
            put(&root, name, b"partial");
        }
        // Not regular files, and files behind a symlinked directory.
        fs::create_dir(root.join(format!(".dir.tftplab-{dead}-2.part"))).unwrap();
        symlink(
            root.join(format!(".kernel8.img.tftplab-{dead}-0.part")),
            root.join(format!(".l.tftplab-{dead}-3.part")),
        )
        .unwrap();
        put(
            tmp.path(),
            &format!("outside/.o.tftplab-{dead}-0.part"),
            b"o",
        );
        symlink(tmp.path().join("outside"), root.join("linked")).unwrap();

        let store = Store::new(StoreConfig::new(&root)).unwrap();
        assert_eq!(store.stale_removed(), 2);
        for name in &stale {
            assert!(!root.join(name).exists(), "{name} should be gone");
        }
        for name in &kept {
            assert!(root.join(name).exists(), "{name} should stay");
        }
        assert!(root.join(format!(".dir.tftplab-{dead}-2.part")).is_dir());
        assert!(fs::symlink_metadata(root.join(format!(".l.tftplab-{dead}-3.part"))).is_ok());
        assert!(tmp
            .path()
            .join(format!("outside/.o.tftplab-{dead}-0.part"))
            .exists());
        // Nothing left to remove the second time.
        assert_eq!(
            Store::new(StoreConfig::new(&root)).unwrap().stale_removed(),
            0
        );
    }

    #[test]
    fn uncommitted_upload_removes_the_directories_it_made() {
        let (_t, store) = setup(|c| c.write(WritePolicy::Create).create_dirs(true));
        fs::create_dir(store.root().join("old")).unwrap();
        fs::create_dir(store.root().join("empty")).unwrap();

        let mut sink = store.open_write("new/dir/f").unwrap();
        sink.write_at(0, b"partial").unwrap();
        assert!(store.root().join("new/dir").is_dir());
        sink.abort();
        assert_eq!(dir_names(store.root()), ["empty", "old"]);

        let mut sink = store.open_write("new/dir/f").unwrap();
        sink.write_at(0, b"partial").unwrap();
        drop(sink);
        assert_eq!(dir_names(store.root()), ["empty", "old"]);

        // Only what the upload made goes; directories that were there stay.
        drop(store.open_write("old/sub/f").unwrap());
        drop(store.open_write("empty/f").unwrap());
        assert_eq!(dir_names(store.root()), ["empty", "old"]);
        assert!(dir_names(&store.root().join("old")).is_empty());

        // A directory another upload still uses is not empty, so it stays;
        // a committed upload keeps what it made.
        let mut first = store.open_write("new/dir/f").unwrap();
        let mut second = store.open_write("new/dir/g").unwrap();
        first.write_at(0, b"one").unwrap();
        second.write_at(0, b"two").unwrap();
        drop(first);
        second.commit().unwrap();
        assert_eq!(read_all(&store, "new/dir/g"), b"two");
        assert_eq!(dir_names(&store.root().join("new/dir")), ["g"]);
    }

    #[test]
    fn failed_put_into_new_directories_leaves_none() {
        let (_t, store) = setup(|c| c);
        let failing = FailingReader;
        assert!(store.put_reader("a/b/c", failing).is_err());
        assert!(dir_names(store.root()).is_empty());
    }

    struct FailingReader;
    impl io::Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("reader broke"))
        }
    }
}
