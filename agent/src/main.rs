//! The `warden` binary: parse the command line and dispatch to a subcommand.
use std::process::ExitCode;

use clap::Parser;
use warden::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => cli::run::run(&cli, args).map(|()| ExitCode::SUCCESS),
        Command::Exec(args) => cli::exec::run(&cli, args).map(ExitCode::from),
        Command::Status(args) => cli
            .load_config()
            .and_then(|config| cli::status::run(&config, args))
            .map(|()| ExitCode::SUCCESS),
        Command::Ca(args) => cli
            .load_config()
            .and_then(|config| cli::ca::run(&config, args))
            .map(|()| ExitCode::SUCCESS),
        Command::Sessions(args) => cli
            .load_config()
            .and_then(|config| cli::sessions::run(&config, args))
            .map(|()| ExitCode::SUCCESS),
        Command::Audit(args) => cli
            .load_config()
            .and_then(|config| cli::audit::run(&config, args))
            .map(|()| ExitCode::SUCCESS),
        Command::Policy(args) => cli::policy::run(&cli, args).map(|()| ExitCode::SUCCESS),
        Command::Install(args) => cli::install::run(&cli, args).map(|()| ExitCode::SUCCESS),
        Command::Uninstall(args) => cli::uninstall::run(&cli, args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|error| {
        eprintln!("warden: {}", describe(&error));
        ExitCode::FAILURE
    })
}

/// The error and its causes on one line. Library errors often already include their source's
/// text, so a cause whose text is already there is not repeated.
fn describe(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}
