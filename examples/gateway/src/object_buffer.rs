//! One spare Object buffer per thread: a request's hook phases write their Objects into it and give it
//! back when they are done, so the next request on that worker does not allocate (and free) one.

use std::cell::Cell;

/// Buffers with more capacity than this are not kept (a large body's Object would pin its memory).
pub const KEEP_AT_MOST: usize = 64 * 1024;

thread_local! {
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// This thread's spare buffer (empty), or a new one when another request holds it.
pub fn take() -> Vec<u8> {
    SPARE.with(Cell::take)
}

/// Keeps `buffer` as this thread's spare, unless it is too large or the spare already has more room.
pub fn give_back(mut buffer: Vec<u8>) {
    if buffer.capacity() > KEEP_AT_MOST {
        return;
    }
    buffer.clear();
    SPARE.with(|spare| {
        let current = spare.take();
        spare.set(if current.capacity() >= buffer.capacity() {
            current
        } else {
            buffer
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_back_buffer_is_taken_again_empty() {
        let mut buffer = take();
        buffer.extend_from_slice(&[1; 700]);
        let (at, room) = (buffer.as_ptr(), buffer.capacity());
        give_back(buffer);
        let again = take();
        assert_eq!((again.as_ptr(), again.capacity()), (at, room));
        assert!(again.is_empty());
        // Held by this "request": the next take gets a new, empty one.
        assert_eq!(take().capacity(), 0);
        give_back(again);
    }

    #[test]
    fn a_too_large_or_smaller_buffer_is_not_kept() {
        give_back(vec![0; 1000]);
        give_back(Vec::with_capacity(KEEP_AT_MOST + 1));
        assert_eq!(take().capacity(), 1000, "the large one was dropped");
        give_back(vec![0; 1000]);
        give_back(vec![0; 10]);
        assert_eq!(take().capacity(), 1000, "the larger spare stays");
    }
}
