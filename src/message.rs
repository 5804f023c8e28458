//! `struct CoProcessMessage` and the malloc'd buffers that cross the C boundary.
//!
//! Everything the bridge hands to C is allocated with `malloc`, so a host may release it with `free()`
//! (Tyk's Go side does `C.free`), and everything a driver hands back was allocated with `malloc`, so the
//! bridge can pass the same buffer on without copying.

use std::ffi::{c_char, c_int, c_void};
use std::ptr::{self, NonNull};

use crate::error::{Error, Result, COPROCESS_ERR_INVALID_LENGTH, COPROCESS_ERR_NULL_ARGUMENT};

/// A serialized `coprocess.Object`: `length` bytes at `p_data`. Layout-identical to Tyk's `api.h`.
#[repr(C)]
#[derive(Debug)]
pub struct CoProcessMessage {
    pub p_data: *mut c_void,
    pub length: c_int,
}

impl CoProcessMessage {
    /// A message with no data (`p_data = NULL, length = 0`).
    pub const fn empty() -> Self {
        CoProcessMessage {
            p_data: ptr::null_mut(),
            length: 0,
        }
    }

    /// Borrows the bytes a caller handed us, checking what can be checked: a negative length, or a NULL
    /// pointer with a non-zero length, is an error; NULL with length 0 is an empty slice (building a slice
    /// from NULL would be undefined behaviour).
    ///
    /// # Safety
    /// When `p_data` is non-NULL it must point to at least `length` readable bytes that stay valid and
    /// unchanged for `'a`.
    pub unsafe fn as_bytes<'a>(&self, what: &str) -> Result<&'a [u8]> {
        let len = checked_len(self.length, what)?;
        if self.p_data.is_null() {
            if len == 0 {
                return Ok(&[]);
            }
            return Err(Error::new(
                COPROCESS_ERR_NULL_ARGUMENT,
                format!("{what}: p_data is NULL but length is {len}"),
            ));
        }
        // SAFETY: non-NULL and `len` readable bytes per this function's contract.
        Ok(unsafe { std::slice::from_raw_parts(self.p_data as *const u8, len) })
    }
}

/// Converts a C `int` length to `usize`, refusing negative values.
pub fn checked_len(length: c_int, what: &str) -> Result<usize> {
    usize::try_from(length).map_err(|_| {
        Error::new(
            COPROCESS_ERR_INVALID_LENGTH,
            format!("{what}: length is negative ({length})"),
        )
    })
}

/// Bytes owned through a `malloc`'d pointer; freed with `free` on drop unless handed to C.
#[derive(Debug)]
pub struct MallocBuf {
    ptr: Option<NonNull<u8>>,
    len: usize,
}

// SAFETY: the buffer is uniquely owned plain memory; malloc'd memory may be freed from any thread.
unsafe impl Send for MallocBuf {}

impl MallocBuf {
    /// Copies `bytes` into a fresh `malloc`'d buffer.
    pub fn copy_from(bytes: &[u8]) -> MallocBuf {
        if bytes.is_empty() {
            return MallocBuf { ptr: None, len: 0 };
        }
        // SAFETY: plain allocation of a non-zero size; checked for NULL below.
        let raw = unsafe { libc::malloc(bytes.len()) } as *mut u8;
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(std::alloc::Layout::array::<u8>(bytes.len()).unwrap())
        };
        // SAFETY: `ptr` has room for `bytes.len()` bytes and cannot overlap a live Rust slice.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len()) };
        MallocBuf {
            ptr: Some(ptr),
            len: bytes.len(),
        }
    }

    /// Copies `head` then `tail` into one fresh `malloc`'d buffer (an Object and the fields appended
    /// to it, with no intermediate copy).
    pub fn concat(head: &[u8], tail: &[u8]) -> MallocBuf {
        Self::concat_all(&[head, tail])
    }

    /// Copies `parts`, one after the other, into one fresh `malloc`'d buffer.
    pub fn concat_all(parts: &[&[u8]]) -> MallocBuf {
        let len = parts.iter().map(|p| p.len()).sum();
        if len == 0 {
            return MallocBuf { ptr: None, len: 0 };
        }
        // SAFETY: plain allocation of a non-zero size; checked for NULL below.
        let raw = unsafe { libc::malloc(len) } as *mut u8;
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(std::alloc::Layout::array::<u8>(len).unwrap())
        };
        let mut at = 0;
        for part in parts {
            // SAFETY: `ptr` has room for `len` bytes, the sum of the parts' lengths, so each part fits
            // at its own offset; a fresh allocation cannot overlap a live Rust slice.
            unsafe { ptr::copy_nonoverlapping(part.as_ptr(), ptr.as_ptr().add(at), part.len()) };
            at += part.len();
        }
        MallocBuf {
            ptr: Some(ptr),
            len,
        }
    }

    /// Takes ownership of `len` bytes at `ptr` (NULL allowed only with `len == 0`).
    ///
    /// # Safety
    /// `ptr` must be NULL or a pointer returned by `malloc` with at least `len` initialised bytes, not
    /// owned by anyone else.
    pub unsafe fn from_raw(ptr: *mut u8, len: usize) -> MallocBuf {
        debug_assert!(!ptr.is_null() || len == 0);
        MallocBuf {
            ptr: NonNull::new(ptr),
            len: if ptr.is_null() { 0 } else { len },
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self.ptr {
            // SAFETY: `ptr` owns `len` initialised bytes (constructor contracts).
            Some(p) => unsafe { std::slice::from_raw_parts(p.as_ptr(), self.len) },
            None => &[],
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hands the buffer to C through `out`; the receiver frees it with `free` or `CoProcessMessageFree`.
    pub fn into_message(self, out: &mut CoProcessMessage) -> Result<()> {
        let length = c_int::try_from(self.len).map_err(|_| {
            Error::new(
                COPROCESS_ERR_INVALID_LENGTH,
                format!("result of {} bytes does not fit a C int length", self.len),
            )
        })?;
        let me = std::mem::ManuallyDrop::new(self);
        out.p_data = me
            .ptr
            .map_or(ptr::null_mut(), |p| p.as_ptr() as *mut c_void);
        out.length = length;
        Ok(())
    }
}

impl Drop for MallocBuf {
    fn drop(&mut self) {
        if let Some(p) = self.ptr {
            // SAFETY: `p` came from malloc and is owned by this value only.
            unsafe { libc::free(p.as_ptr() as *mut c_void) };
        }
    }
}

/// Returns a `malloc`'d, NUL-terminated copy of `s` (interior NULs end the C string early), or NULL when
/// memory is exhausted. The receiver frees it with `free` or `CoProcessFree`.
pub fn malloc_cstring(s: &str) -> *mut c_char {
    let bytes = s.as_bytes();
    // SAFETY: plain allocation; checked for NULL before writing.
    let raw = unsafe { libc::malloc(bytes.len() + 1) } as *mut u8;
    if raw.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: `raw` has room for `len + 1` bytes.
    unsafe {
        ptr::copy_nonoverlapping(bytes.as_ptr(), raw, bytes.len());
        *raw.add(bytes.len()) = 0;
    }
    raw as *mut c_char
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowing_checks_null_and_negative_lengths() {
        let m = CoProcessMessage {
            p_data: ptr::null_mut(),
            length: -1,
        };
        // SAFETY: p_data is NULL, nothing is read.
        let e = unsafe { m.as_bytes("in") }.unwrap_err();
        assert_eq!(e.status, COPROCESS_ERR_INVALID_LENGTH);
        assert_eq!(e.message, "in: length is negative (-1)");
        let m = CoProcessMessage {
            p_data: ptr::null_mut(),
            length: 3,
        };
        // SAFETY: as above.
        let e = unsafe { m.as_bytes("in") }.unwrap_err();
        assert_eq!(e.message, "in: p_data is NULL but length is 3");
        // SAFETY: as above.
        assert!(unsafe { CoProcessMessage::empty().as_bytes("in") }
            .unwrap()
            .is_empty());
    }

    #[test]
    fn malloc_buffers_round_trip_through_messages() {
        let buf = MallocBuf::copy_from(b"hello");
        assert_eq!(buf.as_slice(), b"hello");
        let mut out = CoProcessMessage::empty();
        buf.into_message(&mut out).unwrap();
        assert_eq!(out.length, 5);
        // SAFETY: `out` now owns the malloc'd 5 bytes; we take them back to free them.
        let back = unsafe { MallocBuf::from_raw(out.p_data as *mut u8, 5) };
        assert_eq!(back.as_slice(), b"hello");
        assert!(MallocBuf::copy_from(b"").is_empty());
    }

    #[test]
    fn malloc_cstring_is_nul_terminated() {
        let p = malloc_cstring("abc");
        // SAFETY: `p` is a fresh NUL-terminated malloc'd string, freed right after.
        unsafe {
            assert_eq!(std::ffi::CStr::from_ptr(p).to_str().unwrap(), "abc");
            libc::free(p as *mut c_void);
        }
    }
}
