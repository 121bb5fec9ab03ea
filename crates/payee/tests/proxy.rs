//! The `trickle-payee` binary: configuration errors, and a reverse proxy in front of a site,
//! following a (fake) Esplora server.
#![allow(clippy::unwrap_used)] // tests may panic on what cannot happen

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use bitcoin::Amount;
use common::{fetch, Client};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use trickle_channel::Version;
use trickle_payee::config::{Config, ConfigError};
use trickle_payee::proxy::Upstream;
use trickle_payee::store::MemoryStore;
use trickle_payee::{Price, Prices};

const GOOD: &str = r#"
listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:1"
network = "regtest"
esplora = "http://127.0.0.1:2"
database = "payee.sqlite3"
key_file = "payee.key"

[policy]
min_payment = 1000

[[price]]
path = "/articles"
sat = 10
description = "An article"
"#;

fn field_error(text: &str) -> String {
    match Config::parse(text, Path::new("/tmp")) {
        Err(e @ ConfigError::Field { .. }) | Err(e @ ConfigError::Parse(_)) => e.to_string(),
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("accepted a bad config:\n{text}"),
    }
}

#[test]
fn bad_configs_name_the_field() {
    let config = Config::parse(GOOD, Path::new("/srv")).unwrap();
    assert_eq!(config.database, Path::new("/srv/payee.sqlite3"));
    assert_eq!(
        config.prices.get("/articles/1").unwrap().amount,
        Amount::from_sat(10)
    );
    assert!(config.prices.get("/articlesX").is_none());
    // On regtest a settlement is final in its block (6 deep on the public networks).
    assert_eq!(config.final_confirmations, 1);
    let signet = Config::parse(&GOOD.replace("regtest", "signet"), Path::new("/srv")).unwrap();
    assert_eq!(signet.final_confirmations, 6);
    // One confirmation before a channel consumes more than its min_payment.
    assert_eq!(
        (config.confirmations, config.unconfirmed_credit),
        (1, Amount::from_sat(1_000))
    );

    for (from, to, field) in [
        (r#"network = "regtest""#, r#"network = "moon""#, "`network`"),
        (
            r#"listen = "127.0.0.1:0""#,
            r#"listen = "nowhere""#,
            "`listen`",
        ),
        (
            r#"upstream = "http://127.0.0.1:1""#,
            r#"upstream = "ftp://x""#,
            "`upstream`",
        ),
        (
            "min_payment = 1000",
            "min_payment = 0",
            "`policy.min_payment`",
        ),
        ("min_payment = 1000", "versions = [3]", "`policy.versions`"),
        ("sat = 10", "sat = 0", "`price[0].sat`"),
        (
            r#"path = "/articles""#,
            r#"path = "articles""#,
            "`price[0].path`",
        ),
        ("min_payment = 1000", "min_paymnet = 1000", "min_paymnet"),
        (r#"esplora = "http://127.0.0.1:2""#, "", "esplora"),
        (
            r#"key_file = "payee.key""#,
            "key_file = \"payee.key\"\nunconfirmed_credit_sat = 2000000",
            "`unconfirmed_credit_sat`",
        ),
        (
            r#"key_file = "payee.key""#,
            "key_file = \"payee.key\"\nfinal_confirmations = 0",
            "`final_confirmations`",
        ),
        (
            r#"key_file = "payee.key""#,
            "key_file = \"payee.key\"\nclose_target_blocks = 10",
            "`policy.close_margin_blocks`",
        ),
    ] {
        let text = GOOD.replace(from, to);
        let message = field_error(&text);
        assert!(message.contains(field), "{field} not named in: {message}");
    }
}

/// An Esplora server with one block and no spends, that accepts every transaction.
fn fake_esplora() -> Router {
    let hash = "00".repeat(31) + "01";
    Router::new()
        .route("/blocks/tip/hash", get(move || async move { hash }))
        .route(
            "/block/{hash}",
            get(|| async { r#"{"id":"x","height":1000,"mediantime":1700000000}"# }),
        )
        .route("/tx", post(|| async { "ok" }))
        .route(
            "/tx/{txid}/status",
            get(|| async { r#"{"confirmed":false}"# }),
        )
        .route(
            "/tx/{txid}/outspend/{vout}",
            get(|| async { r#"{"spent":false}"# }),
        )
}

fn upstream_site() -> Router {
    Router::new()
        .route("/articles/{n}", get(|| async { "upstream article" }))
        .route("/", get(|| async { "upstream home" }))
        .route(
            "/echo",
            post(|body: String| async move { format!("echo {body}") }),
        )
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn the_proxy_charges_priced_paths_and_passes_the_rest() {
    let esplora = serve(fake_esplora()).await;
    let upstream = serve(upstream_site()).await;
    let dir = tempfile::tempdir().unwrap();
    // Top-level keys go before the TOML tables.
    let config = format!(
        "operator_listen = \"127.0.0.1:0\"\n{}",
        GOOD.replace("http://127.0.0.1:1", &upstream)
            .replace("http://127.0.0.1:2", &esplora)
    );
    let (mut child, url, mut lines) = start_binary(dir.path(), &config).await;
    let second = lines.next_line().await.unwrap().expect("operator line");
    let operator = second
        .strip_prefix("trickle-payee operator on ")
        .unwrap()
        .to_owned();

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("payee.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(dir.path().join("payee.sqlite3").exists());

    let home = fetch(&format!("{url}/"), None).await;
    assert_eq!((home.status, home.body.as_str()), (200, "upstream home"));
    let echo = reqwest::Client::new()
        .post(format!("{url}/echo"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(echo.text().await.unwrap(), "echo hi");

    let article = format!("{url}/articles/1");
    let offer = fetch(&article, None).await;
    assert_eq!(offer.status, 402);
    let offer = offer.required.unwrap();
    assert_eq!(offer.resource.description, "An article");
    let endpoint = offer.accepts[0].extra.endpoint.clone();
    assert_eq!(
        endpoint,
        format!("{url}{}", trickle_payee::DEFAULT_ENDPOINT_PATH)
    );

    let mut client = Client::open(&endpoint, Version::V2, 90).await;
    let update = client.sign(Amount::from_sat(10));
    let paid = fetch(&article, Some(&client.header(&offer, Some(&update), true))).await;
    assert_eq!((paid.status, paid.body.as_str()), (200, "upstream article"));
    assert_eq!((paid.consumed(), paid.credit()), (10, 1_000));

    let status = reqwest::get(format!("{operator}/status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(status.contains(&client.txid().to_string()), "{status}");
    child.kill().await.unwrap();
}

/// `facilitator_listen` serves the x402 facilitator and the channel endpoint on a listener of
/// its own, over the proxy's payee: a channel opened there pays at the proxy, and the
/// facilitator's routes are not on the proxy's listener.
#[tokio::test]
async fn the_binary_serves_the_facilitator_on_its_own_listener() {
    let esplora = serve(fake_esplora()).await;
    let upstream = serve(upstream_site()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "facilitator_listen = \"127.0.0.1:0\"\n{}",
        GOOD.replace("http://127.0.0.1:1", &upstream)
            .replace("http://127.0.0.1:2", &esplora)
    );
    let (mut child, url, mut lines) = start_binary(dir.path(), &config).await;
    // Without the listener the binary prints nothing more: wait a bounded time.
    let second = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
        .await
        .expect("a facilitator line within 10 s")
        .unwrap()
        .expect("facilitator line");
    let facilitator = second
        .strip_prefix("trickle-payee facilitator on ")
        .unwrap_or_else(|| panic!("second line: {second}"))
        .to_owned();

    let supported = reqwest::get(format!("{facilitator}/supported"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let supported: serde_json::Value = serde_json::from_str(&supported).unwrap();
    let kind = &supported["kinds"][0];
    assert_eq!(kind["scheme"], trickle_channel::http::SCHEME);
    assert_eq!(
        kind["network"],
        trickle_channel::http::caip2(bitcoin::Network::Regtest)
    );
    assert_eq!(
        kind["extra"]["endpointPath"],
        trickle_payee::DEFAULT_ENDPOINT_PATH
    );
    // The proxy forwards what is not its own: the facilitator is not served there.
    assert_eq!(fetch(&format!("{url}/supported"), None).await.status, 404);

    let endpoint = format!("{facilitator}{}", trickle_payee::DEFAULT_ENDPOINT_PATH);
    let mut client = Client::open(&endpoint, Version::V2, 91).await;
    let article = format!("{url}/articles/1");
    let offer = fetch(&article, None).await.required.unwrap();
    assert_eq!(offer.accepts[0].pay_to.to_string(), kind["extra"]["payTo"]);
    let update = client.sign(Amount::from_sat(10));
    let paid = fetch(&article, Some(&client.header(&offer, Some(&update), true))).await;
    assert_eq!((paid.status, paid.body.as_str()), (200, "upstream article"));
    assert_eq!((paid.consumed(), paid.credit()), (10, 1_000));
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_bad_config_file_exits_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payee.toml");
    std::fs::write(&path, GOOD.replace("regtest", "moon")).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_trickle-payee"))
        .arg("--config")
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`network`"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn the_example_config_is_valid() {
    let text = include_str!("../payee.example.toml");
    let config = Config::parse(text, Path::new(".")).unwrap();
    assert_eq!(
        config.prices.get("/articles/7").unwrap().amount,
        Amount::from_sat(10)
    );
}

/// A policy under which a channel that paid only its first payment could not pay its
/// settlement's fee is refused, with the figure that would do; lowering the fee rate or saying
/// so explicitly is accepted.
#[test]
fn a_min_payment_that_cannot_pay_to_close_is_refused() {
    let small = GOOD.replace("min_payment = 1000", "min_payment = 10");
    let err = field_error(&small);
    assert!(err.contains("`policy.min_payment`"), "{err}");
    assert!(
        err.contains("10 sat cannot pay to close a channel"),
        "{err}"
    );
    let need: u64 = err
        .split("to at least ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no figure in {err}"));
    // The figure is the threshold: it is accepted, one sat less is not.
    let at = |sat: u64| GOOD.replace("min_payment = 1000", &format!("min_payment = {sat}"));
    assert!(Config::parse(&at(need), Path::new(".")).is_ok(), "{need}");
    assert!(field_error(&at(need - 1)).contains("cannot pay to close"));
    // The fee rises with the rate.
    let higher = at(need).replace("[policy]", "close_fee_rate_sat_vb = 3\n\n[policy]");
    assert!(field_error(&higher).contains("close_fee_rate_sat_vb = 3"));
    let allowed = small.replace(
        "[policy]",
        "[policy]\nallow_min_payment_below_close_cost = true",
    );
    assert!(Config::parse(&allowed, Path::new(".")).is_ok());
}

#[test]
fn the_demo_config_is_valid() {
    let text = include_str!("../../../demo/payee.toml");
    Config::parse(text, Path::new(".")).unwrap();
}

/// A site that reads paths as loosely as real servers may: it decodes every `%XX`, reads `\` as
/// `/`, ignores case, `;params`, trailing dots, empty and `.` segments, and resolves `..`. It
/// counts the requests it answered with the priced article.
fn lenient_site(served: Arc<AtomicUsize>) -> Router {
    Router::new().fallback(move |uri: axum::http::Uri| {
        let served = Arc::clone(&served);
        async move {
            let raw = uri.path().as_bytes();
            let mut decoded = Vec::new();
            let mut i = 0;
            while i < raw.len() {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match (raw[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                    (b'%', Some(b)) => {
                        decoded.push(b);
                        i += 3;
                    }
                    (b, _) => {
                        decoded.push(b);
                        i += 1;
                    }
                }
            }
            let text = String::from_utf8_lossy(&decoded)
                .to_lowercase()
                .replace('\\', "/");
            let mut segments: Vec<&str> = Vec::new();
            for segment in text.split('/') {
                let segment = segment
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim_end_matches('.');
                match segment {
                    "" => {}
                    ".." => {
                        segments.pop();
                    }
                    s => segments.push(s),
                }
            }
            if segments == ["articles", "1"] {
                served.fetch_add(1, Ordering::SeqCst);
                "the priced article".to_owned()
            } else {
                format!("not the article: /{}", segments.join("/"))
            }
        }
    })
}

/// Sends `GET {target}` as a raw request line (no client normalises it) and returns the status.
async fn raw_get(base: &str, target: &str) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split(' ').nth(1).unwrap_or_default();
    status
        .parse()
        .unwrap_or_else(|_| panic!("{target}: {answer}"))
}

/// Every way of writing a priced path that some server reads as the priced path.
const UNPRICING_TRICKS: &[&str] = &[
    "/./articles/1",
    "/articles/./1",
    "/x/../articles/1",
    "/articles/1/../1",
    "/%2e/articles/1",
    "/%2E/articles/1",
    "/free/%2e%2e/articles/1",
    "/free/.%2e/articles/1",
    "//articles/1",
    "/articles//1",
    "/articles%2f1",
    "/articles%2F1",
    "/articles%5c1",
    "/articles\\1",
    "/%61rticles/1",
    "/articles/%31",
    "/ARTICLES/1",
    "/Articles/1",
    "/articles./1",
    "/articles/1.",
    "/articles;x/1",
    "/articles%3b/1",
];

#[tokio::test]
async fn dot_segments_do_not_unprice_a_path() {
    let served = Arc::new(AtomicUsize::new(0));
    let site = serve(lenient_site(Arc::clone(&served))).await;
    let payee =
        common::start_payee(Arc::new(MemoryStore::new()), common::RecordingChain::new()).await;
    let prices = Prices::new().with("/articles", Price::sat(10));
    // The proxy in front of the lenient site, and the layer in front of the same site in-process.
    let proxied = serve(trickle_payee::proxy::app(
        &payee,
        prices.clone(),
        Upstream::new(&site).unwrap(),
    ))
    .await;
    let layered = serve(lenient_site(Arc::clone(&served)).layer(payee.layer(prices))).await;
    for base in [&proxied, &layered] {
        assert_eq!(raw_get(base, "/articles/1").await, 402);
        for target in UNPRICING_TRICKS {
            let status = raw_get(base, target).await;
            assert!(
                status == 402 || status == 400,
                "{target} via {base}: {status}"
            );
        }
        // Free paths still pass, with their query strings.
        assert_eq!(raw_get(base, "/free/page.html?x=/articles/1").await, 200);
    }
    assert_eq!(
        served.load(Ordering::SeqCst),
        0,
        "the priced article was served free"
    );
}

/// The key seed is refused while its group or others may read it, and the database (with its
/// WAL files) is created readable by its owner only, whatever the umask.
#[cfg(unix)]
#[tokio::test]
async fn key_and_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    use trickle_payee::config::{load_or_create_seed, SeedError};
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("payee.key");
    std::fs::write(&key, format!("{}\n", "07".repeat(32))).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = load_or_create_seed(&key).unwrap_err();
    assert!(matches!(refused, SeedError::Exposed(_, 0o644)), "{refused}");
    assert!(refused.to_string().contains("chmod 600"), "{refused}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(load_or_create_seed(&key).unwrap(), [7; 32]);

    let database = dir.path().join("payee.sqlite3");
    let store = trickle_payee::store::SqliteStore::open(&database)
        .await
        .unwrap();
    drop(store);
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.starts_with("payee.sqlite3") {
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
            files += 1;
        }
    }
    assert!(files >= 1);
}

/// The lines the binary prints on its standard output.
type Output = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// Starts the binary on `config` (written to `dir`); the running child, its URL and the rest
/// of what it prints.
async fn start_binary(dir: &Path, config: &str) -> (tokio::process::Child, String, Output) {
    let path = dir.join("payee.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_trickle-payee"))
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().expect("a first line");
    let url = first
        .strip_prefix("trickle-payee listening on ")
        .unwrap_or_else(|| panic!("first line: {first}"))
        .to_owned();
    (child, url, lines)
}

/// A client that sends half a request line and nothing more is disconnected once the
/// configured header timeout has passed.
#[tokio::test]
async fn a_half_sent_request_is_cut_off_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let esplora = serve(fake_esplora()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "header_timeout_secs = 1\n{}",
        GOOD.replace("http://127.0.0.1:2", &esplora)
    );
    let (mut child, url, _) = start_binary(dir.path(), &config).await;
    let mut tcp = tokio::net::TcpStream::connect(url.strip_prefix("http://").unwrap())
        .await
        .unwrap();
    tcp.write_all(b"GET /articles/1 HT").await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut answer),
    )
    .await;
    assert!(closed.is_ok(), "the connection is still open after 5 s");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "closed before the timeout: {:?}",
        started.elapsed()
    );
    child.kill().await.unwrap();
}

/// With thousands of unpaid `POST /open` in flight, a paid GET still answers promptly: opens
/// beyond `max_concurrent_opens` are answered 503 at once instead of queueing at the store
/// ahead of the payment's write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_opens_does_not_stall_paid_requests() {
    let dir = tempfile::tempdir().unwrap();
    let store = trickle_payee::store::SqliteStore::open(dir.path().join("payee.sqlite3"))
        .await
        .unwrap();
    let server = common::Server::start(std::sync::Arc::new(store)).await;
    let client = Client::open(&server.endpoint(), Version::V2, 91).await;
    let url = format!("{}/articles/1", server.url);
    let hello = trickle_channel::PayerState::start(common::payer_config(Version::V2));
    let body = serde_json::json!({ "message": hello.send[0].to_base64url() }).to_string();
    let http = reqwest::Client::new();
    let opens: Vec<_> = (0..5_000)
        .map(|_| {
            let request = http
                .post(format!("{}/open", server.endpoint()))
                .header("content-type", "application/json")
                .body(body.clone());
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let offer = fetch(&url, None).await.required.unwrap();
    let started = std::time::Instant::now();
    let paid = fetch(&url, Some(&client.header(&offer, None, true))).await;
    let took = started.elapsed();
    assert_eq!((paid.status, paid.consumed()), (200, 10));
    let mut refused = 0;
    for open in opens {
        if open.await.unwrap().ok() == Some(503) {
            refused += 1;
        }
    }
    eprintln!("paid GET in {took:?}; {refused} opens refused");
    assert!(refused > 0, "the flood was turned away");
    // Generous: the machine running the tests may be busy accepting the flood's connections.
    assert!(
        took < std::time::Duration::from_secs(2),
        "paid GET took {took:?}"
    );
}
