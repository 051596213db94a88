//! Accepting connections on a TLS port. Each connection's first byte tells a
//! TLS ClientHello (0x16) from a plaintext HTTP/2 preface: TLS connections
//! are handshaken with the configuration in use at that moment (a rotated
//! certificate applies to new connections; open ones keep theirs) and handed
//! to the gRPC server; plaintext ones go to a server that answers every call
//! with UNAUTHENTICATED saying TLS is required, so a client pointed at the
//! wrong scheme learns why instead of seeing a reset connection.

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_common::timing::TLS_HANDSHAKE_TIMEOUT;
use ferry_common::tls::reload::Watched;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use super::server_tls::TlsState;

/// First byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// Connections waiting for the gRPC server to take them.
const BACKLOG: usize = 128;

/// Handshaken TLS connections, for `serve_with_incoming`.
pub type TlsIncoming = ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>>;
/// Plaintext connections made to the TLS port.
pub type PlainIncoming = ReceiverStream<Result<TcpStream, std::io::Error>>;

/// Accepts on `listener` until both streams are dropped.
pub fn split(listener: TcpListener, tls: Arc<Watched<TlsState>>) -> (TlsIncoming, PlainIncoming) {
    let (tls_tx, tls_rx) = mpsc::channel(BACKLOG);
    let (plain_tx, plain_rx) = mpsc::channel(BACKLOG);
    tokio::spawn(accept_loop(listener, tls, tls_tx, plain_tx));
    (ReceiverStream::new(tls_rx), ReceiverStream::new(plain_rx))
}

type TlsSender = mpsc::Sender<Result<TlsStream<TcpStream>, std::io::Error>>;
type PlainSender = mpsc::Sender<Result<TcpStream, std::io::Error>>;

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<Watched<TlsState>>,
    tls_tx: TlsSender,
    plain_tx: PlainSender,
) {
    loop {
        let accepted = tokio::select! {
            _ = tls_tx.closed() => return,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and the like: wait a moment rather than spin
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let config = Arc::clone(&tls.get().server);
        let (tls_tx, plain_tx) = (tls_tx.clone(), plain_tx.clone());
        tokio::spawn(async move {
            let handled = tokio::time::timeout(
                TLS_HANDSHAKE_TIMEOUT,
                route(tcp, peer, config, &tls_tx, &plain_tx),
            )
            .await;
            if handled.is_err() {
                tracing::debug!(%peer, "connection dropped: no TLS handshake in time");
            }
        });
    }
}

async fn route(
    tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    tls_tx: &TlsSender,
    plain_tx: &PlainSender,
) {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(1) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(1) => {
            tracing::warn!(%peer, "plaintext connection to the TLS port refused: the client must use https://");
            let _ = plain_tx.send(Ok(tcp)).await;
            return;
        }
        _ => return,
    }
    match TlsAcceptor::from(config).accept(tcp).await {
        Ok(stream) => {
            let _ = tls_tx.send(Ok(stream)).await;
        }
        Err(e) => tracing::warn!(%peer, error = %e, "TLS handshake failed"),
    }
}
