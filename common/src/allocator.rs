//! The allocator of Ferry's binaries: mimalloc, set up by [`use_mimalloc!`]
//! in each binary's root (the `ferry` binary and the scheduler benchmark,
//! which must measure the coordinator as `ferry` runs it).
//!
//! Why: glibc's malloc spent about a fifth of a cross-database worker's CPU
//! (rows are made on the reader's thread and freed on the writer's) and a
//! third of a coordinator's under 10,000 workers' calls. Why the option:
//! mimalloc commits a reserved arena at once by default, which raised a
//! worker's peak RSS copying 1,000,000 rows PostgreSQL to PostgreSQL from 22
//! to 53 MiB; committed as used, it is 29 MiB.

pub use libmimalloc_sys;
pub use mimalloc;

/// mimalloc's option index for committing a reserved arena at once
/// (`mi_option_arena_eager_commit` in mimalloc 3's `mimalloc.h`).
pub const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Commits arena memory as it is used, not when an arena is reserved. It
/// must run before the first allocation reserves an arena, so
/// [`use_mimalloc!`] runs it as an ELF constructor, before Rust's runtime.
pub extern "C" fn commit_arenas_lazily() {
    // SAFETY: sets one of mimalloc's documented options to a valid value;
    // it takes no pointers and may be called before mimalloc is initialised.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
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
        static TUNE_ALLOCATOR: extern "C" fn() = $crate::allocator::commit_arenas_lazily;
    };
}
