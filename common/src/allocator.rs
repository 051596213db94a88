//! The allocator of Ferry's binaries: mimalloc, set up by [`use_mimalloc!`]
//! in each binary's root (the `ferry` binary and the scheduler benchmark,
//! which must measure the coordinator as `ferry` runs it).
//!
//! Why: glibc's malloc spent about a fifth of a cross-database worker's CPU
//! (rows are made on the reader's thread and freed on the writer's) and a
//! third of a coordinator's under 10,000 workers' calls. Why the option:
//! mimalloc commits a reserved arena at once by default, which raised a
//! worker's peak RSS copying 1,000,000 rows PostgreSQL to PostgreSQL from 22
//! to 53 MiB; committed as used, it is 29 MiB. Why processes that copy
//! purge at once: mimalloc 3 keeps freed pages for a second before it
//! returns them, and a copy frees a send buffer every few milliseconds on
//! another thread than the one that made it, so a worker's peak RSS held
//! 2–4 MiB of pages already freed, more the longer the chunks
//! (bench/RESULTS.md, "Cost as the table grows"); purged at once, the peak
//! is what is in use, for the same CPU.

pub use libmimalloc_sys;
pub use mimalloc;

/// mimalloc's option index for committing a reserved arena at once
/// (`mi_option_arena_eager_commit` in mimalloc 3's `mimalloc.h`).
pub const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
/// mimalloc's option index for the milliseconds freed memory is kept before
/// it is returned to the OS (`mi_option_purge_delay`, default 1,000).
pub const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Commits arena memory as it is used, not when an arena is reserved. It
/// must run before the first allocation reserves an arena, so
/// [`use_mimalloc!`] runs it as an ELF constructor, before Rust's runtime.
pub extern "C" fn tune_mimalloc() {
    // SAFETY: sets one of mimalloc's documented options to a valid value;
    // it takes no pointers and may be called before mimalloc is initialised.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

/// Returns freed memory to the OS at once instead of after mimalloc's
/// second, unless the operator set `MIMALLOC_PURGE_DELAY` (mimalloc's own
/// variable); for the processes that copy (workers, `ferry local`). The
/// coordinator keeps the delay: purging at once cost it ~4 % more CPU per
/// lease in the scheduler benchmark, and its memory is its chunk records.
pub fn return_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's documented options to a valid
        // value; mimalloc reads it whenever it next considers a purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

/// Makes mimalloc the binary's global allocator, its arenas committed as
/// used; call once, at a binary crate's root.
#[macro_export]
macro_rules! use_mimalloc {
    () => {
        /// The process's allocator (see `ferry_common::allocator`).
        #[global_allocator]
        static ALLOCATOR: $crate::allocator::mimalloc::MiMalloc =
            $crate::allocator::mimalloc::MiMalloc;

        /// Sets mimalloc's options before `main` and before any allocation.
        #[used]
        #[unsafe(link_section = ".init_array")]
        static TUNE_ALLOCATOR: extern "C" fn() = $crate::allocator::tune_mimalloc;
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(o: libmimalloc_sys::mi_option_t) -> std::ffi::c_long {
        // SAFETY: reads an option by a valid index; no pointers involved.
        unsafe { libmimalloc_sys::mi_option_get(o) }
    }

    #[test]
    fn the_indexes_name_our_options_and_copying_processes_purge_at_once() {
        // This test binary runs no constructor: both options hold mimalloc
        // 3's defaults, which tell them apart (purge delay 1,000 ms, eager
        // arena commit 0, 1 or 2).
        assert!(
            (0..=2).contains(&option(MI_OPTION_ARENA_EAGER_COMMIT)),
            "index {MI_OPTION_ARENA_EAGER_COMMIT} is not eager arena commit"
        );
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the operator's value wins, and is not ours to check
        }
        assert_eq!(
            option(MI_OPTION_PURGE_DELAY),
            1_000,
            "index {MI_OPTION_PURGE_DELAY} is not the purge delay"
        );
        return_freed_memory_at_once();
        assert_eq!(option(MI_OPTION_PURGE_DELAY), 0);
    }
}
