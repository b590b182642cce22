//! What a raw peer reads and checks: a stream of numbered text messages, and the end of a
//! closing handshake.

use sonar_core::testing::FrameBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

use super::{PROMPT, read_frame};

/// Messages a streaming writer sends in the tests.
pub const STREAM: usize = 400;

/// The text message number `i` of a stream: about 1 KB, numbered.
pub fn text_payload(i: usize) -> String {
    format!("m{i:05}{}", "x".repeat(1000))
}

/// Reads frames until one with first byte `b0` comes; returns its payload. The Text frames
/// before it must be the stream's messages in order from `next_text`, which counts them.
pub async fn read_until(s: &mut DuplexStream, b0: u8, next_text: &mut usize) -> Vec<u8> {
    loop {
        let (got, payload) = read_frame(s).await;
        if got == b0 {
            return payload;
        }
        assert_eq!(got, 0x81, "unexpected frame {got:#04x}");
        assert_eq!(payload, text_payload(*next_text).as_bytes());
        *next_text += 1;
    }
}

/// Reads the rest of a stream of [`STREAM`] text messages, from message `next` on.
pub async fn drain_texts(s: &mut DuplexStream, mut next: usize) {
    let drain = async {
        while next < STREAM {
            let (b0, payload) = read_frame(s).await;
            assert_eq!(b0, 0x81);
            assert_eq!(payload, text_payload(next).as_bytes());
            next += 1;
        }
    };
    timeout(PROMPT, drain).await.expect("the stream is written");
}

/// The peer's side of a closing handshake we start with 1000: it reads our Close, answers it,
/// ends the transport, and sees ours end.
pub async fn expect_close_1000(peer: &mut DuplexStream) {
    let (b0, payload) = timeout(PROMPT, read_frame(peer))
        .await
        .expect("a Close comes");
    assert_eq!((b0, payload.as_slice()), (0x88, &1000u16.to_be_bytes()[..]));
    peer.write_all(&FrameBuilder::close(1000, b"").build())
        .await
        .unwrap();
    peer.shutdown().await.unwrap();
    expect_eof(peer, "transport closed after the handshake").await;
}

/// The transport ends (within [`PROMPT`]) with nothing more on it; `what` names the moment.
pub async fn expect_eof(peer: &mut DuplexStream, what: &str) {
    let mut rest = Vec::new();
    let n = timeout(PROMPT, peer.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("{what}: the transport is still open"))
        .unwrap();
    assert_eq!(n, 0, "{what}: {n} more bytes");
}
