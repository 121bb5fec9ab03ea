//! The channel endpoint over HTTP: open (v1, v2), pay, status, resume, close, and refusals
//! with the status codes of docs/protocol.md section 3.
#![allow(clippy::unwrap_used)] // tests may panic on what cannot happen

mod common;

use std::sync::Arc;

use bitcoin::Amount;
use common::{Client, Server};
use trickle_channel::auth::ChannelRequest;
use trickle_channel::{ClientVersion, Close, ErrorCode, Version, WireMessage};
use trickle_payee::store::MemoryStore;

fn error_code(answer: &common::Answer) -> ErrorCode {
    match answer.messages.as_slice() {
        [WireMessage::Error(e)] => e.code,
        other => panic!("expected one ERROR, got {other:?}"),
    }
}

async fn open_pay_close(version: Version) {
    let server = Server::start(Arc::new(MemoryStore::new())).await;
    let mut client = Client::open(&server.endpoint(), version, 60).await;
    let txid = client.txid();
    assert_eq!(
        client.session,
        txid.to_string(),
        "the session is the contract txid"
    );
    assert_eq!(
        server.chain.broadcast_txids(),
        vec![txid],
        "contract broadcast on open"
    );

    let update = client.sign(Amount::from_sat(250));
    let answer = client
        .post(
            &format!("/session/{txid}"),
            &WireMessage::UpdatePayment(update),
        )
        .await;
    assert_eq!(answer.status, 200);
    assert!(
        matches!(answer.messages.as_slice(), [WireMessage::PaymentAck(a)] if a.amount_paid == Amount::from_sat(1_250))
    );

    let status: serde_json::Value = common::session_status(&server, txid).await;
    assert_eq!(status["state"], "ready");
    assert_eq!(status["paid"], "1250");
    assert_eq!(status["credit"], "1250");
    assert_eq!(status["channelValue"], "100000");

    // Resume by contract txid.
    let hello = WireMessage::ClientVersion(ClientVersion {
        major: version.major(),
        minor: 0,
        time_window_blocks: 0,
        previous_contract: Some(txid),
    });
    let answer = client.post("/open", &hello).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.session.as_deref(), Some(txid.to_string().as_str()));
    assert!(
        matches!(answer.messages.as_slice(), [WireMessage::ServerVersion(_), WireMessage::ChannelOpen(o)] if o.amount_paid == Amount::from_sat(1_250))
    );

    let close = WireMessage::Close(Close { settlement: None });
    let answer = client.post(&format!("/session/{txid}"), &close).await;
    assert_eq!(answer.status, 200);
    let [WireMessage::Close(Close {
        settlement: Some(settlement),
    })] = answer.messages.as_slice()
    else {
        panic!("CLOSE with the settlement: {answer:?}")
    };
    assert!(server
        .chain
        .broadcast_txids()
        .contains(&settlement.compute_txid()));
    assert_eq!(settlement.input[0].previous_output.txid, txid);

    // Closed for payments; status says closing.
    let update = client.sign(Amount::from_sat(10));
    let answer = client
        .post(
            &format!("/session/{txid}"),
            &WireMessage::UpdatePayment(update),
        )
        .await;
    assert_eq!(
        (answer.status, error_code(&answer)),
        (422, ErrorCode::ChannelClosed)
    );
    let status: serde_json::Value = common::session_status(&server, txid).await;
    assert_eq!(status["state"], "closing");
}

#[tokio::test]
async fn v2_channel_opens_pays_and_closes() {
    open_pay_close(Version::V2).await;
}

#[tokio::test]
async fn v1_channel_opens_pays_and_closes() {
    open_pay_close(Version::V1).await;
}

#[tokio::test]
async fn refusals_have_their_status_codes() {
    let server = Server::start(Arc::new(MemoryStore::new())).await;
    let mut client = Client::open(&server.endpoint(), Version::V2, 61).await;
    let txid = client.txid();

    // 400: malformed body and malformed message.
    let a = client.post_raw("/open", b"not json".to_vec()).await;
    assert_eq!((a.status, error_code(&a)), (400, ErrorCode::SyntaxError));
    let a = client
        .post_raw("/open", br#"{"message":"AQ"}"#.to_vec())
        .await;
    assert_eq!((a.status, error_code(&a)), (400, ErrorCode::SyntaxError));

    // 404: unknown session, bad session id, unknown txid status.
    let close = WireMessage::Close(Close { settlement: None });
    let a = client.post("/session/nosuchsession", &close).await;
    assert_eq!((a.status, error_code(&a)), (404, ErrorCode::UnknownChannel));
    let a = client.post("/session/bad%20id", &close).await;
    assert_eq!((a.status, error_code(&a)), (404, ErrorCode::UnknownChannel));
    let resp = reqwest::get(format!("{}/session/{}", server.endpoint(), "00".repeat(32)))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // 409: a message the state does not accept.
    let a = client.post("/open", &close).await;
    assert_eq!(
        (a.status, error_code(&a)),
        (409, ErrorCode::UnexpectedMessage)
    );
    let hello = WireMessage::ClientVersion(ClientVersion {
        major: 2,
        minor: 0,
        time_window_blocks: 144,
        previous_contract: None,
    });
    let a = client.post(&format!("/session/{txid}"), &hello).await;
    assert_eq!(
        (a.status, error_code(&a)),
        (409, ErrorCode::UnexpectedMessage)
    );

    // 422: a decreasing payment, a bad signature, an unknown version.
    let first = client.sign(Amount::from_sat(100));
    let second = client.sign(Amount::from_sat(100));
    let a = client
        .post(
            &format!("/session/{txid}"),
            &WireMessage::UpdatePayment(second),
        )
        .await;
    assert_eq!(a.status, 200);
    let a = client
        .post(
            &format!("/session/{txid}"),
            &WireMessage::UpdatePayment(first.clone()),
        )
        .await;
    assert_eq!(
        (a.status, error_code(&a)),
        (422, ErrorCode::PaymentDecreased)
    );
    let mut forged = client.sign(Amount::from_sat(100));
    forged.client_change -= Amount::from_sat(1);
    let a = client
        .post(
            &format!("/session/{txid}"),
            &WireMessage::UpdatePayment(forged),
        )
        .await;
    assert_eq!((a.status, error_code(&a)), (422, ErrorCode::BadSignature));
    let hello = WireMessage::ClientVersion(ClientVersion {
        major: 7,
        minor: 0,
        time_window_blocks: 144,
        previous_contract: None,
    });
    let a = client.post("/open", &hello).await;
    assert_eq!(
        (a.status, error_code(&a)),
        (422, ErrorCode::NoAcceptableVersion)
    );

    // 413: a body above 1 MiB.
    let big = vec![b' '; trickle_payee::MAX_BODY + 1];
    let a = client.post_raw("/open", big).await;
    assert_eq!(a.status, 413);

    // Nothing refused moved the channel.
    let status: serde_json::Value = common::session_status(&server, txid).await;
    assert_eq!(status["paid"], "1200");
}

#[tokio::test]
async fn a_contract_the_network_refuses_opens_no_channel() {
    let server = Server::start(Arc::new(MemoryStore::new())).await;
    server
        .chain
        .reject
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let answer = Client::try_open(
        &server.endpoint(),
        Version::V2,
        common::TIP,
        &common::Coin::made_up(62),
    )
    .await
    .err()
    .expect("the open is refused");
    assert_eq!(
        (answer.status, error_code(&answer)),
        (422, ErrorCode::BadTransaction)
    );
    assert!(server.payee.store().channels().await.unwrap().is_empty());
}

/// Request bodies carrying `message` for `txid` without the client's authorisation: none, a
/// stranger's (also returned, for other requests), and a malformed one.
fn without_the_client_key(
    message: &str,
    request: ChannelRequest,
    txid: &bitcoin::Txid,
) -> ([serde_json::Value; 3], String) {
    let stranger = trickle_channel::auth::authorize(request, txid, &common::key(99));
    let bodies = [
        serde_json::json!({ "message": message }),
        serde_json::json!({ "message": message, "authorization": stranger }),
        serde_json::json!({ "message": message, "authorization": "00" }),
    ];
    (bodies, stranger)
}

/// Security review M2: a contract txid is public, but only the channel's client closes the
/// channel or reads its totals.
#[tokio::test]
async fn close_needs_the_client_key() {
    let server = Server::start(Arc::new(MemoryStore::new())).await;
    let client = Client::open(&server.endpoint(), Version::V2, 61).await;
    let txid = client.txid();
    let url = format!("{}/session/{txid}", server.endpoint());
    let close = WireMessage::Close(Close { settlement: None }).to_base64url();
    let (bodies, stranger) = without_the_client_key(&close, ChannelRequest::Close, &txid);
    let http = reqwest::Client::new();
    for body in bodies {
        let answer = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 403, "{body}");
    }
    // The status, without the client's authorisation, tells nothing.
    for query in ["", "?authorization=", &format!("?authorization={stranger}")] {
        let answer = http.get(format!("{url}{query}")).send().await.unwrap();
        assert_eq!(answer.status(), 403, "{query}");
        assert!(!answer.text().await.unwrap().contains("paid"));
    }
    let status = common::session_status(&server, txid).await;
    assert_eq!(status["state"], "ready", "still open");
    assert!(
        server.chain.broadcast_txids().iter().all(|t| *t == txid),
        "no settlement broadcast"
    );
    // The client itself closes it.
    let answer = client
        .post(
            &format!("/session/{txid}"),
            &WireMessage::Close(Close { settlement: None }),
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        common::session_status(&server, txid).await["state"],
        "closing"
    );
}

/// M2: the resume answer tells the channel's paid total; only the client may have it.
#[tokio::test]
async fn resume_needs_the_client_key() {
    let server = Server::start(Arc::new(MemoryStore::new())).await;
    let mut client = Client::open(&server.endpoint(), Version::V2, 62).await;
    let txid = client.txid();
    let before = common::session_status(&server, txid).await;
    let step = client.payer.resume().unwrap();
    let hello = step.send[0].to_base64url();
    let (bodies, _) = without_the_client_key(&hello, ChannelRequest::Resume, &txid);
    let http = reqwest::Client::new();
    for body in bodies {
        let answer = http
            .post(format!("{}/open", server.endpoint()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 403, "{body}");
        let text = answer.text().await.unwrap();
        assert!(!text.contains(&txid.to_string()), "{text}");
        let messages: serde_json::Value = serde_json::from_str(&text).unwrap();
        for m in messages["messages"].as_array().unwrap() {
            let msg = WireMessage::from_base64url(m.as_str().unwrap()).unwrap();
            assert!(matches!(msg, WireMessage::Error(_)), "told {msg:?}");
        }
    }
    assert_eq!(
        common::session_status(&server, txid).await,
        before,
        "nothing changed"
    );
    // The client itself resumes it, and is told what it paid.
    client.payer = step.state;
    let answer = client.post("/open", &step.send[0]).await;
    assert_eq!(
        (answer.status, answer.session.clone()),
        (200, Some(txid.to_string()))
    );
    let open = answer
        .messages
        .iter()
        .find_map(|m| match m {
            WireMessage::ChannelOpen(open) => Some(open.clone()),
            _ => None,
        })
        .expect("CHANNEL_OPEN");
    assert_eq!(open.amount_paid, client.paid());
}
