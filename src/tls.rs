//! TLS on oxcd's listeners, the way etcd sets it up (etcd:
//! `client/pkg/transport/listener.go` `ServerConfig`, `listener_tls.go`):
//!
//! - the certificate and key are read again when they change on disk, so a
//!   rotated certificate is served to new connections without a restart
//!   (etcd re-reads them on every handshake; a stat of both files is
//!   checked instead, with the same outcome);
//! - the trusted CA bundle is read once; giving it (or
//!   `--client-cert-auth`) makes client certificates mandatory;
//! - an allowed CN or hostname list is checked on the client certificate;
//! - a CRL is read again for every connection and refuses a presented
//!   certificate whose serial it lists (serial only, DER, as etcd 3.6);
//! - a handshake has 10 seconds; each runs in its own task;
//! - ALPN offers `h2` and `http/1.1`, so gRPC and etcd's HTTP endpoints
//!   share one port, and clients that offer only HTTP/1.1 connect.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::Stream;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme, SupportedCipherSuite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::config::tls::{TlsInfo, TlsSettings, TlsVersion};

/// How long a TLS handshake may take (etcd: `tlsHandshakeTimeout`).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// rustls's ring provider with the TLS 1.2 suites `--cipher-suites` allows.
fn provider(settings: &TlsSettings) -> CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    if !settings.cipher_suites.is_empty() {
        p.cipher_suites.retain(|s| match s {
            SupportedCipherSuite::Tls13(_) => true,
            SupportedCipherSuite::Tls12(_) => {
                let name = format!("{:?}", s.suite());
                settings.cipher_suites.iter().any(|n| *n == name)
            }
        });
    }
    p
}

fn versions(settings: &TlsSettings) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let lo = settings.min_version.unwrap_or(TlsVersion::Tls12);
    let hi = settings.max_version.unwrap_or(TlsVersion::Tls13);
    [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| *v >= lo && *v <= hi)
    .map(|(_, v)| v)
    .collect()
}

/// A file's identity, modification time and length, to notice a
/// replacement.
fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.modified().ok()?, m.len()))
}

type Stamp = (u64, SystemTime, u64);

/// Reads a certificate chain and its key (PEM), checking they match.
fn load_certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("open {}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err("tls: failed to find any PEM data in certificate input".into());
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "tls: failed to find any PEM data in key input".to_string()
        }
        e => format!("open {}: {e}", key.display()),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => "tls: private key does not match public key".into(),
        e => format!("tls: {e}"),
    })
}

/// The server certificate, read again when either file changes.
#[derive(Debug)]
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    cached: Mutex<Option<(Stamps, Arc<CertifiedKey>)>>,
}

type Stamps = (Option<Stamp>, Option<Stamp>);

impl ReloadingCert {
    fn current(&self) -> Result<Arc<CertifiedKey>, String> {
        let now = (stamp(&self.cert), stamp(&self.key));
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, ck)) = cached.as_ref()
            && *s == now
            && now.0.is_some()
        {
            return Ok(ck.clone());
        }
        let ck = Arc::new(load_certified_key(&self.cert, &self.key, &self.provider)?);
        *cached = Some((now, ck.clone()));
        Ok(ck)
    }
}

impl ReloadingCert {
    fn new(cert: &str, key: &str, provider: Arc<CryptoProvider>) -> ReloadingCert {
        ReloadingCert {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
            provider,
            cached: Mutex::new(None),
        }
    }

    fn resolved(&self) -> Option<Arc<CertifiedKey>> {
        match self.current() {
            Ok(ck) => Some(ck),
            Err(e) => {
                // A bad file fails new handshakes only.
                tracing::warn!(cert_file = %self.cert.display(), error = %e, "failed to load the TLS certificate");
                None
            }
        }
    }
}

impl rustls::client::ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.resolved()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.resolved()
    }
}

/// Go's `Certificate.VerifyHostname` for one name: an IP against the IP
/// SANs, a DNS name against the DNS SANs (`*.` matching one label).
fn matches_hostname(cert: &x509_parser::certificate::X509Certificate<'_>, host: &str) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let ip: Option<std::net::IpAddr> = host.trim_matches(['[', ']']).parse().ok();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    san.value.general_names.iter().any(|n| match (n, ip) {
        (GeneralName::IPAddress(b), Some(ip)) => match ip {
            std::net::IpAddr::V4(v4) => *b == v4.octets(),
            std::net::IpAddr::V6(v6) => *b == v6.octets(),
        },
        (GeneralName::DNSName(d), None) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            match d.strip_prefix("*.") {
                Some(suffix) => host
                    .split_once('.')
                    .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
                None => d == host,
            }
        }
        _ => false,
    })
}

/// The common name of a certificate's subject.
pub fn common_name(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

/// etcd's allowed CN / hostname check on a verified certificate (the same
/// check on both sides of a connection).
fn check_allowed(
    end_entity: &CertificateDer<'_>,
    allowed_cns: &[String],
    allowed_hostnames: &[String],
) -> Result<(), rustls::Error> {
    if allowed_cns.is_empty() && allowed_hostnames.is_empty() {
        return Ok(());
    }
    let refused = || {
        tracing::warn!("client certificate authentication failed");
        rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)
    };
    let (_, cert) = x509_parser::parse_x509_certificate(end_entity).map_err(|_| refused())?;
    let ok = if !allowed_cns.is_empty() {
        common_name(&cert).is_some_and(|cn| allowed_cns.contains(&cn))
    } else {
        allowed_hostnames.iter().any(|h| matches_hostname(&cert, h))
    };
    if ok { Ok(()) } else { Err(refused()) }
}

/// Server certificate verification when dialing a peer: the CA chain and
/// the URL's host (rustls's webpki verifier), then the allowed lists.
#[derive(Debug)]
struct PeerServerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    allowed_cns: Vec<String>,
    allowed_hostnames: Vec<String>,
}

impl rustls::client::danger::ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let v = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        check_allowed(end_entity, &self.allowed_cns, &self.allowed_hostnames)?;
        Ok(v)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The CA bundle of `file`.
fn roots(file: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(file).map_err(|e| format!("open {file}: {e}"))?;
    for ca in cas {
        let ca = ca.map_err(|e| format!("{file}: {e}"))?;
        roots.add(ca).map_err(|e| format!("{file}: {e}"))?;
    }
    Ok(roots)
}

/// The rustls client configuration for dialing other members: their
/// certificates checked against `--peer-trusted-ca-file`, the URL's host
/// and the allowed lists; this member's certificate (re-read when
/// replaced) presented.
pub fn client_config(
    info: &TlsInfo,
    settings: &TlsSettings,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(provider(settings));
    let roots = Arc::new(roots(&info.trusted_ca_file)?);
    let inner =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| format!("{}: {e}", info.trusted_ca_file))?;
    let verifier = PeerServerVerifier {
        inner,
        allowed_cns: info.allowed_cns.clone(),
        allowed_hostnames: info.allowed_hostnames.clone(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(settings))
        .map_err(|e| format!("tls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let (cert, key) = info.dial_identity();
    let mut cfg = if cert.is_empty() {
        builder.with_no_client_auth()
    } else {
        let identity = ReloadingCert::new(cert, key, provider);
        identity.current()?;
        builder.with_client_cert_resolver(Arc::new(identity))
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// Client certificate verification: the CA chain (rustls's webpki
/// verifier), then etcd's allowed CN / hostname lists.
#[derive(Debug)]
struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed_cns: Vec<String>,
    allowed_hostnames: Vec<String>,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_allowed(end_entity, &self.allowed_cns, &self.allowed_hostnames)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The rustls server configuration for one side's [`TlsInfo`]. Reads the
/// certificate, key and CA now, so that bad files fail the start.
pub fn server_config(
    info: &TlsInfo,
    settings: &TlsSettings,
) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(provider(settings));
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(settings))
        .map_err(|e| format!("tls: {e}"))?;
    let builder = if info.requires_client_cert() {
        if info.trusted_ca_file.is_empty() {
            // Go verifies against the system's roots then; oxcd does not
            // load them.
            return Err(
                "--client-cert-auth needs --trusted-ca-file in oxcd (verifying client certificates against the system's roots is not supported)".into(),
            );
        }
        let roots = roots(&info.trusted_ca_file)?;
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("{}: {e}", info.trusted_ca_file))?;
        builder.with_client_cert_verifier(Arc::new(ClientVerifier {
            inner,
            allowed_cns: info.allowed_cns.clone(),
            allowed_hostnames: info.allowed_hostnames.clone(),
        }))
    } else {
        builder.with_no_client_auth()
    };
    let resolver = ReloadingCert::new(&info.cert_file, &info.key_file, provider);
    resolver.current()?;
    let mut cfg = builder.with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A presented certificate the CRL lists (etcd: `checkCRL`): the CRL file
/// is read and parsed for every connection; only serials are compared.
fn check_crl(crl_file: &Path, certs: &[CertificateDer<'_>]) -> Result<(), String> {
    let der = std::fs::read(crl_file).map_err(|e| format!("open {}: {e}", crl_file.display()))?;
    let (_, crl) = x509_parser::parse_x509_crl(&der).map_err(|e| format!("x509: {e}"))?;
    for c in certs {
        let (_, cert) = x509_parser::parse_x509_certificate(c).map_err(|e| format!("x509: {e}"))?;
        if crl
            .iter_revoked_certificates()
            .any(|r| r.raw_serial() == cert.raw_serial())
        {
            return Err(format!(
                "transport: certificate serial {:x} revoked",
                cert.serial
            ));
        }
    }
    Ok(())
}

/// Accepts TLS connections for one side.
pub struct Acceptor {
    tls: tokio_rustls::TlsAcceptor,
    crl: Option<PathBuf>,
    /// Check a client certificate's SANs against the remote address (the
    /// peer port, etcd's `checkSAN`).
    san_check: bool,
}

impl Acceptor {
    /// The client port's.
    pub fn new(info: &TlsInfo, settings: &TlsSettings) -> Result<Acceptor, String> {
        let cfg = server_config(info, settings)?;
        Ok(Acceptor {
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
            crl: (!info.crl_file.is_empty()).then(|| PathBuf::from(&info.crl_file)),
            san_check: false,
        })
    }

    /// The peer port's: as the client port's, with the SAN check unless
    /// `--peer-skip-client-san-verification`.
    pub fn for_peers(info: &TlsInfo, settings: &TlsSettings) -> Result<Acceptor, String> {
        let mut a = Acceptor::new(info, settings)?;
        a.san_check = !info.skip_client_san_verification;
        Ok(a)
    }

    /// The handshake (at most [`HANDSHAKE_TIMEOUT`]), then the CRL and the
    /// SAN check.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let remote = tcp.peer_addr()?;
        let s = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.tls.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "tls: handshake timed out"))??;
        if let Some(certs) = s.get_ref().1.peer_certificates() {
            if let Some(crl) = &self.crl {
                check_crl(crl, certs).map_err(io::Error::other)?;
            }
            if self.san_check
                && let Some(leaf) = certs.first()
            {
                check_san(leaf, remote.ip())
                    .await
                    .map_err(io::Error::other)?;
            }
        }
        Ok(s)
    }
}

/// etcd's `checkSAN`: a client certificate with IP or DNS SANs must name
/// the address it connects from, by an IP SAN or a DNS SAN that resolves
/// to it (a certificate without SANs passes).
async fn check_san(leaf: &CertificateDer<'_>, remote: std::net::IpAddr) -> Result<(), String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("x509: {e}"))?;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Ok(());
    };
    let mut ips = Vec::new();
    let mut dns = Vec::new();
    for n in &san.value.general_names {
        match n {
            GeneralName::IPAddress(b) => ips.push(b.to_vec()),
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            _ => {}
        }
    }
    if ips.is_empty() && dns.is_empty() {
        return Ok(());
    }
    let remote = match remote {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(remote, std::net::IpAddr::V4),
        v4 => v4,
    };
    let remote_bytes = match remote {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    if ips.contains(&remote_bytes) {
        return Ok(());
    }
    for d in &dns {
        if d.starts_with("*.") {
            continue;
        }
        if let Ok(addrs) = tokio::net::lookup_host((d.as_str(), 0)).await
            && addrs.into_iter().any(|a| a.ip() == remote)
        {
            return Ok(());
        }
    }
    Err(format!(
        "tls: {:?} does not match any of DNSNames {dns:?}",
        remote.to_string()
    ))
}

/// The TLS connections accepted on `listener`, each handshake in a task
/// of its own; a connection that fails it is logged and closed. Ends
/// accepting when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    acceptor: Arc<Acceptor>,
) -> impl Stream<Item = io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            match accepted {
                Ok((tcp, remote)) => {
                    let _ = tcp.set_nodelay(true);
                    let (acceptor, tx) = (acceptor.clone(), tx.clone());
                    tokio::spawn(async move {
                        match acceptor.accept(tcp).await {
                            Ok(s) => {
                                let _ = tx.send(Ok(s)).await;
                            }
                            Err(e) => tracing::warn!(
                                remote_addr = %remote,
                                error = %e,
                                "rejected connection"
                            ),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
