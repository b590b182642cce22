//! permessage-deflate through the async layer: negotiated by default in both roles, off when
//! either side turns it off, counted in `Stats`, and an inflated message over the limit fails
//! with 1009 as on the wire.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use sonar_async::{CloseCode, Config, DeflateConfig, Message};
use tokio::time::timeout;

mod support;
use support::{compressible, recv_error, recv_message};

const LIMIT: Duration = Duration::from_secs(300);

#[tokio::test(start_paused = true)]
async fn deflate_is_negotiated_by_default_and_compresses_both_ways() {
    let (mut client, mut server) =
        support::pair(Config::default(), Config::default(), 1 << 16).await;
    let text = compressible(64 * 1024);
    client.send(text.clone()).await.unwrap();
    let got = recv_message(&mut server).await;
    assert_eq!(got.as_text(), Some(text.as_str()));
    server.send(got).await.unwrap();
    let echoed = recv_message(&mut client).await;
    assert_eq!(echoed.as_text(), Some(text.as_str()));

    let sent = client.stats().deflate.expect("negotiated");
    assert_eq!(sent.messages_compressed, 1);
    assert_eq!(sent.bytes_before_compression, text.len() as u64);
    assert!(
        sent.bytes_compressed * 10 < sent.bytes_before_compression,
        "{sent:?}"
    );
    assert_eq!(sent.messages_inflated, 1);
    assert_eq!(sent.bytes_inflated, text.len() as u64);
    let stats = client.stats();
    assert!(stats.bytes_out < 64 * 1024 / 10, "on the wire: {stats:?}");
    client.close(CloseCode::NORMAL, "").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn either_side_turning_deflate_off_means_no_compression() {
    let off = Config::default().with_deflate(DeflateConfig::disabled());
    for (client_cfg, server_cfg) in [
        (off.clone(), Config::default()),
        (Config::default(), off.clone()),
    ] {
        let (mut client, mut server) = support::pair(client_cfg, server_cfg, 1 << 16).await;
        let text = compressible(4096);
        client.send(text.clone()).await.unwrap();
        let got = recv_message(&mut server).await;
        assert_eq!(got.as_text(), Some(text.as_str()));
        assert!(client.stats().deflate.is_none() && server.stats().deflate.is_none());
        assert!(server.stats().bytes_in >= 4096);
        client.close(CloseCode::NORMAL, "").await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn an_inflated_message_over_the_limit_fails_with_1009() {
    let server_cfg = Config::default().with_max_message_size(64 * 1024);
    let (mut client, mut server) = support::pair(Config::default(), server_cfg, 1 << 16).await;
    // 1 MiB of zeros deflates to about 10 KB on the wire (level 1), far under the limit.
    client
        .send(Message::binary(vec![0u8; 1 << 20]))
        .await
        .unwrap();
    assert!(client.stats().bytes_out < 16 * 1024, "{:?}", client.stats());
    let err = recv_error(&mut server).await;
    assert_eq!(err.close_code(), Some(CloseCode::TOO_BIG), "{err:?}");
    // The client hears the server's Close 1009.
    let end = timeout(LIMIT, client.recv()).await.unwrap();
    assert!(end.is_none(), "{end:?}");
    let status = client.close_status().unwrap();
    assert_eq!((status.code, status.by_peer), (CloseCode::TOO_BIG, true));
}
