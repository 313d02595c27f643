//! `replay-tool`: Backbone's operator CLI. The work is in the library.

/// sled allocates and frees a copy of a B-tree leaf on every insert; glibc's
/// allocator spent a third of a rebuild in that churn. See
/// `docs/benchmarks.md`, "Profiles".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    replay_tool::main()
}
