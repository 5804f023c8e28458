//! Whether a span of the buffer is ASCII: most header and body text is, and then it is valid UTF-8
//! without a byte-by-byte check. The span's last 16 bytes are tested first with one load ending where
//! the span ends (for spans of up to 16 bytes it reaches back before their start and ignores what it
//! finds there), then the rest from the start, 64 bytes at a time and the last (up to) 64 with three
//! more loads of 16.

/// Whether `data[start..end]` is ASCII. `data` must begin at the start of the whole buffer, so that
/// the 16 bytes before `end` are readable whenever `end >= 16`; near the start of the buffer the
/// bytes are tested one by one.
#[inline(always)]
pub(super) fn is_ascii(data: &[u8], start: usize, end: usize) -> bool {
    let n = end - start;
    if end < 16 {
        return data[start..end].is_ascii();
    }
    // The high bits of the last 16 bytes; the span's own are the top `n` of them.
    let last = high_bits(data, end - 16);
    if n <= 16 {
        return last >> (16 - n) == 0;
    }
    let mut i = start;
    while end - i > 64 {
        if any_high_bit_64(data, i) {
            return false;
        }
        i += 64;
    }
    // At most 64 bytes left: three chunks from `i` and the last 16 bytes cover them, a chunk that
    // would reach past the end being moved back onto the last 16 (no loop, no branch).
    let last_start = end - 16;
    let acc = last
        | high_bits(data, i.min(last_start))
        | high_bits(data, (i + 16).min(last_start))
        | high_bits(data, (i + 32).min(last_start));
    acc == 0
}

/// Whether any of `data[at..at + 64]` has its high bit set.
#[inline(always)]
fn any_high_bit_64(data: &[u8], at: usize) -> bool {
    let block: &[u8; 64] = data[at..at + 64].try_into().expect("64 bytes");
    any_high_bit_of(block)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn any_high_bit_of(block: &[u8; 64]) -> bool {
    use core::arch::x86_64::{_mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128};
    let p = block.as_ptr();
    // SAFETY: the four loads read `block`'s 64 bytes, unaligned loads being allowed; SSE2 is part of
    // the x86_64 baseline.
    let mask = unsafe {
        let a = _mm_or_si128(_mm_loadu_si128(p.cast()), _mm_loadu_si128(p.add(16).cast()));
        let b = _mm_or_si128(
            _mm_loadu_si128(p.add(32).cast()),
            _mm_loadu_si128(p.add(48).cast()),
        );
        _mm_movemask_epi8(_mm_or_si128(a, b))
    };
    mask != 0
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn any_high_bit_of(block: &[u8; 64]) -> bool {
    portable_any_high_bit(block)
}

/// [`any_high_bit_of`] without SIMD.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn portable_any_high_bit(block: &[u8; 64]) -> bool {
    let acc = block
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
        .fold(0, |acc, w| acc | w);
    acc & 0x8080_8080_8080_8080 != 0
}

/// The high bits of `data[at..at + 16]`, byte `at + k` in bit `k`.
#[inline(always)]
fn high_bits(data: &[u8], at: usize) -> u32 {
    let chunk: &[u8; 16] = data[at..at + 16].try_into().expect("16 bytes");
    high_bits_of(chunk)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn high_bits_of(chunk: &[u8; 16]) -> u32 {
    use core::arch::x86_64::{_mm_loadu_si128, _mm_movemask_epi8};
    // SAFETY: `chunk` is 16 readable bytes and `_mm_loadu_si128` needs no alignment; SSE2, which
    // both instructions need, is part of the x86_64 baseline.
    let mask = unsafe { _mm_movemask_epi8(_mm_loadu_si128(chunk.as_ptr().cast())) };
    mask as u32 & 0xFFFF
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn high_bits_of(chunk: &[u8; 16]) -> u32 {
    portable_high_bits(chunk)
}

/// [`high_bits_of`] without SIMD: each half's high bits gathered into one byte by a multiplication.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn portable_high_bits(chunk: &[u8; 16]) -> u32 {
    fn gather(w: u64) -> u32 {
        // Bit 8k of `w >> 7` is byte k's high bit; the product moves it to bit 56 + k, carry-free.
        (((w >> 7) & 0x0101_0101_0101_0101).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
    }
    let (lo, hi) = chunk.split_at(8);
    let lo = u64::from_le_bytes(lo.try_into().expect("8 bytes"));
    let hi = u64::from_le_bytes(hi.try_into().expect("8 bytes"));
    gather(lo) | gather(hi) << 8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_high_bits(chunk: &[u8; 16]) -> u32 {
        (0..16).map(|k| u32::from(chunk[k] >> 7) << k).sum()
    }

    #[test]
    fn high_bits_match_a_byte_by_byte_count() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..2000 {
            let mut chunk = [0u8; 16];
            for b in &mut chunk {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Sparse high bits in some rounds, dense in others.
                *b = if round % 3 == 0 {
                    (x as u8) & 0x7F
                } else {
                    x as u8
                };
            }
            if round % 5 == 0 {
                chunk[round % 16] |= 0x80;
            }
            assert_eq!(high_bits_of(&chunk), naive_high_bits(&chunk));
            assert_eq!(portable_high_bits(&chunk), naive_high_bits(&chunk));
        }
        for at in [None, Some(0), Some(17), Some(63)] {
            let mut block = [b'x'; 64];
            if let Some(i) = at {
                block[i] = 0x80;
            }
            assert_eq!(any_high_bit_of(&block), at.is_some());
            assert_eq!(portable_any_high_bit(&block), at.is_some());
        }
    }

    /// Every span length at every position of a buffer, with one non-ASCII byte inside the span,
    /// just before it, just after it, or nowhere: the shortcut (one load reaching back before the
    /// span) and the byte-by-byte start of the buffer both agree with `<[u8]>::is_ascii`.
    #[test]
    fn is_ascii_agrees_with_std_everywhere() {
        for len in 0..150usize {
            for start in 0..40usize {
                let end = start + len;
                for bad in [
                    None,
                    Some(start.wrapping_sub(1)),
                    Some(start),
                    Some(end.wrapping_sub(1)),
                    Some(end),
                ] {
                    let mut buf = vec![b'a'; end + 20];
                    if let Some(i) = bad.filter(|&i| i < buf.len()) {
                        buf[i] = 0xC3;
                    }
                    let data = &buf[..end];
                    assert_eq!(
                        is_ascii(data, start, end),
                        data[start..end].is_ascii(),
                        "start {start} len {len} bad {bad:?}"
                    );
                }
            }
        }
    }
}
