//! `wss://` through rustls, written once for every runtime (feature `rustls`).

use std::sync::{Arc, OnceLock};

use futures_io::{AsyncRead, AsyncWrite};
use futures_rustls::rustls::pki_types::ServerName;
use futures_rustls::rustls::{ClientConfig, RootCertStore};

pub use futures_rustls::rustls;
pub use futures_rustls::{TlsAcceptor, TlsConnector};

use crate::{Config, Error};

/// The client configuration used when [`Config::tls`] is `None`: the Mozilla root
/// certificates (webpki-roots), TLS 1.2 and 1.3, the ring provider.
pub fn default_client_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            Arc::new(client_config_with_roots(roots))
        })
        .clone()
}

/// A client configuration trusting exactly `roots` (for private CAs and self-signed test
/// certificates).
pub fn client_config_with_roots(roots: RootCertStore) -> ClientConfig {
    let provider = Arc::new(futures_rustls::rustls::crypto::ring::default_provider());
    // The ring provider supports the safe default versions, so this cannot fail; fall back to
    // the process default provider rather than panic if it ever did.
    match ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
        Ok(b) => b.with_root_certificates(roots).with_no_client_auth(),
        Err(_) => ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    }
}

/// Runs the TLS client handshake for `host` over `io`.
pub(crate) async fn connect<T>(
    config: &Config,
    host: &str,
    io: T,
) -> Result<futures_rustls::client::TlsStream<T>, Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let tls = config.tls.clone().unwrap_or_else(default_client_config);
    let name = ServerName::try_from(host.to_owned()).map_err(|_| Error::InvalidServerName)?;
    Ok(TlsConnector::from(tls).connect(name, io).await?)
}
