//! Unpacking a bundle zip safely: every entry name is a plain relative path (no `..`, no absolute
//! path, no backslash), only regular files and directories (no symlinks, devices or FIFOs), and the
//! archive is bounded in entry count, unpacked size and compression ratio (zip bombs). Sizes are
//! counted from the bytes actually inflated, not from the sizes the archive declares.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

/// Bounds on one bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest archive downloaded or read.
    pub max_archive_bytes: u64,
    /// Largest sum of unpacked file sizes.
    pub max_unpacked_bytes: u64,
    /// Most entries (files and directories).
    pub max_entries: usize,
    /// Largest unpacked/compressed ratio of an entry that unpacks to more than `RATIO_FLOOR` bytes.
    pub max_ratio: u64,
}

/// Entries smaller than this are never ratio-checked (small text files compress very well).
const RATIO_FLOOR: u64 = 1 << 20;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_archive_bytes: 64 << 20,
            max_unpacked_bytes: 256 << 20,
            max_entries: 10_000,
            max_ratio: 200,
        }
    }
}

/// Checks that `name` is a plain relative path made of normal components separated by `/`.
pub fn check_relative_path(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is an empty path".into());
    }
    if name.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    if name.contains('\\') {
        return Err("contains a backslash".into());
    }
    if name.starts_with('/') {
        return Err("is an absolute path".into());
    }
    for part in name.split('/') {
        match part {
            ".." => return Err("climbs out of the bundle (..)".into()),
            "" | "." => return Err("is not a plain relative path (empty or '.' component)".into()),
            _ => {}
        }
    }
    Ok(())
}

/// Unix file-type bits of a zip entry's mode (0 when the archive records none).
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;

/// Unpacks `archive` into the existing, empty directory `dest`. Returns the regular files written
/// (relative names, in archive order). On error `dest` may hold part of the archive: the caller
/// unpacks into a temporary directory and removes it.
pub fn unpack(archive: &[u8], dest: &Path, limits: &Limits) -> Result<Vec<String>, String> {
    if archive.len() as u64 > limits.max_archive_bytes {
        return Err(format!(
            "the archive is {} bytes, more than the {} allowed",
            archive.len(),
            limits.max_archive_bytes
        ));
    }
    let mut zip = zip::ZipArchive::new(io::Cursor::new(archive))
        .map_err(|e| format!("not a readable zip archive: {e}"))?;
    if zip.len() > limits.max_entries {
        return Err(format!(
            "the archive has {} entries, more than the {} allowed",
            zip.len(),
            limits.max_entries
        ));
    }
    let mut written = Vec::new();
    let mut budget = limits.max_unpacked_bytes;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| format!("entry #{i} cannot be read: {e}"))?;
        let name = entry
            .name()
            .map_err(|e| format!("entry #{i} has an unreadable name: {e}"))?
            .into_owned();
        let shown = name.escape_debug().to_string();
        let kind = entry.unix_mode().map_or(0, |m| m & S_IFMT);
        let is_dir = entry.is_dir() || kind == S_IFDIR;
        if entry.is_symlink() {
            return Err(format!("entry '{shown}' is a symbolic link"));
        }
        if kind != 0 && kind != S_IFREG && kind != S_IFDIR {
            return Err(format!(
                "entry '{shown}' is not a regular file or directory (mode {kind:o})"
            ));
        }
        if entry.encrypted() {
            return Err(format!("entry '{shown}' is encrypted"));
        }
        let path = if is_dir {
            name.strip_suffix('/').unwrap_or(&name)
        } else {
            &name
        };
        check_relative_path(path).map_err(|why| format!("entry '{shown}' {why}"))?;
        let target = dest.join(path);
        if is_dir {
            fs::create_dir_all(&target)
                .map_err(|e| format!("cannot create directory '{shown}': {e}"))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            // Directory entries are optional: files in sub-folders create their folders.
            fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create the directory of '{shown}': {e}"))?;
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => format!("entry '{shown}' appears twice"),
                _ => format!("cannot create '{shown}': {e}"),
            })?;
        let compressed = entry.compressed_size().max(1);
        let copied = copy_bounded(&mut entry, &mut file, budget)
            .map_err(|e| format!("cannot unpack '{shown}': {e}"))?;
        let Some(size) = copied else {
            return Err(format!(
                "unpacking '{shown}' exceeds the {} bytes allowed for a bundle (zip bomb?)",
                limits.max_unpacked_bytes
            ));
        };
        if size > RATIO_FLOOR && size / compressed > limits.max_ratio {
            return Err(format!(
                "entry '{shown}' unpacks {compressed} bytes into {size}, a ratio above {} (zip bomb?)",
                limits.max_ratio
            ));
        }
        budget -= size;
        written.push(name);
    }
    Ok(written)
}

/// Copies at most `budget` bytes; `None` when the source has more.
fn copy_bounded(from: &mut impl Read, to: &mut impl Write, budget: u64) -> io::Result<Option<u64>> {
    let mut limited = from.take(budget.saturating_add(1));
    let n = io::copy(&mut limited, to)?;
    Ok((n <= budget).then_some(n))
}

/// The regular files under `dir` (relative `/`-separated names, sorted). A symbolic link or a special
/// file anywhere in the tree is an error: an unpacked bundle never holds one.
pub fn list_files(dir: &Path) -> Result<Vec<String>, String> {
    let mut files = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = pending.pop() {
        let entries =
            fs::read_dir(&path).map_err(|e| format!("cannot list {}: {e}", path.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", path.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{prefix}{name}");
            let kind = entry
                .file_type()
                .map_err(|e| format!("cannot stat {rel}: {e}"))?;
            if kind.is_dir() {
                pending.push((entry.path(), format!("{rel}/")));
            } else if kind.is_file() {
                files.push(rel);
            } else {
                return Err(format!("'{rel}' is a symbolic link or special file"));
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;
    use zip::write::SimpleFileOptions;

    /// A zip of `(name, bytes)` entries, deflated.
    pub(crate) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn unpacks_files_into_sub_folders_without_directory_entries() {
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_of(&[("manifest.json", b"{}"), ("lib/deep/h.py", b"x = 1\n")]);
        let files = unpack(&zip, dir.path(), &Limits::default()).unwrap();
        assert_eq!(files, ["manifest.json", "lib/deep/h.py"]);
        assert_eq!(
            fs::read(dir.path().join("lib/deep/h.py")).unwrap(),
            b"x = 1\n"
        );
        assert_eq!(
            list_files(dir.path()).unwrap(),
            ["lib/deep/h.py", "manifest.json"]
        );
    }

    #[test]
    fn refuses_escaping_names() {
        for bad in [
            "../evil.py",
            "a/../../evil.py",
            "/etc/evil",
            "a\\..\\evil",
            "a//b",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let zip = zip_of(&[(bad, b"x")]);
            let e = unpack(&zip, dir.path(), &Limits::default()).unwrap_err();
            assert!(e.starts_with("entry '"), "{bad}: {e}");
            assert!(list_files(dir.path()).unwrap().is_empty(), "{bad}");
        }
    }

    #[test]
    fn refuses_symlinks_and_special_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.add_symlink("link", "/etc/passwd", SimpleFileOptions::default())
            .unwrap();
        let zip = w.finish().unwrap().into_inner();
        let e = unpack(&zip, dir.path(), &Limits::default()).unwrap_err();
        assert_eq!(e, "entry 'link' is a symbolic link");

        // The writer only makes regular files: patch the central directory's external attributes
        // (offset 38 of the header) to a FIFO's Unix mode.
        let mut zip = zip_of(&[("fifo", b"")]);
        let cd = zip.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        zip[cd + 5] = 3; // made by Unix
        zip[cd + 38..cd + 42].copy_from_slice(&(0o010_644u32 << 16).to_le_bytes());
        let e = unpack(&zip, dir.path(), &Limits::default()).unwrap_err();
        assert_eq!(
            e,
            "entry 'fifo' is not a regular file or directory (mode 10000)"
        );
    }

    #[test]
    fn bounds_entries_size_and_ratio() {
        let limits = Limits {
            max_entries: 2,
            ..Limits::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_of(&[("a", b"1"), ("b", b"2"), ("c", b"3")]);
        let e = unpack(&zip, dir.path(), &limits).unwrap_err();
        assert!(e.contains("3 entries"), "{e}");

        let zeros = vec![0u8; 8 << 20];
        let bomb = zip_of(&[("zeros", &zeros)]);
        let dir = tempfile::tempdir().unwrap();
        let e = unpack(&bomb, dir.path(), &Limits::default()).unwrap_err();
        assert!(e.contains("ratio above 200"), "{e}");
        let small = Limits {
            max_unpacked_bytes: 1000,
            max_ratio: u64::MAX,
            ..Limits::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let e = unpack(&bomb, dir.path(), &small).unwrap_err();
        assert!(e.contains("exceeds the 1000 bytes"), "{e}");
        let e = unpack(b"not a zip", dir.path(), &small).unwrap_err();
        assert!(e.starts_with("not a readable zip"), "{e}");
    }

    #[test]
    fn relative_path_rules() {
        assert!(check_relative_path("a/b.py").is_ok());
        assert!(check_relative_path("..a/b..").is_ok());
        for bad in ["", "..", "a/..", "/a", "a\\b", "./a", "a\0"] {
            assert!(check_relative_path(bad).is_err(), "{bad:?}");
        }
    }
}
