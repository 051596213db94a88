//! `ferry completions SHELL`: prints a completion script (clap_complete).

use clap_complete::Shell;

/// Flags of `ferry completions`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Shell to complete for (bash, zsh, fish, powershell, elvish).
    shell: Shell,
}

/// Writes the completion script of `command` for the chosen shell to stdout.
pub fn run(args: Args, mut command: clap::Command) -> i32 {
    let name = command.get_name().to_string();
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
    0
}
