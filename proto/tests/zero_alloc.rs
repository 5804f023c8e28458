//! `validate_object`, `check_object`, `spec_value` and `hook_type` never allocate on valid input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use coprocess_proto::fixtures;
use coprocess_proto::wire::{check_object, hook_type, spec_value, validate_object};

/// Counts allocations made by the current thread (the test harness's other threads don't count).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every method forwards to the system allocator unchanged; counting has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `alloc`, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: as for `dealloc`, plus the caller's contract for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn readers_and_validator_do_not_allocate() {
    let encodings = [
        fixtures::encode(&fixtures::small_object()),
        fixtures::encode(&fixtures::typical_object()),
        fixtures::encode(&fixtures::large_object()),
        fixtures::encode(&fixtures::fully_populated_object()),
    ];
    let before = allocations();
    for b in &encodings {
        assert!(validate_object(b).is_ok());
        assert!(check_object(b).is_ok_and(|r| r.api_id().is_some()));
        assert!(spec_value(b, "APIID").is_some());
        assert!(spec_value(b, "no such key").is_none());
        assert!(hook_type(b).is_some());
    }
    assert_eq!(allocations(), before, "the success path allocated");
    // Sanity check that the counter works.
    let v = std::hint::black_box(vec![1u8; 16]);
    drop(v);
    assert!(allocations() > before);
}
