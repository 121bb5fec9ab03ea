//! `trickle-regtest`: a local regtest chain with an Esplora API on 127.0.0.1.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use trickle_regtest::{Config, Node};

const USAGE: &str = "\
usage: trickle-regtest [--port PORT] [--datadir DIR] [--initial-blocks N]

  --port PORT          port on 127.0.0.1 (default 3002; 0 picks a free port)
  --datadir DIR        keep the chain in DIR across restarts (default: in memory)
  --initial-blocks N   blocks mined to the faucet on a new chain (default 101)

The first line printed is `trickle-regtest listening on http://127.0.0.1:PORT`.
Esplora API at /, developer controls at /regtest/ (info, mine, faucet, time, block).";

fn parse_args() -> Result<Config, String> {
    let mut config = Config {
        port: 3002,
        ..Config::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => {
                let v = value("--port")?;
                config.port = v.parse().map_err(|_| format!("invalid port: {v}"))?;
            }
            "--datadir" => config.datadir = Some(PathBuf::from(value("--datadir")?)),
            "--initial-blocks" => {
                let v = value("--initial-blocks")?;
                config.initial_blocks = v.parse().map_err(|_| format!("invalid count: {v}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    Ok(config)
}

/// Resolves on Ctrl-C or SIGTERM, so that the chain is flushed before exit.
async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match parse_args() {
        Ok(config) => config,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("trickle-regtest: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let node = match Node::start(config).await {
        Ok(node) => node,
        Err(err) => {
            eprintln!("trickle-regtest: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "trickle-regtest listening on {}", node.url());
    let _ = stdout.flush();
    eprintln!(
        "trickle-regtest: height {}, faucet {}",
        node.height(),
        node.faucet_address()
    );
    stop_signal().await;
    match node.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("trickle-regtest: {err}");
            ExitCode::FAILURE
        }
    }
}
