//! Opening a private copy of a driver file, for `Reload`: glibc's `dlopen` hands back the object it
//! already has for a file with the same device and inode, so a changed driver must come from a file
//! of its own.
//!
//! The copy lives in an anonymous memory file (`memfd_create`), opened through `/proc/self/fd/N`: it has
//! no name another user could race or link elsewhere, and it does not depend on an executable `/tmp`.
//! The descriptor stays open while the library is loaded, so no other copy gets its name.
//! Where memfd is unavailable (old kernel, no `/proc`), the copy goes to a fresh 0700 directory made by
//! `mkdtemp`, created with `O_EXCL | O_NOFOLLOW`, and both are removed right after `dlopen` (the mapping
//! outlives the name).

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Seek};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::loader::DriverLibrary;

/// `MFD_EXEC` (Linux 6.3+): says the memory file will be mapped executable, so a `vm.memfd_noexec=1`
/// system does not seal it non-executable. Older kernels reject the flag; the call is retried without.
const MFD_EXEC: libc::c_uint = 0x0010;

/// The name memory-file copies carry in `/proc/<pid>/maps` ("/memfd:coprocess-driver (deleted)").
pub const MEMFD_NAME: &str = "coprocess-driver";

/// Opens a private copy of `source`; errors name `source`.
pub fn open_private_copy(source: &Path) -> Result<DriverLibrary, String> {
    let mut original =
        File::open(source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    match memfd_copy(&mut original, source) {
        Ok(fd) => {
            // One reload copy at a time: picking a free name and opening it must not interleave.
            static OPENING: Mutex<()> = Mutex::new(());
            let _one = OPENING.lock().unwrap_or_else(|p| p.into_inner());
            let (fd, via_proc) = unused_proc_name(fd).map_err(|e| e.to_string())?;
            if via_proc.exists() {
                return DriverLibrary::open(&via_proc, source)
                    .map(|lib| lib.keeping_open(fd))
                    .map_err(|e| e.message);
            }
        }
        Err(e) if is_unsupported(&e) => {}
        Err(e) => return Err(e.to_string()),
    }
    open_from_private_dir(&mut original, source)
}

/// `/proc/self/fd/N` for `fd`, or for a duplicate of it when a library is still loaded under that
/// name: glibc's `dlopen` matches loaded libraries by name before anything else, and a descriptor
/// number is reused once closed (a library whose unloading glibc deferred keeps its old name).
fn unused_proc_name(fd: OwnedFd) -> io::Result<(OwnedFd, PathBuf)> {
    let mut held = Vec::new(); // numbers found taken stay open, so the next dup gets a new one
    let mut fd = fd;
    for _ in 0..64 {
        let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let c_path = CString::new(path.as_os_str().as_bytes()).expect("no NUL in the path");
        // SAFETY: RTLD_NOLOAD only looks a loaded library up (taking a reference we drop at once); it
        // loads and runs nothing.
        let loaded = unsafe {
            libc::dlopen(
                c_path.as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL | libc::RTLD_NOLOAD,
            )
        };
        if loaded.is_null() {
            return Ok((fd, path));
        }
        // SAFETY: drops the reference RTLD_NOLOAD took above.
        unsafe { libc::dlclose(loaded) };
        let next = fd.try_clone()?; // F_DUPFD_CLOEXEC: the lowest free number, not this one
        held.push(fd);
        fd = next;
    }
    Err(io::Error::other(
        "no free /proc/self/fd name for a reload copy",
    ))
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSYS | libc::EINVAL | libc::EPERM | libc::EACCES)
    )
}

/// Copies `original` into a fresh memory file.
fn memfd_copy(original: &mut File, source: &Path) -> io::Result<OwnedFd> {
    let name = CString::new(MEMFD_NAME).expect("no NUL in the name");
    let create = |flags: libc::c_uint| {
        // SAFETY: `name` is a valid C string; the flags are plain bits.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            // SAFETY: a fresh descriptor nobody else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
    };
    let fd = match create(libc::MFD_CLOEXEC | MFD_EXEC) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => create(libc::MFD_CLOEXEC)?,
        other => other?,
    };
    let mut copy = File::from(fd);
    io::copy(original, &mut copy).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot copy {} for reload: {e}", source.display()),
        )
    })?;
    Ok(OwnedFd::from(copy))
}

/// The fallback: a copy in a private directory, removed as soon as it is mapped.
fn open_from_private_dir(original: &mut File, source: &Path) -> Result<DriverLibrary, String> {
    original
        .rewind()
        .map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let dir = PrivateDir::create().map_err(|e| format!("cannot make a private directory: {e}"))?;
    let file_name = source
        .file_name()
        .unwrap_or_else(|| OsStr::new("driver.so"));
    let copy_path = dir.path.join(file_name);
    let copied = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true) // O_CREAT | O_EXCL
        .mode(0o700)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&copy_path)
        .and_then(|mut f| io::copy(original, &mut f));
    let opened = copied
        .map_err(|e| format!("cannot copy {} for reload: {e}", source.display()))
        .and_then(|_| DriverLibrary::open(&copy_path, source).map_err(|e| e.message));
    let _ = std::fs::remove_file(&copy_path);
    opened
}

/// A directory made by `mkdtemp` (mode 0700, a name nobody could predict), removed on drop.
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    fn create() -> io::Result<PrivateDir> {
        let template = std::env::temp_dir().join("coprocess-bridge-XXXXXX");
        let mut bytes = template.as_os_str().as_bytes().to_vec();
        bytes.push(0);
        // SAFETY: `bytes` is a writable NUL-terminated template ending in XXXXXX.
        let made = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
        if made.is_null() {
            return Err(io::Error::last_os_error());
        }
        bytes.pop();
        Ok(PrivateDir {
            path: PathBuf::from(OsStr::from_bytes(&bytes)),
        })
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_dirs_are_0700_and_removed() {
        let dir = PrivateDir::create().unwrap();
        let mode = std::fs::metadata(&dir.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let path = dir.path.clone();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn a_memory_file_holds_the_exact_bytes() {
        let mut src = tempfile_with(b"\x7fELF not really");
        let fd = memfd_copy(&mut src, Path::new("x")).unwrap();
        let text = std::fs::read(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(text, b"\x7fELF not really");
    }

    fn tempfile_with(bytes: &[u8]) -> File {
        let dir = PrivateDir::create().unwrap();
        let path = dir.path.join("f");
        std::fs::write(&path, bytes).unwrap();
        let f = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }
}
