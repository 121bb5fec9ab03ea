//! A local Bitcoin regtest chain for Trickle's tests and development.
//!
//! Every block is validated by Bitcoin Core's libbitcoinkernel; transactions
//! enter a mempool whose scripts Bitcoin Core's interpreter checks; an
//! Esplora-compatible REST API serves wallets (BDK's `bdk_esplora`) and payee
//! servers; developer controls under `/regtest/` mine blocks, pay from a
//! faucet and move chain time forward.
//!
//! ```no_run
//! # async fn demo() -> Result<(), trickle_regtest::Error> {
//! use trickle_regtest::{Config, Node};
//! let node = Node::start(Config::default()).await?;
//! println!("esplora at {}", node.url());
//! node.mine(1).await?;
//! # Ok(())
//! # }
//! ```

mod chain;
mod control;
mod esplora;
mod faucet;
mod index;
mod mempool;
mod node;
mod state;

pub use chain::ChainError;
pub use faucet::FaucetError;
pub use mempool::{Rejection, COINBASE_MATURITY, MIN_RELAY_SAT_PER_VB};
pub use node::{Config, Node};
pub use state::MAX_CLOCK_OFFSET_SECS;

/// Errors of the regtest node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel failed or refused a block.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The mempool refused a transaction.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The faucet cannot pay.
    #[error(transparent)]
    Faucet(#[from] FaucetError),
    /// The chain clock cannot move that far ahead of the system clock.
    #[error("chain time can move at most {max_secs} more seconds ahead (the kernel refuses blocks over 2 hours ahead of the system clock)")]
    ClockTooFar {
        /// Seconds the clock may still move.
        max_secs: u64,
    },
    /// A reorganisation must replace at least one block and at most `max`.
    #[error("a reorg replaces 1 to {max} blocks")]
    Reorg {
        /// The most blocks a reorg may replace now.
        max: u32,
    },
    /// Binding or serving the HTTP port failed.
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
