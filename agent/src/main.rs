//! The `warden` binary: parse the command line and dispatch to a subcommand.
use std::process::ExitCode;

use clap::Parser;
use warden::{
    admin::client::AdminClientError,
    cli::{self, Cli, Command},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        restore_default_sigpipe();
    }
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
        Command::Alerts(args) => cli
            .load_config()
            .and_then(|config| cli::alerts::run(&config, args))
            .map(|()| ExitCode::SUCCESS),
        Command::Policy(args) => cli::policy::run(&cli, args).map(|()| ExitCode::SUCCESS),
        Command::Approvals(args) => cli
            .load_config()
            .and_then(|config| cli::approvals::run(&config, args))
            .map(|()| ExitCode::SUCCESS),
        Command::Install(args) => cli::install::run(&cli, args).map(|()| ExitCode::SUCCESS),
        Command::Uninstall(args) => cli::uninstall::run(&cli, args).map(|()| ExitCode::SUCCESS),
        Command::Revoke(args) => cli
            .load_config()
            .and_then(|config| cli::revoke::revoke(&config, args))
            .map(|()| ExitCode::SUCCESS),
        Command::Restore(args) => cli
            .load_config()
            .and_then(|config| cli::revoke::restore(&config, args))
            .map(|()| ExitCode::SUCCESS),
        Command::Limits(args) => cli
            .load_config()
            .and_then(|config| cli::limits::limits(&config, args))
            .map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|error| {
        eprintln!("warden: {}", describe(&error));
        if looked_in_the_wrong_place(&cli, &error) {
            eprintln!("warden: {}", cli.config_hint());
        }
        ExitCode::FAILURE
    })
}

/// Errors that a wrong or missing `--config` causes: no daemon at the admin socket it names, no
/// CA in its state directory.
fn looked_in_the_wrong_place(cli: &Cli, error: &anyhow::Error) -> bool {
    let unreachable = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<AdminClientError>(),
            Some(AdminClientError::Connect { .. })
        )
    });
    unreachable || matches!(cli.command, Command::Ca(_))
}

/// Rust starts with SIGPIPE ignored, so `warden sessions list | head` would panic in println!
/// once `head` leaves. The CLI ends quietly instead, like other command-line tools; the daemon
/// keeps it ignored (a client closing its socket must not kill it).
fn restore_default_sigpipe() {
    // SAFETY: setting a signal's disposition to its default has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
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
