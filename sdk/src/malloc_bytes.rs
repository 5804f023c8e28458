//! `MallocBytes`: a growable byte buffer in C's heap, so that the driver can hand a finished patch to
//! the bridge as it is (the bridge frees what a driver answers with `free`). A Rust `Vec` cannot be
//! handed over: a driver may set its own `#[global_allocator]`.

use std::mem::MaybeUninit;

use coprocess_proto::prost::bytes::BufMut;

/// Bytes in one malloc'd block; an empty buffer holds no block.
pub(crate) struct MallocBytes {
    /// NULL when `capacity` is 0.
    ptr: *mut u8,
    len: usize,
    capacity: usize,
}

// SAFETY: the buffer owns its block alone (like a `Vec<u8>`); nothing else points into it.
unsafe impl Send for MallocBytes {}
// SAFETY: shared access only reads the initialised bytes.
unsafe impl Sync for MallocBytes {}

impl MallocBytes {
    pub(crate) const fn new() -> Self {
        MallocBytes {
            ptr: std::ptr::null_mut(),
            len: 0,
            capacity: 0,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: a non-empty buffer has a block whose first `len` bytes were written.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Appends exactly `len` bytes that `write` puts into the slice it is given (as `MaybeUninit`:
    /// the room is not initialised yet). Panics when `write` leaves any of them unwritten, and
    /// aborts like `Vec` when out of memory.
    pub(crate) fn append(&mut self, len: usize, write: impl FnOnce(&mut &mut [MaybeUninit<u8>])) {
        self.reserve(len);
        // An empty buffer has no block, and a slice may not start at NULL.
        let mut room: &mut [MaybeUninit<u8>] = if len == 0 {
            &mut []
        } else {
            // SAFETY: `reserve` made room for `len` bytes after the first `self.len`, owned by this
            // buffer; `MaybeUninit<u8>` needs no initialisation.
            unsafe {
                std::slice::from_raw_parts_mut(
                    self.ptr.add(self.len).cast::<MaybeUninit<u8>>(),
                    len,
                )
            }
        };
        write(&mut room);
        assert!(room.is_empty(), "a patch record was shorter than announced");
        self.len += len;
    }

    fn reserve(&mut self, additional: usize) {
        let needed = self.len.checked_add(additional).expect("patch too large");
        if needed <= self.capacity {
            return;
        }
        // Grow like `Vec`: at least double, so a patch of many records is copied O(1) times a byte.
        let capacity = needed.max(self.capacity * 2).max(8);
        // SAFETY: `ptr` is NULL or a block from malloc/realloc owned by this buffer.
        let grown = unsafe { libc::realloc(self.ptr.cast(), capacity) }.cast::<u8>();
        if grown.is_null() {
            std::alloc::handle_alloc_error(std::alloc::Layout::array::<u8>(capacity).unwrap());
        }
        self.ptr = grown;
        self.capacity = capacity;
    }

    /// The block and its length, now the caller's to `free`; `None` (no block) when empty.
    pub(crate) fn into_raw(self) -> Option<(*mut u8, usize)> {
        let me = std::mem::ManuallyDrop::new(self);
        if me.len == 0 {
            // SAFETY: `ptr` is NULL or this buffer's block, not handed over.
            unsafe { libc::free(me.ptr.cast()) };
            return None;
        }
        Some((me.ptr, me.len))
    }
}

impl Drop for MallocBytes {
    fn drop(&mut self) {
        // SAFETY: `ptr` is NULL or this buffer's block, not handed over (`into_raw` skips drop).
        unsafe { libc::free(self.ptr.cast()) }
    }
}

impl Default for MallocBytes {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for MallocBytes {
    fn clone(&self) -> Self {
        let bytes = self.as_bytes();
        let mut copy = MallocBytes::new();
        copy.append(bytes.len(), |room| {
            room.put_slice(bytes);
        });
        copy
    }
}

impl PartialEq for MallocBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for MallocBytes {}

impl std::fmt::Debug for MallocBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_bytes().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(buffer: &mut MallocBytes, bytes: &[u8]) {
        buffer.append(bytes.len(), |room| room.put_slice(bytes));
    }

    #[test]
    fn appended_bytes_read_back_across_growth() {
        let mut buffer = MallocBytes::new();
        assert_eq!(buffer.as_bytes(), b"");
        let mut expected = Vec::new();
        for i in 0..200u8 {
            let chunk = vec![i; usize::from(i % 7)];
            put(&mut buffer, &chunk);
            expected.extend_from_slice(&chunk);
            assert_eq!(buffer.as_bytes(), expected);
        }
        let copy = buffer.clone();
        assert_eq!(copy, buffer);
        assert_eq!(format!("{copy:?}"), format!("{:?}", expected.as_slice()));
    }

    #[test]
    fn an_empty_buffer_hands_over_nothing_and_a_full_one_its_block() {
        let mut empty = MallocBytes::new();
        put(&mut empty, b"");
        assert!(empty.into_raw().is_none());
        let mut full = MallocBytes::new();
        put(&mut full, b"abc");
        let (ptr, len) = full.into_raw().unwrap();
        // SAFETY: the block `into_raw` gave, `len` bytes written, freed once here.
        assert_eq!(unsafe { std::slice::from_raw_parts(ptr, len) }, b"abc");
        // SAFETY: as above.
        unsafe { libc::free(ptr.cast()) };
    }

    #[test]
    #[should_panic(expected = "shorter than announced")]
    fn a_record_shorter_than_announced_is_refused() {
        MallocBytes::new().append(4, |room| room.put_slice(b"ab"));
    }
}
