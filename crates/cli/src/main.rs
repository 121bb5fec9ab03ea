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
use trickle_channel::http::mpp::{PAYMENT_RECEIPT, WWW_AUTHENTICATE};
use trickle_channel::http::{PAYMENT_REQUIRED, PAYMENT_RESPONSE};
use trickle_wallet::app::view::{ChannelView, DutiesView, DutyEvent};
use trickle_wallet::approval::RunCaps;
use trickle_wallet::budget::site_origin;
use trickle_wallet::esplora_client::{AsyncClient, Builder};
use trickle_wallet::layout::{self, Scoped};
use trickle_wallet::offer::{OfferError, OfferPolicy};
use trickle_wallet::payer::{Framing, Next, Payer, PaymentHeader, Response as PayerResponse, Sent};
use trickle_wallet::site::{PayContext, PayError, Progress};
use trickle_wallet::store::{SqliteStore, Store, StoreError, WriteBatch};
use trickle_wallet::vault;
use trickle_wallet::{Transport, Wallet, ENDPOINT_TIMEOUT, MAX_ENDPOINT_BODY_BYTES};

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
    /// Fee rate for on-chain transactions (a channel's contract, a withdrawal), sat/vB. By
    /// default the chain's estimate for about 6 blocks, as the extension pays.
    #[arg(long)]
    fee_rate: Option<u32>,
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
    ///
    /// Before a channel opens, a line on stderr previews it: the sat it locks, the contract's
    /// fee in sat and its rate, and where the rate came from (the chain's estimate, or
    /// --fee-rate). It asks nothing: --budget caps what a channel locks, --fee-rate sets the
    /// rate.
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
        /// Pay in x402's framing (`PAYMENT-SIGNATURE`, with payments sent up front) or in MPP's
        /// (`Authorization: Payment`, answering each challenge) where the site offers it.
        #[arg(long, default_value = "x402", value_parser = ["x402", "mpp"])]
        framing: String,
    },
    /// List channels.
    Channels,
    /// Ask the site's payee to close its channel.
    Close {
        /// The site: its origin (`https://site.example`), or its host when only one site on
        /// that host has a channel.
        site: String,
    },
    /// Broadcast refunds of expired channels the payee never closed.
    Refund,
    /// Every channel duty, as the extension runs them each minute (run it from cron): ask the
    /// payee to close channels near their expiry, check settlements, refund expired channels.
    Duties,
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

    /// The fee rate of the run's transactions, and where it came from: `--fee-rate`, else the
    /// chain's estimate (`Wallet::contract_fee_rate`).
    async fn fee_rate(&self) -> Result<(FeeRate, &'static str), Error> {
        match self.cli.fee_rate {
            Some(rate) => Ok((
                trickle_wallet::app::send::fee_rate(f64::from(rate))?,
                "set by --fee-rate",
            )),
            None => Ok((
                Wallet::<Scoped<Disk>>::contract_fee_rate(&self.esplora).await?,
                "the chain's estimate for about 6 blocks",
            )),
        }
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
                        trickle_wallet::app::send::amount(*amount)?,
                        self.fee_rate().await?.0,
                        now(),
                    )
                    .await?;
                println!("{}", tx.compute_txid());
            }
            Command::Fetch {
                urls,
                max_price,
                budget,
                framing,
            } => {
                let caps = RunCaps::new(
                    Amount::from_sat(*max_price),
                    Amount::from_sat(*budget),
                    now(),
                )?;
                let mut run = FetchRun {
                    framing: if framing == "mpp" {
                        Framing::Mpp
                    } else {
                        Framing::X402
                    },
                    caps: Some(caps),
                    payer: None,
                    tip: None,
                    fee_rate: None,
                };
                let origins: Vec<Option<String>> =
                    urls.iter().map(|u| site_origin(u).ok()).collect();
                let mut fetched = Ok(());
                for (i, url) in urls.iter().enumerate() {
                    // Whether the next URL goes to the same site: its payment can be prepared
                    // while this one is in flight.
                    let next_same_site =
                        origins[i].is_some() && origins.get(i + 1) == Some(&origins[i]);
                    let body = self
                        .fetch(&mut run, url, next_same_site)
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
                // What is left of the run's receipts is stored at its end (also when it
                // failed: they are the payee's latest account of the channel).
                let flushed = match run.payer.as_mut() {
                    Some(payer) => payer.flush().await,
                    None => Ok(()),
                };
                fetched?;
                flushed?;
            }
            Command::Channels => {
                let mut wallet = self.unlock().await?;
                self.check_spent(&mut wallet).await?;
                println!(
                    "{:<32} {:<10} {:>12} {:>12} {:>10} {:>12} {:<8} channel",
                    "site", "state", "value", "paid", "credit", "expiry", "settle"
                );

                for record in wallet.channels().await? {
                    let view = ChannelView::from(&record);
                    // No settlement in a block SETTLEMENT_DUE_BLOCKS before the expiry: the
                    // user is told; `trickle refund` takes the channel back once it is valid.
                    let flag = if view.settlement_overdue {
                        "overdue"
                    } else {
                        "-"
                    };
                    println!(
                        "{:<32} {:<10} {:>12} {:>12} {:>10} {:>12} {flag:<8} {}",
                        view.site,
                        view.state,
                        view.value_sat,
                        view.paid_sat,
                        view.credit_sat,
                        view.expiry,
                        view.contract_txid.as_deref().unwrap_or("-"),
                    );
                }
            }
            Command::Close { site } => {
                let mut wallet = self.unlock().await?;
                let record = wallet.channel_to_close(site).await?;
                let origin = &record.site;
                let tip = Wallet::<Scoped<Disk>>::tip(&self.esplora).await?;
                let settlement = wallet
                    .close_channel(&self.http, origin, &record.payee_key, tip)
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
                            "the payee did not close the channel with {origin}: {e}\n\
                             The channel stays open and nothing more was paid: it still pays the site, \
                             `trickle close {origin}` asks again, and after {expiry} `trickle refund` \
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
            Command::Duties => {
                let mut wallet = self.unlock().await?;
                let depth = trickle_wallet::final_confirmations(self.cli.network);
                let done = wallet.run_duties(&self.esplora, &self.http, depth).await?;
                let done = DutiesView::from(done);
                for DutyEvent { site, detail } in done.closed {
                    eprintln!("the channel with {site} was closed by {detail}");
                }
                for DutyEvent { site, detail } in done.settled {
                    eprintln!("the channel with {site} is settled by {detail}");
                }
                for DutyEvent { site, detail } in done.failed {
                    eprintln!("the channel with {site}: {detail}");
                }
                eprintln!("{} refund(s) broadcast", done.refunds.len());
                for txid in done.refunds {
                    println!("{txid}");
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

    /// GET `url`, following redirects on its own origin (a payment is made for one URL, and
    /// goes to no other site).
    async fn fetch(
        &self,
        run: &mut FetchRun,
        url: &str,
        next_same_site: bool,
    ) -> Result<Vec<u8>, Error> {
        let mut url = reqwest::Url::parse(url)?;
        for _ in 0..=MAX_REDIRECTS {
            let response = self.fetch_one(run, url.as_str(), next_same_site).await?;
            let status = response.status();
            if !status.is_redirection() {
                let body = response.bytes().await?.to_vec();
                if !status.is_success() {
                    return Err(format!("{url}: HTTP {status}").into());
                }
                return Ok(body);
            }
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .ok_or_else(|| format!("{url}: HTTP {status} without a Location"))?
                .to_str()?;
            let next = url.join(location)?;
            if next.origin() != url.origin() {
                return Err(
                    format!("{url} redirects to another site ({next}); not following it").into(),
                );
            }
            url = next;
        }
        Err(format!("{url}: more than {MAX_REDIRECTS} redirects").into())
    }

    /// GET `url` (no redirects followed): with the site's pre-armed payment once the wallet
    /// is unlocked; a 402 the payer pays is sent again with its payment.
    async fn fetch_one(
        &self,
        run: &mut FetchRun,
        url: &str,
        next_same_site: bool,
    ) -> Result<reqwest::Response, Error> {
        let mut sent = Sent::Nothing;
        let mut header: Option<PaymentHeader> = None;
        if let (Some(payer), Some(tip)) = (run.payer.as_mut(), run.tip) {
            header = payer.armed(url, tip, now()).await?;
            if header.is_some() {
                sent = Sent::Armed;
            }
        }
        loop {
            let mut request = self.http.0.get(url);
            if let Some(header) = &header {
                request = request.header(header.name, &header.value);
            }
            let prepare = sent != Sent::Nothing && next_same_site;
            let response = send(run, url, request, prepare).await?;
            let status = response.status().as_u16();
            if status == 402 && run.payer.is_none() {
                self.start_paying(run).await?;
            }
            let (Some(payer), Some(tip)) = (run.payer.as_mut(), run.tip) else {
                return Ok(response);
            };
            let text = |name| {
                response
                    .headers()
                    .get(name)
                    .map(|v| v.to_str().map_err(|e| e.to_string()))
                    .transpose()
            };
            let (required, receipt) = (text(PAYMENT_REQUIRED)?, text(PAYMENT_RESPONSE)?);
            // Challenges may come in several WWW-Authenticate fields: one list.
            let challenges = response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .map(|v| v.to_str())
                .collect::<Result<Vec<_>, _>>()?
                .join(", ");
            let mpp_receipt = text(PAYMENT_RECEIPT)?;
            let policy = OfferPolicy::default();
            let (fee_rate, fee_source) = run.fee_rate.ok_or("the run's fee rate is unknown")?;
            // The opening's preview, on stderr, says where its rate came from.
            let progress = |step: Progress<'_>| match step {
                Progress::Opening { .. } => eprintln!("{step} ({fee_source}) ..."),
                Progress::Completing { .. } => eprintln!("{step}"),
            };
            let ctx = PayContext {
                transport: &self.http,
                chain: &self.esplora,
                tip,
                fee_rate,
                network: self.cli.network,
                policy: &policy,
                now: now(),
                progress: &progress,
            };
            let next = payer
                .on_response(
                    &ctx,
                    url,
                    (sent, header.as_ref()),
                    PayerResponse {
                        status,
                        payment_required: required,
                        payment_response: receipt,
                        www_authenticate: Some(challenges.as_str()).filter(|c| !c.is_empty()),
                        payment_receipt: mpp_receipt,
                    },
                )
                .await
                .map_err(|e| with_hint(&e))?;
            match next {
                Next::Done => return Ok(response),
                Next::Pay {
                    header: paid,
                    sent: now_sent,
                } => {
                    if now_sent == Sent::PaidAgain {
                        eprintln!("paying {url} again (the payee had less credit)");
                    } else {
                        eprintln!("paying for {url}");
                    }
                    header = Some(paid);
                    sent = now_sent;
                }
            }
        }
    }

    /// The first 402 of the run: unlocks the wallet, reads the chain tip, syncs the wallet (an
    /// opening funds a contract from its coins) and settles the contracts' fee rate.
    async fn start_paying(&self, run: &mut FetchRun) -> Result<(), Error> {
        let caps = run.caps.take().ok_or("the run's caps are gone")?;
        let mut wallet = self.unlock().await?;
        eprintln!("syncing with {} ...", self.cli.esplora);
        wallet.sync(&self.esplora, now()).await?;
        run.tip = Some(Wallet::<Scoped<Disk>>::tip(&self.esplora).await?);
        run.fee_rate = Some(self.fee_rate().await?);
        run.payer = Some(Payer::new(wallet, caps).in_framing(run.framing));
        Ok(())
    }
}

/// Redirects followed per URL.
const MAX_REDIRECTS: usize = 10;

/// `e`, with the flag that would change the decision, for the refusals a run's caps make.
fn with_hint(e: &PayError) -> Error {
    let hint = match e {
        PayError::Offer(OfferError::OverMaxPrice { .. }) => "; raise --max-price to pay it",
        PayError::NotApproved(_) | PayError::Offer(OfferError::ChannelTooSmall { .. }) => {
            "; raise --budget to pay it"
        }
        _ => "",
    };
    format!("{e}{hint}").into()
}

/// Sends `request` for `url`; with `prepare_next`, the payer prepares (signs and stores) the
/// payment of the next requests to the site meanwhile, so that the next request need not wait
/// for a signature or a disk write. The prepared payment is stored before this returns.
async fn send(
    run: &mut FetchRun,
    url: &str,
    request: reqwest::RequestBuilder,
    prepare_next: bool,
) -> Result<reqwest::Response, Error> {
    match (prepare_next, run.payer.as_mut(), run.tip) {
        (true, Some(payer), Some(tip)) => {
            let prepare = payer.prepare(url, tip, now());
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

/// What one `trickle fetch` run keeps between its URLs: the framing it pays in, its caps until
/// the first 402, then the payer (the unlocked wallet and the caps), the chain tip, and a
/// contract's fee rate with where it came from.
struct FetchRun {
    framing: Framing,
    caps: Option<RunCaps>,
    payer: Option<Payer<Scoped<Disk>, RunCaps>>,
    tip: Option<trickle_channel::ChainTip>,
    fee_rate: Option<(FeeRate, &'static str)>,
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
            // Redirects are followed by `fetch`, on the site's origin only, each a request of
            // its own: never with a payment made for another URL, never to another site.
            http: Http(
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()?,
            ),
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
