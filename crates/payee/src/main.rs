//! `trickle-payee --config FILE.toml`: a reverse proxy that charges for priced paths over
//! Trickle payment channels.

use std::error::Error;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::TcpListener;
use trickle_payee::chain::Esplora;
use trickle_payee::config::{load_or_create_seed, Config};
use trickle_payee::proxy::{self, Upstream};
use trickle_payee::serve::serve;
use trickle_payee::store::SqliteStore;
use trickle_payee::{Keys, Payee};

const USAGE: &str = "usage: trickle-payee --config FILE.toml";

fn config_path() -> Result<PathBuf, String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (Some("--config"), Some(path), None) => Ok(PathBuf::from(path)),
        _ => Err(USAGE.to_owned()),
    }
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run(path: PathBuf) -> Result<(), Box<dyn Error>> {
    let config = Config::load(&path)?;
    let seed = load_or_create_seed(&config.key_file)?;
    let keys = Keys::from_seed(&seed)?;
    let payout = match &config.payout_address {
        Some(a) => a.script_pubkey(),
        None => {
            tracing::warn!("no payout_address: settlements pay a key derived from the key file");
            keys.default_payout_script()
        }
    };
    let store = SqliteStore::open(&config.database).await?;
    let chain = Esplora::new(&config.esplora)?;
    let payee = Payee::start(
        config.payee_config(payout),
        keys,
        Arc::new(store),
        Arc::new(chain),
    )
    .await?;
    let app = proxy::app(
        &payee,
        config.prices.clone(),
        Upstream::new(&config.upstream)?,
    );
    let listener = TcpListener::bind(config.listen).await?;
    let mut out = std::io::stdout();
    writeln!(
        out,
        "trickle-payee listening on http://{}",
        listener.local_addr()?
    )?;
    if let Some(addr) = config.operator_listen {
        let op = TcpListener::bind(addr).await?;
        writeln!(out, "trickle-payee operator on http://{}", op.local_addr()?)?;
        let router = payee.operator();
        let timeout = config.header_timeout;
        tokio::spawn(serve(op, router, timeout, std::future::pending()));
    }
    if let Some(addr) = config.facilitator_listen {
        let listener = TcpListener::bind(addr).await?;
        let url = listener.local_addr()?;
        writeln!(out, "trickle-payee facilitator on http://{url}")?;
        // An x402 resource server forwards its channel endpoint path here too.
        let router = payee.facilitator().merge(payee.endpoint());
        let timeout = config.header_timeout;
        tokio::spawn(serve(listener, router, timeout, std::future::pending()));
    }
    out.flush()?;
    tracing::info!(key = %payee.server_key(), upstream = %config.upstream, "serving");
    let duties = payee.spawn_chain_duties(config.poll_interval);
    serve(listener, app, config.header_timeout, shutdown()).await;
    duties.abort();
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing_subscriber::filter::LevelFilter::INFO)
        });
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
    let path = match config_path() {
        Ok(p) => p,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    match run(path).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trickle-payee: {e}");
            ExitCode::FAILURE
        }
    }
}
