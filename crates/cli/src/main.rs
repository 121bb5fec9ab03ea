//! `trickle`: the native Trickle payer. The same wallet and channel code as the extension, on
//! an encrypted wallet in one SQLite file, for scripts, agents and tests.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::{Address, Amount, FeeRate, Network};
use clap::{Parser, Subcommand};
use fs4::FileExt;
use trickle_channel::http::{
    PaymentRequired, PaymentRequirements, PaymentResponse, Resource, PAYMENT_REQUIRED,
    PAYMENT_RESPONSE, PAYMENT_SIGNATURE,
};
use trickle_wallet::esplora_client::{AsyncClient, Builder};
use trickle_wallet::layout::{self, Scoped};
use trickle_wallet::store::{Commit, SqliteStore, Store, StoreError, WriteBatch};
use trickle_wallet::vault;
use trickle_wallet::{
    ChannelLimits, OpenParams, Transport, Wallet, ENDPOINT_TIMEOUT, MAX_ENDPOINT_BODY_BYTES,
};

type Error = Box<dyn std::error::Error>;

#[derive(Parser)]
#[command(
    name = "trickle",
    version,
    about = "Pay websites over Bitcoin payment channels"
)]
struct Cli {
    /// Wallet directory (the wallet is the SQLite file `wallet.sqlite3` in it).
    #[arg(long, env = "TRICKLE_DIR", default_value = ".trickle/wallet")]
    dir: PathBuf,
    /// Bitcoin network: regtest, signet, testnet or bitcoin.
    #[arg(long, env = "TRICKLE_NETWORK", default_value = "regtest")]
    network: Network,
    /// Esplora REST API base URL.
    #[arg(long, env = "TRICKLE_ESPLORA", default_value = "http://127.0.0.1:3002")]
    esplora: String,
    /// Fee rate for on-chain transactions, sat/vB.
    #[arg(long, default_value_t = 2)]
    fee_rate: u32,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the on-chain wallet.
    #[command(subcommand)]
    Wallet(WalletCommand),
    /// GET URLs like curl, paying over a channel if a site asks and the price is within
    /// limits; prints the bodies. Repeat requests to a site carry their payment up front.
    Fetch {
        /// The URLs, fetched in order.
        #[arg(required = true)]
        urls: Vec<String>,
        /// Refuse to pay more than this per request, in sat.
        #[arg(long, default_value_t = 100)]
        max_price: u64,
        /// Lock at most this much in a new channel with the site, in sat.
        #[arg(long, default_value_t = 50_000)]
        budget: u64,
    },
    /// List channels.
    Channels,
    /// Ask the site's payee to close its channel.
    Close {
        /// The site (host).
        host: String,
    },
    /// Broadcast refunds of expired channels the payee never closed.
    Refund,
}

#[derive(Subcommand)]
enum WalletCommand {
    /// Create a wallet; prints the new recovery phrase once.
    Create,
    /// Restore a wallet from its phrase (TRICKLE_PHRASE or standard input).
    Restore,
    /// Print a fresh receive address.
    Address,
    /// Sync and print the balance.
    Balance,
    /// Send funds out of the wallet.
    Withdraw {
        /// Destination address.
        address: String,
        /// Amount in sat.
        amount: u64,
    },
}

struct Http(reqwest::Client);

/// Sends a request to a channel endpoint: given up after [`ENDPOINT_TIMEOUT`] (answer read
/// included), refused with an answer beyond [`MAX_ENDPOINT_BODY_BYTES`].
async fn endpoint_call(request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), String> {
    let mut resp = request
        .timeout(ENDPOINT_TIMEOUT)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if bytes.len() + chunk.len() > MAX_ENDPOINT_BODY_BYTES {
            return Err(format!(
                "the answer is longer than {MAX_ENDPOINT_BODY_BYTES} bytes"
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((status, bytes))
}

impl Transport for Http {
    async fn post_json(&self, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        endpoint_call(
            self.0
                .post(url)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    async fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        endpoint_call(self.0.get(url)).await
    }
}

/// The wallet's database, read and written on tokio's blocking pool: a write waiting for the
/// disk never holds up a request in flight on the same thread.
#[derive(Clone)]
struct Disk(SqliteStore);

impl Disk {
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError(e.to_string()))?
    }
}

impl Store for Disk {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.run(move |s| s.get_blocking(&key)).await
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = prefix.to_owned();
        self.run(move |s| s.keys_blocking(&prefix)).await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.run(move |s| s.write_blocking(batch)).await
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A secret from the environment, or a line of standard input (prompted on stderr).
fn secret(var: &str, prompt: &str) -> Result<String, Error> {
    if let Ok(v) = std::env::var(var) {
        return Ok(v);
    }
    eprint!("{prompt}: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

struct App {
    cli: Cli,
    esplora: AsyncClient,
    http: Http,
    /// The wallet's lock file, held (locked) until the process exits.
    wallet_lock: OnceLock<std::fs::File>,
}

impl App {
    /// This network's share of the wallet database, migrated to the current layout. Only one
    /// `trickle` at a time uses a wallet: a second one waits here for the first to exit.
    async fn store(&self) -> Result<Scoped<Disk>, Error> {
        self.lock_wallet()?;
        let disk = Disk(SqliteStore::open(&self.cli.dir)?);
        Ok(layout::open(disk, self.cli.network).await?)
    }

    /// Takes the OS lock on `wallet.lock` in the wallet directory, waiting (and saying so)
    /// while another process holds it: two writers on one channel record could sign two
    /// payments on the same total.
    fn lock_wallet(&self) -> Result<(), Error> {
        if self.wallet_lock.get().is_some() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.cli.dir)?;
        let path = self.cli.dir.join("wallet.lock");
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        // fs4, not std's `File::lock`: this crate builds with Rust before 1.89.
        match FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                eprintln!(
                    "the wallet in {} is in use by another trickle; waiting for it to finish ...",
                    self.cli.dir.display()
                );
                FileExt::lock(&file)?;
            }
            Err(fs4::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", path.display()).into())
            }
        }
        // Held by this process from now on; the OS releases it when the process ends.
        let _ = self.wallet_lock.set(file);
        Ok(())
    }

    fn fee_rate(&self) -> Result<FeeRate, Error> {
        FeeRate::from_sat_per_vb(u64::from(self.cli.fee_rate))
            .ok_or_else(|| "fee rate out of range".into())
    }

    async fn unlock(&self) -> Result<Wallet<Scoped<Disk>>, Error> {
        let password = secret("TRICKLE_PASSWORD", "password")?;
        Ok(Wallet::unlock(self.store().await?, self.cli.network, &password).await?)
    }

    async fn run(&self) -> Result<(), Error> {
        match &self.cli.command {
            Command::Wallet(WalletCommand::Create) => {
                let password = secret("TRICKLE_PASSWORD", "new password")?;
                vault::check_password(&password)?;
                let (_, phrase) =
                    Wallet::create(self.store().await?, self.cli.network, &password).await?;
                eprintln!("Write these 12 words down; they are shown only once:");
                println!("{phrase}");
            }
            Command::Wallet(WalletCommand::Restore) => {
                let phrase = secret("TRICKLE_PHRASE", "recovery phrase")?;
                let password = secret("TRICKLE_PASSWORD", "new password")?;
                vault::check_password(&password)?;
                Wallet::restore(self.store().await?, self.cli.network, &phrase, &password).await?;
                eprintln!("restored");
            }
            Command::Wallet(WalletCommand::Address) => {
                println!("{}", self.unlock().await?.receive_address().await?);
            }
            Command::Wallet(WalletCommand::Balance) => {
                let mut wallet = self.unlock().await?;
                eprintln!("syncing with {} ...", self.cli.esplora);
                wallet.sync(&self.esplora, now()).await?;
                let b = wallet.balance();
                println!(
                    "confirmed {} sat, pending {} sat, immature {} sat",
                    b.confirmed.to_sat(),
                    b.pending.to_sat(),
                    b.immature.to_sat()
                );
            }
            Command::Wallet(WalletCommand::Withdraw { address, amount }) => {
                let address: Address = address
                    .parse::<Address<_>>()?
                    .require_network(self.cli.network)?;
                let mut wallet = self.unlock().await?;
                wallet.sync(&self.esplora, now()).await?;
                let tx = wallet
                    .send(
                        &self.esplora,
                        &address,
                        Amount::from_sat(*amount),
                        self.fee_rate()?,
                        now(),
                    )
                    .await?;
                println!("{}", tx.compute_txid());
            }
            Command::Fetch {
                urls,
                max_price,
                budget,
            } => {
                let mut session = FetchSession::default();
                let hosts: Vec<Option<String>> = urls
                    .iter()
                    .map(|u| {
                        let url = reqwest::Url::parse(u).ok()?;
                        url.host_str().map(str::to_owned)
                    })
                    .collect();
                let mut fetched = Ok(());
                for (i, url) in urls.iter().enumerate() {
                    // Whether the next URL goes to the same site: its payment can be prepared
                    // while this one is in flight.
                    let next_same_site = hosts[i].is_some() && hosts.get(i + 1) == Some(&hosts[i]);
                    let body = self
                        .fetch(
                            &mut session,
                            url,
                            Amount::from_sat(*max_price),
                            Amount::from_sat(*budget),
                            next_same_site,
                        )
                        .await
                        .and_then(|body| {
                            // Out at once: a paid body must not wait in a buffer that a
                            // killed process loses.
                            let mut out = std::io::stdout().lock();
                            out.write_all(&body)?;
                            Ok(out.flush()?)
                        });
                    if let Err(e) = body {
                        fetched = Err(e);
                        break;
                    }
                }
                // Receipts wait for the next payment's write during the run; what is left of
                // them is stored at its end (also when it failed: they are the payee's latest
                // account of the channel).
                let flushed = match session.wallet.as_ref() {
                    Some(wallet) => {
                        wallet
                            .commit_batch(std::mem::take(&mut session.pending))
                            .await
                    }
                    None => Ok(()),
                };
                fetched?;
                flushed?;
            }
            Command::Channels => {
                let mut wallet = self.unlock().await?;
                self.check_spent(&mut wallet).await?;
                println!(
                    "{:<24} {:<10} {:>12} {:>12} {:>10} {:>12} {:<8} channel",
                    "site", "state", "value", "paid", "credit", "expiry", "settle"
                );

                for record in wallet.channels().await? {
                    let state = &record.state.state;
                    let (value, expiry) = state
                        .contract()
                        .map_or((0, 0), |c| (c.value.to_sat(), c.expiry.to_consensus_u32()));
                    let paid = state.paid().to_sat();
                    // The channel's id on the wire and on chain: its contract txid.
                    let contract = state
                        .contract_txid()
                        .map_or_else(|| "-".to_owned(), |t| t.to_string());
                    // No settlement in a block SETTLEMENT_DUE_BLOCKS before the expiry: the
                    // user is told; `trickle refund` takes the channel back once it is valid.
                    let flag = if record.chain.settlement_overdue {
                        "overdue"
                    } else {
                        "-"
                    };
                    println!(
                        "{:<24} {:<10} {:>12} {:>12} {:>10} {:>12} {flag:<8} {contract}",
                        record.site,
                        state.name(),
                        value,
                        paid,
                        record.credit.to_sat(),
                        expiry
                    );
                }
            }
            Command::Close { host } => {
                let mut wallet = self.unlock().await?;
                let record = wallet
                    .channels()
                    .await?
                    .into_iter()
                    .find(|r| &r.site == host)
                    .ok_or_else(|| format!("no channel with {host}"))?;
                let tip = Wallet::<Scoped<Disk>>::tip(&self.esplora).await?;
                let settlement = wallet
                    .close_channel(&self.http, host, &record.payee_key, tip)
                    .await
                    .map_err(|e| {
                        // Nothing new was signed: the channel's money is where it was.
                        let expiry = match record.state.state.contract().map(|c| c.expiry) {
                            Some(bitcoin::absolute::LockTime::Blocks(h)) => format!("block {h}"),
                            Some(bitcoin::absolute::LockTime::Seconds(t)) => {
                                format!("median time {t}")
                            }
                            None => "its expiry".to_owned(),
                        };
                        format!(
                            "the payee did not close the channel with {host}: {e}\n\
                             The channel stays open and nothing more was paid: it still pays the site, \
                             `trickle close {host}` asks again, and after {expiry} `trickle refund` \
                             takes its funds back."
                        )
                    })?;
                println!("{}", settlement.compute_txid());
            }
            Command::Refund => {
                let mut wallet = self.unlock().await?;
                // No refund for a contract a settlement spent.
                self.check_spent(&mut wallet).await?;
                // At the chain's fee estimate; a refund already out is replaced if it rose.
                let refunds = wallet.refund_expired(&self.esplora).await?;
                eprintln!("{} refund(s) broadcast", refunds.len());
                for tx in refunds {
                    println!("{}", tx.compute_txid());
                }
            }
        }
        Ok(())
    }

    /// Records the channels whose contract a final transaction spent: a channel is closed
    /// only once the chain shows its settlement (or refund) final, and what a reorganisation
    /// took out of the chain is broadcast again.
    async fn check_spent(&self, wallet: &mut Wallet<Scoped<Disk>>) -> Result<(), Error> {
        let depth = trickle_wallet::final_confirmations(self.cli.network);
        for (site, seen) in wallet.check_spent_contracts(&self.esplora, depth).await? {
            match seen {
                Ok(txid) => eprintln!("the channel with {site} was closed by {txid}"),
                Err(e) => eprintln!("the channel with {site}: {e}"),
            }
        }
        Ok(())
    }

    /// GET `url`; on a 402 with a channel offer within limits, pay and retry once. Once the
    /// wallet is unlocked, requests to a site with an open channel carry a pre-armed payment;
    /// with `next_same_site`, the payment of the next request is prepared while this one is in
    /// flight.
    async fn fetch(
        &self,
        session: &mut FetchSession,
        url: &str,
        max_price: Amount,
        budget: Amount,
        next_same_site: bool,
    ) -> Result<Vec<u8>, Error> {
        let parsed = reqwest::Url::parse(url)?;
        let host = parsed.host_str().ok_or("URL has no host")?.to_owned();
        let resource = Resource {
            url: url.to_owned(),
            description: String::new(),
            mime_type: String::new(),
        };
        let mut request = self.http.0.get(url);
        let mut armed = false;
        if let (Some(wallet), Some(tip), Some(payee)) = (
            session.wallet.as_mut(),
            session.tip,
            session.payees.get(&host),
        ) {
            let armed_payment = wallet
                .pre_arm(&session.pending, &host, payee, &resource, tip)
                .await?
                .commit_carrying(&*wallet, &mut session.pending)
                .await?;
            if let Some(payment) = armed_payment {
                request = request.header(PAYMENT_SIGNATURE, payment);
                armed = true;
            }
        }
        let first = send(session, &host, request, armed && next_same_site).await?;
        // A refused payment comes with the payee's account of the channel: apply it before
        // paying again.
        self.apply_receipt(session, &host, &first).await?;
        if first.status().as_u16() != 402 {
            return ok_body(first).await;
        }
        let header = first
            .headers()
            .get(PAYMENT_REQUIRED)
            .ok_or("402 without a PAYMENT-REQUIRED header")?
            .to_str()?;
        let required = PaymentRequired::from_header(header)?;
        let offer = required
            .channel_offer(self.cli.network)
            .ok_or_else(|| format!("the site offers no channel payment on {}", self.cli.network))?;
        if offer.amount > max_price {
            return Err(format!(
                "price {} sat is above --max-price {}",
                offer.amount.to_sat(),
                max_price.to_sat()
            )
            .into());
        }
        if session.wallet.is_none() {
            session.wallet = Some(self.unlock().await?);
        }
        let tip = match session.tip {
            Some(tip) => tip,
            None => Wallet::<Scoped<Disk>>::tip(&self.esplora).await?,
        };
        session.tip = Some(tip);
        session.payees.insert(host.clone(), offer.pay_to);
        let wallet = session.wallet.as_mut().ok_or("wallet not unlocked")?;
        let existing = wallet.channel(&host, &offer.pay_to).await?;
        // A run killed while opening left the contract handed over but the channel not open:
        // finish that opening rather than lock a second channel.
        if existing.as_ref().is_some_and(|r| {
            matches!(
                r.state.state,
                trickle_channel::PayerState::AwaitingOpen { .. }
            )
        }) {
            eprintln!("completing the opening of the channel with {host} ...");
            wallet
                .complete_open(&self.http, &self.esplora, &host, &offer.pay_to)
                .await?;
        }
        let usable = existing
            .as_ref()
            .and_then(|r| r.state.state.committed_channel().map(|_| r))
            .is_some();
        if !usable {
            if let Some(other) = wallet.channels().await?.iter().find(|r| r.site == host) {
                if other.payee_key != offer.pay_to {
                    return Err(
                        "the site's payee key changed since the last channel; not paying".into(),
                    );
                }
            }
            let value = budget.min(offer.extra.max_channel_value);
            if value < offer.extra.min_channel_value {
                return Err(format!(
                    "--budget {} is below the site's minimum channel of {} sat",
                    budget.to_sat(),
                    offer.extra.min_channel_value.to_sat()
                )
                .into());
            }
            eprintln!(
                "opening a channel of {} sat with {host} ...",
                value.to_sat()
            );
            // The receipts of this run are stored before a channel is opened in their place.
            wallet
                .commit_batch(std::mem::take(&mut session.pending))
                .await?;
            wallet.sync(&self.esplora, now()).await?;
            wallet
                .open_channel(
                    &self.http,
                    &self.esplora,
                    OpenParams {
                        site: &host,
                        offer,
                        value,
                        // The run's cap on what the first payment may sign; the offer's own
                        // `minPayment` bounds it too (`open_channel`).
                        first_payment: budget,
                        limits: &ChannelLimits::default(),
                        fee_rate: self.fee_rate()?,
                        now: now(),
                    },
                )
                .await?;
        }
        eprintln!("paying {} sat to {host}", offer.amount.to_sat());
        let paid = self
            .pay_offer(session, &host, offer, &resource, next_same_site)
            .await?;
        // The payee has less credit than this wallet counted (a receipt lost when a run was
        // killed): its refusal carried its account of the channel, now applied, and a fresh
        // offer. Pay the difference, once.
        let again = match paid.headers().get(PAYMENT_REQUIRED) {
            Some(h) if paid.status().as_u16() == 402 => {
                Some(PaymentRequired::from_header(h.to_str()?)?)
            }
            _ => None,
        };
        if let Some(required) = again.filter(|r| r.error.as_deref() == Some("insufficient_credit"))
        {
            if let Some(offer) = required
                .channel_offer(self.cli.network)
                .filter(|o| o.amount <= max_price)
            {
                eprintln!(
                    "paying {} sat to {host} (the payee had less credit)",
                    offer.amount.to_sat()
                );
                let paid = self
                    .pay_offer(session, &host, offer, &resource, next_same_site)
                    .await?;
                return ok_body(paid).await;
            }
        }
        ok_body(paid).await
    }

    /// Pays `offer` (answering its nonce) for `resource`, sends the request again with the
    /// payment and applies the receipt; returns the response.
    async fn pay_offer(
        &self,
        session: &mut FetchSession,
        host: &str,
        offer: &PaymentRequirements,
        resource: &Resource,
        next_same_site: bool,
    ) -> Result<reqwest::Response, Error> {
        let tip = session.tip.ok_or("no chain tip")?;
        let wallet = session.wallet.as_mut().ok_or("wallet not unlocked")?;
        let payment = wallet
            .pay(
                &session.pending,
                host,
                offer,
                resource,
                Some(offer.extra.nonce.clone()),
                tip,
            )
            .await?
            .commit_carrying(&*wallet, &mut session.pending)
            .await?;
        let request = self
            .http
            .0
            .get(&resource.url)
            .header(PAYMENT_SIGNATURE, payment);
        let paid = send(session, host, request, next_same_site).await?;
        self.apply_receipt(session, host, &paid).await?;
        Ok(paid)
    }

    /// Reads the `PAYMENT-RESPONSE` of `resp`, if any, into the channel. A refused payment
    /// ends the fetch, except a refused pre-armed one: the 402 that comes with it is paid.
    async fn apply_receipt(
        &self,
        session: &mut FetchSession,
        host: &str,
        resp: &reqwest::Response,
    ) -> Result<(), Error> {
        let Some(value) = resp.headers().get(PAYMENT_RESPONSE) else {
            return Ok(());
        };
        let response = PaymentResponse::from_header(value.to_str()?)?;
        if let (Some(wallet), Some(tip), Some(payee)) = (
            session.wallet.as_ref(),
            session.tip,
            session.payees.get(host),
        ) {
            // Stored with the next payment's write, or at the end of the run.
            let applied = wallet
                .apply_receipt(&session.pending, host, payee, &response, tip)
                .await?;
            session.pending.merge(applied.into_writes());
        }
        if !response.success && resp.status().as_u16() != 402 {
            let reason = response.error_reason.unwrap_or_default();
            return Err(format!("payment refused: {reason}").into());
        }
        Ok(())
    }
}

/// Sends `request` to `host`; with `prepare_next`, the wallet prepares (signs and stores) the
/// payment of the next request to `host` meanwhile, so that the next request need not wait for
/// a signature or a disk write. The prepared payment is stored before this returns.
async fn send(
    session: &mut FetchSession,
    host: &str,
    request: reqwest::RequestBuilder,
    prepare_next: bool,
) -> Result<reqwest::Response, Error> {
    match (
        prepare_next,
        session.wallet.as_mut(),
        session.tip,
        session.payees.get(host),
    ) {
        (true, Some(wallet), Some(tip), Some(payee)) => {
            let pending = &mut session.pending;
            let wallet = &*wallet;
            let prepare = async move {
                wallet
                    .prepare_next(pending, host, payee, tip)
                    .await?
                    .commit_carrying(wallet, pending)
                    .await?;
                Ok::<_, Error>(())
            };
            let (response, prepared) = tokio::join!(send_again_if_lost(request), prepare);
            prepared?;
            response
        }
        _ => send_again_if_lost(request).await,
    }
}

/// How many times a request whose answer never arrived is sent, and the first wait between.
const SEND_ATTEMPTS: u32 = 5;
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(250);

/// Sends `request`; if its answer never arrives (no connection, or the connection cut before
/// an answer), sends the same request again, with the same `PAYMENT-SIGNATURE`, a few times
/// with a doubling wait. A payee that stored the charge before the answer was lost serves the
/// header's ticket again as a reload: the page comes without a second charge.
async fn send_again_if_lost(request: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
    let mut wait = FIRST_RETRY_WAIT;
    let mut attempt = 1;
    loop {
        let Some(copy) = request.try_clone() else {
            return Ok(request.send().await?);
        };
        match copy.send().await {
            Ok(response) => return Ok(response),
            Err(e) if attempt < SEND_ATTEMPTS && (e.is_connect() || e.is_request()) => {
                eprintln!("no answer ({e}); sending the request again in {wait:?}");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What one `trickle fetch` run keeps between its URLs: the wallet, once unlocked, the tip,
/// each site's payee key (so a request reads one channel record, not all of them), and the
/// receipts applied since the last write, which go with the next one.
#[derive(Default)]
struct FetchSession {
    wallet: Option<Wallet<Scoped<Disk>>>,
    pending: WriteBatch,
    tip: Option<trickle_channel::ChainTip>,
    payees: std::collections::HashMap<String, bitcoin::secp256k1::PublicKey>,
}

async fn ok_body(resp: reqwest::Response) -> Result<Vec<u8>, Error> {
    let status = resp.status();
    let body = resp.bytes().await?.to_vec();
    if !status.is_success() {
        return Err(format!("HTTP {status}").into());
    }
    Ok(body)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trickle: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let esplora = Builder::new(&cli.esplora).build_async()?;
        let app = App {
            cli,
            esplora,
            http: Http(reqwest::Client::new()),
            wallet_lock: OnceLock::new(),
        };
        app.run().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trickle: {e}");
            ExitCode::FAILURE
        }
    }
}
