//! The `tollgate` binary: parse the command line, run, map the outcome to an exit code.

use anyhow::{Context, Result};
use clap::Parser;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tollgate::cli::{AuditCommand, CaCommand, Cli, Command, PolicyCommand};
use tollgate::config::Config;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == tollgate::launcher::init::SUBCOMMAND)
    {
        return ExitCode::from(tollgate::launcher::init::main(&args[2..]));
    }
    let cli = Cli::parse_from(args);
    let default_level = if matches!(cli.command, Command::Serve) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tollgate: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve => serve(&Config::load(cli.config.as_deref())?),
        Command::Ca(CaCommand::Init { dir }) => {
            let (cert, key) = match dir {
                Some(dir) => (dir.join("ca.pem"), dir.join("ca.key")),
                None => {
                    let config = Config::load(cli.config.as_deref())?;
                    (config.ca_cert, config.ca_key)
                }
            };
            tollgate::tls::ensure_ca(&cert, &key)?;
            tollgate::tls::load_ca(&cert, &key)?;
            println!("{}", cert.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Check { dir }) => {
            let dir = match dir {
                Some(dir) => dir,
                None => Config::load(cli.config.as_deref())?.policies_dir,
            };
            let report = tollgate::policy::load_policy_dir(&dir);
            for warning in &report.warnings {
                eprintln!("{warning}");
            }
            for error in &report.errors {
                eprintln!("{error}");
            }
            if report.errors.is_empty() {
                println!("{} policies ok", report.files);
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::from(1))
            }
        }
        Command::Policy(PolicyCommand::Explain(args)) => Ok(explain(cli.config.as_deref(), &args)),
        Command::Audit(AuditCommand::Verify { files, key }) => {
            Ok(ExitCode::from(tollgate::cli::verify::run(&files, &key)?))
        }
        Command::Run(args) => {
            if cli.config.is_some() && args.admin.is_some() {
                anyhow::bail!(
                    "run: give --config (in-process proxy) or --admin (a running one), not both"
                );
            }
            Ok(ExitCode::from(tollgate::launcher::run(
                tollgate::launcher::RunOptions {
                    config: cli.config,
                    admin: args.admin,
                    admin_token_file: args.admin_token_file,
                    policy: args.policy,
                    user: args.user,
                    ttl: args.ttl,
                    env: args.env,
                    command: args.command,
                },
            )))
        }
        Command::Approvals(args) => {
            tollgate::cli::approvals::run(cli.config.as_deref(), &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Keygen { dir }) => {
            let key = match dir {
                Some(dir) => dir.join("audit.key"),
                None => Config::load(cli.config.as_deref())?.audit.key,
            };
            let status = tollgate::audit::key::ensure_key(&key)?;
            if status == tollgate::audit::key::KeyStatus::Existing {
                eprintln!("tollgate: {} exists; left as it is", key.display());
            }
            println!("{}", key.display());
            println!("{}", tollgate::audit::key::public_key_path(&key).display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// exit 0 allowed, 1 refused, 2 error.
fn explain(config: Option<&std::path::Path>, args: &tollgate::cli::ExplainArgs) -> ExitCode {
    let outcome = (|| -> Result<tollgate::cli::explain::Explanation> {
        let config = Config::load(config)?;
        let path = config.policies_dir.join(format!("{}.yaml", args.policy));
        if !path.exists() {
            anyhow::bail!(
                "no policy named `{}` in {}",
                args.policy,
                config.policies_dir.display()
            );
        }
        let (policy, _) = tollgate::policy::load_policy_file(&path)?;
        let body = match args.data.as_deref() {
            None => None,
            Some(data) => Some(match data.strip_prefix('@') {
                Some(file) => {
                    std::fs::read(file).map_err(|e| anyhow::anyhow!("--data @{file}: {e}"))?
                }
                None => data.as_bytes().to_vec(),
            }),
        };
        tollgate::cli::explain::explain(
            &policy,
            &args.method,
            &args.url,
            &args.headers,
            body.as_deref(),
        )
        .map_err(anyhow::Error::msg)
    })();
    match outcome {
        Ok(explanation) => {
            print!("{}", explanation.report);
            ExitCode::from(if explanation.allowed { 0 } else { 1 })
        }
        Err(err) => {
            eprintln!("tollgate: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(config: &Config) -> Result<ExitCode> {
    tollgate::proxy::fdlimit::raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let running = tollgate::serve::run(config, shutdown.clone()).await?;
        for addr in &running.addrs {
            tracing::info!(%addr, ca = %config.ca_cert.display(), "tollgate listening on {addr}");
        }
        tracing::info!(admin = %running.admin, "tollgate admin API on {}", running.admin);
        tokio::spawn(wait_for_signal(shutdown));
        let drained = running.wait_and_drain().await;
        if drained {
            tracing::info!("drained; exiting");
        } else {
            tracing::warn!("drain timed out; exiting with requests in flight");
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot watch SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received; draining for up to 10s");
    shutdown.cancel();
}
