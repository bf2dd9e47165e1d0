//! Command-line interface: the argument model and one module per subcommand.
pub mod alerts;
pub mod approvals;
pub mod audit;
pub mod ca;
pub mod exec;
pub mod install;
pub mod limits;
pub mod policy;
pub mod revoke;
pub mod run;
pub mod sessions;
pub mod status;
pub mod time_arg;
pub mod uninstall;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG_PATH};

/// Warden makes every call your AI agents make to the OpenAI API visible and accountable.
///
/// An eBPF program redirects the TCP connections of selected cgroups to Warden's local proxy, which
/// attributes each connection to its process, user, systemd unit or container, decrypts the LLM hosts
/// with its own CA, and tunnels everything else untouched.
#[derive(Debug, Parser)]
#[command(name = "warden", version)]
pub struct Cli {
    /// Configuration file. When the default is absent, built-in defaults apply; a file named here
    /// must exist. The daemon's state and admin socket are found from it.
    #[arg(long, global = true, value_name = "PATH", env = "WARDEN_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (root). SIGINT/SIGTERM detach the eBPF programs and drain
    /// open connections before exiting.
    Run(run::RunArgs),
    /// Run a command in a fresh cgroup that the running daemon intercepts; exits with its exit code.
    Exec(exec::ExecArgs),
    /// Show the daemon's selected cgroups, attached programs and counters.
    Status(status::StatusArgs),
    /// Warden's certificate authority (what clients must trust for intercepted hosts).
    Ca(ca::CaArgs),
    /// Query the audit store (root): list, show, replay and export recorded exchanges.
    Sessions(sessions::SessionsArgs),
    /// Check the audit store's tamper evidence (root).
    Audit(audit::AuditArgs),
    /// Work with policy files: `check` validates them with precise errors.
    Policy(policy::PolicyArgs),
    /// Requests held for a human decision: list, show, approve, deny, watch (approvers).
    Approvals(approvals::ApprovalsArgs),
    /// Install Warden as a hardened systemd service: binary, config, starter policy, CA trusted by
    /// the system, unit and drop-ins, then `systemctl enable --now` (root).
    Install(install::InstallArgs),
    /// Remove what `warden install` set up; keeps /etc/warden and the audit store unless --purge.
    Uninstall(uninstall::UninstallArgs),
    /// Cut an identity off from every intercepted host at once, streams in flight included
    /// (root); `--list` shows the revocations in force.
    Revoke(revoke::RevokeArgs),
    /// Lift a revocation made with `warden revoke` (root).
    Restore(revoke::RestoreArgs),
    /// The anomaly alerts on record (root): detector, identity, action and the numbers.
    Alerts(alerts::AlertsArgs),
    /// Usage against each `[[limit]]` now: per limit and identity, every cap with what is used
    /// of it and when its window turns (root).
    Limits(limits::LimitsArgs),
}

impl Cli {
    pub fn load_config(&self) -> anyhow::Result<Config> {
        Ok(Config::load(self.config.as_deref())?)
    }

    /// Which configuration this command used and how to name another, for errors that may come
    /// from looking in the wrong place (no daemon at the socket, no CA).
    pub fn config_hint(&self) -> String {
        let used = match &self.config {
            Some(path) => format!("the config used was {}", path.display()),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                format!("the config used was {DEFAULT_CONFIG_PATH} (the default)")
            }
            None => format!(
                "no config file was used ({DEFAULT_CONFIG_PATH} does not exist), so the built-in \
                 defaults apply (state_dir {})",
                Config::default().state_dir.display()
            ),
        };
        format!("{used}; name the daemon's config with --config FILE or WARDEN_CONFIG=FILE")
    }
}

/// The root install and uninstall work on: `--root DIR` (which must exist), else the live system,
/// which needs root unless nothing is changed.
fn install_root(dir: Option<&Path>, dry_run: bool) -> anyhow::Result<crate::install::Root> {
    use crate::install::Root;
    match dir {
        Some(dir) => {
            if !dir.is_dir() {
                bail!("--root {}: not a directory", dir.display());
            }
            let dir =
                std::path::absolute(dir).with_context(|| format!("--root {}", dir.display()))?;
            Ok(Root::image(dir))
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        None if !dry_run && unsafe { libc::geteuid() } != 0 => {
            bail!("this changes the live system and needs root (or --root DIR for an image)")
        }
        None => Ok(Root::live()),
    }
}

/// The last line of install and uninstall: what changed, or that nothing did.
fn summary(steps: &crate::install::Steps, done: &str) -> String {
    match (steps.changes(), steps.dry_run()) {
        (0, false) => format!("nothing changed: Warden was already {done} as above"),
        (0, true) => "dry run: nothing to change".to_string(),
        (n, false) => format!("{n} change(s) made"),
        (n, true) => format!("dry run: {n} change(s) would be made, none was"),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_command_explains_itself_and_takes_config() {
        fn check(command: &clap::Command, path: &str) {
            let path = format!("{path} {}", command.get_name());
            assert!(command.get_about().is_some(), "`{path}` has no help text");
            let has_config = command
                .get_arguments()
                .any(|arg| arg.get_long() == Some("config"));
            assert!(has_config, "`{path}` does not take --config");
            for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                check(sub, &path);
            }
        }
        let mut cli = Cli::command();
        cli.build();
        cli.clone().debug_assert();
        check(&cli, "");
    }

    #[test]
    fn exec_takes_the_command_after_double_dash() {
        let cli = Cli::try_parse_from([
            "warden", "exec", "--config", "/x.toml", "--", "python3", "-c", "1",
        ])
        .unwrap();
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(args.command, ["python3", "-c", "1"]);
        assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("/x.toml")));
    }

    #[test]
    fn install_and_uninstall_take_their_flags() {
        let cli = Cli::try_parse_from([
            "warden",
            "install",
            "--root",
            "/img",
            "--dry-run",
            "--no-start",
        ])
        .unwrap();
        let Command::Install(args) = cli.command else {
            panic!("not install")
        };
        assert_eq!(args.root.as_deref(), Some(std::path::Path::new("/img")));
        assert!(args.dry_run && args.no_start);
        let cli = Cli::try_parse_from(["warden", "uninstall", "--purge"]).unwrap();
        let Command::Uninstall(args) = cli.command else {
            panic!("not uninstall")
        };
        assert!(args.purge && !args.dry_run && args.root.is_none());
        assert!(Cli::try_parse_from(["warden", "uninstall", "--no-start"]).is_err());
    }

    #[test]
    fn summaries_say_when_nothing_changed() {
        let mut sink = |_: &crate::install::Step| {};
        let steps = crate::install::Steps::new(false, &mut sink);
        assert!(summary(&steps, "installed").starts_with("nothing changed"));
        let mut sink = |_: &crate::install::Step| {};
        let mut steps = crate::install::Steps::new(true, &mut sink);
        steps.report(crate::install::Outcome::Created, "x");
        assert_eq!(
            summary(&steps, "installed"),
            "dry run: 1 change(s) would be made, none was"
        );
    }

    #[test]
    fn policy_check_takes_an_optional_path() {
        let cli = Cli::try_parse_from(["warden", "policy", "check", "/srv/p.toml"]).unwrap();
        let Command::Policy(policy::PolicyArgs {
            command: policy::PolicyCommand::Check(check),
        }) = cli.command
        else {
            panic!("not policy check")
        };
        assert_eq!(
            check.path.as_deref(),
            Some(std::path::Path::new("/srv/p.toml"))
        );
        let cli = Cli::try_parse_from(["warden", "policy", "check"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Policy(policy::PolicyArgs {
                command: policy::PolicyCommand::Check(policy::CheckArgs { path: None })
            })
        ));
    }
}
