//! `replay-tool`: Backbone's operator CLI. The work is in the library.

fn main() -> std::process::ExitCode {
    replay_tool::main()
}
