//! The `trickle-regtest` binary: first line gives the URL, SIGTERM flushes
//! the chain so that `--datadir` keeps it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Running {
    child: Child,
    url: String,
}

fn spawn(datadir: &std::path::Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trickle-regtest"))
        .args(["--port", "0", "--datadir"])
        .arg(datadir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let url = line
        .trim()
        .strip_prefix("trickle-regtest listening on ")
        .expect("first line names the URL")
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    Running { child, url }
}

/// Sends SIGTERM and waits (bounded) for a clean exit.
fn terminate(mut running: Running) {
    let status = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    for _ in 0..100 {
        if let Some(status) = running.child.try_wait().expect("wait") {
            assert!(status.success(), "clean exit: {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = running.child.kill();
    panic!("binary did not stop within 5 s of SIGTERM");
}

async fn tip_height(url: &str) -> String {
    reqwest::get(format!("{url}/blocks/tip/height"))
        .await
        .expect("request")
        .text()
        .await
        .expect("body")
}

#[tokio::test]
async fn binary_prints_url_and_keeps_datadir_across_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let node = spawn(dir.path());
    assert_eq!(tip_height(&node.url).await, "101");
    let mined = reqwest::Client::new()
        .post(format!("{}/regtest/mine", node.url))
        .body(r#"{"blocks": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(mined.status().as_u16(), 200);
    terminate(node);

    let node = spawn(dir.path());
    assert_eq!(tip_height(&node.url).await, "106");
    terminate(node);
}
