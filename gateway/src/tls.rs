//! TLS on the public listener (rustls, with ring): a PEM certificate chain and key,
//! HTTP/2 or HTTP/1.1 by ALPN, and optionally client certificates verified against a CA
//! — the certificate's subject common name is then the caller's principal. The
//! certificate, key and CA are read again on SIGHUP and whenever one of the files
//! changes; a reload that fails keeps serving the previous ones (and says why in the
//! log). New connections get the new certificate; open ones keep theirs.

use crate::config::TlsConfig;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use parking_lot::{Mutex, RwLock};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// Longest a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const ACCEPT_QUEUE: usize = 256;

/// The TLS state of a listener: its current server config, reloadable.
pub struct Tls {
    config: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The common name of the client certificate it presented (verified against
    /// `client_ca_file`), if any.
    pub certificate_principal: Option<String>,
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("reading {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn server_config(c: &TlsConfig) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&c.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&c.key_file)
        .map_err(|e| format!("reading the private key {}: {e}", c.key_file.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match &c.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots.add(cert).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if c.require_client_cert { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("{}: {e}", ca.display()))?)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} and {}: {e}", c.cert_file.display(), c.key_file.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Tls {
    /// Reads the certificate, key and CA of `config`; an error names the file.
    pub fn load(config: &TlsConfig) -> Result<Arc<Self>, String> {
        let current = server_config(config)?;
        let tls =
            Self { config: config.clone(), current: RwLock::new(Arc::new(current)), stamps: Mutex::new(Vec::new()) };
        *tls.stamps.lock() = tls.files().iter().map(|p| stamp(p)).collect();
        Ok(Arc::new(tls))
    }

    fn files(&self) -> Vec<PathBuf> {
        let c = &self.config;
        [Some(c.cert_file.clone()), Some(c.key_file.clone()), c.client_ca_file.clone()].into_iter().flatten().collect()
    }

    /// Reads the files again and serves them from the next connection on; on an error
    /// the previous ones stay.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = server_config(&self.config)?;
        *self.current.write() = Arc::new(fresh);
        *self.stamps.lock() = self.files().iter().map(|p| stamp(p)).collect();
        Ok(())
    }

    fn changed(&self) -> bool {
        let now: Vec<_> = self.files().iter().map(|p| stamp(p)).collect();
        *self.stamps.lock() != now
    }

    /// Reloads on SIGHUP and when a file changes (checked every
    /// `reload_check_interval_ms`), until the listener is dropped.
    fn spawn_reloader(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let tls = Arc::downgrade(self);
        let every = Duration::from_millis(self.config.reload_check_interval_ms.max(100));
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let signalled = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let signalled = std::future::pending::<()>();
                let why = tokio::select! {
                    () = signalled => "SIGHUP",
                    () = tokio::time::sleep(every) => "a file changed",
                };
                let Some(tls) = tls.upgrade() else { return };
                if why == "a file changed" && !tls.changed() {
                    continue;
                }
                match tls.reload() {
                    Ok(()) => tracing::info!(reason = why, "TLS certificate reloaded"),
                    Err(e) => {
                        tracing::error!(reason = why, error = %e, "TLS reload failed; serving the previous certificate")
                    }
                }
            }
        })
    }
}

/// A listener whose connections are TLS: handshakes run concurrently (bounded by
/// [`HANDSHAKE_TIMEOUT`]), so a slow client does not hold up the others.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The common name of a DER certificate's subject.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
    Some(cn)
}

impl TlsListener {
    pub fn new(tcp: TcpListener, tls: Arc<Tls>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let reloader = tls.spawn_reloader();
        let acceptor = tokio::spawn(async move {
            loop {
                let (stream, addr) = match tcp.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, as axum does.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.current.read().clone());
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            let certificate_principal =
                                s.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| common_name(c));
                            let _ = tx.send((s, Peer { addr, certificate_principal })).await;
                        }
                        Ok(Err(e)) => tracing::debug!(peer = %addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(peer = %addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { rx, local, tasks: vec![acceptor, reloader] })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop only ends with the listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer { addr: self.local, certificate_principal: None })
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}
