//! Transport security settings: etcd's `transport.TLSInfo` for one side
//! (client or peer) and the TLS flags that apply to every listener
//! (etcd: `client/pkg/transport/listener.go`, `server/embed/config.go`,
//! `client/pkg/tlsutil`).

/// The certificate files and checks of one side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// `--cert-file`: the server certificate (PEM), re-read on every
    /// handshake.
    pub cert_file: String,
    /// `--key-file`: its key (PEM: PKCS#1, PKCS#8 or SEC1).
    pub key_file: String,
    /// `--trusted-ca-file`: the CA bundle client certificates must chain
    /// to, read once. Setting it already requires client certificates.
    pub trusted_ca_file: String,
    /// `--client-cert-auth`: require and verify client certificates.
    pub client_cert_auth: bool,
    /// `--client-crl-file`: a DER CRL, read again for every connection;
    /// a presented certificate whose serial it lists is refused.
    pub crl_file: String,
    /// `--client-cert-allowed-hostname`: the client certificate must match
    /// one of these names.
    pub allowed_hostnames: Vec<String>,
    /// `allowed-cn` (config file only on the client side;
    /// `--peer-cert-allowed-cn` on the peer side): the certificate's CN
    /// must be one of these.
    pub allowed_cns: Vec<String>,
    /// `--peer-client-cert-file` / `--peer-client-key-file`: what this
    /// side presents when it dials (default: the cert and key files).
    pub client_cert_file: String,
    pub client_key_file: String,
    /// `--peer-skip-client-san-verification`: no check of a peer's client
    /// certificate SANs against its address.
    pub skip_client_san_verification: bool,
}

impl TlsInfo {
    /// No certificate configured (etcd: `TLSInfo.Empty`).
    pub fn is_empty(&self) -> bool {
        self.cert_file.is_empty() && self.key_file.is_empty()
    }

    /// Whether handshakes demand a client certificate (etcd: a CA file or
    /// `--client-cert-auth` makes `ClientAuth` `RequireAndVerifyClientCert`).
    pub fn requires_client_cert(&self) -> bool {
        self.client_cert_auth || !self.trusted_ca_file.is_empty()
    }

    /// The certificate and key this side presents when it dials.
    pub fn dial_identity(&self) -> (&str, &str) {
        if self.client_cert_file.is_empty() {
            (&self.cert_file, &self.key_file)
        } else {
            (&self.client_cert_file, &self.client_key_file)
        }
    }

    /// etcd's `baseConfig` checks.
    pub fn validate(&self) -> Result<(), String> {
        if self.cert_file.is_empty() != self.key_file.is_empty() {
            return Err(format!(
                "KeyFile and CertFile must both be present[key: {}, cert: {}]",
                self.key_file, self.cert_file
            ));
        }
        if self.client_cert_file.is_empty() != self.client_key_file.is_empty() {
            return Err(format!(
                "ClientKeyFile and ClientCertFile must both be present or both absent: key: {}, cert: {}]",
                self.client_key_file, self.client_cert_file
            ));
        }
        if !self.allowed_cns.is_empty() && !self.allowed_hostnames.is_empty() {
            return Err(format!(
                "AllowedCNs and AllowedHostnames are mutually exclusive (cns={:?}, hostnames={:?})",
                self.allowed_cns, self.allowed_hostnames
            ));
        }
        Ok(())
    }
}

/// A TLS protocol version as etcd's flags name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// `--tls-min-version` / `--tls-max-version`: `TLS1.2`, `TLS1.3`, or
    /// empty (the default).
    pub fn parse(s: &str) -> Result<Option<TlsVersion>, String> {
        match s {
            "" => Ok(None),
            "TLS1.2" => Ok(Some(TlsVersion::Tls12)),
            "TLS1.3" => Ok(Some(TlsVersion::Tls13)),
            other => Err(format!(
                "unexpected TLS version {other:?} (must be one of: TLS1.2, TLS1.3)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS1.2",
            TlsVersion::Tls13 => "TLS1.3",
        }
    }
}

/// A cipher suite etcd accepts, by what oxcd can do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// A TLS 1.2 suite rustls provides, by its Go name.
    Tls12(&'static str),
    /// A TLS 1.3 suite: Go does not let them be configured and ignores
    /// them in the list; so does oxcd.
    Tls13,
    /// A suite Go has and rustls does not (CBC, RC4, 3DES, RSA key
    /// exchange).
    Unsupported,
}

/// The TLS 1.2 suites rustls provides, by Go name.
pub const TLS12_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// Go's other suite names (`tls.CipherSuites()` and
/// `tls.InsecureCipherSuites()`), which etcd accepts.
const GO_ONLY_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

const TLS13_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// One `--cipher-suites` name, as etcd's `tlsutil.GetCipherSuite` reads
/// it (with its two CHACHA20 aliases).
pub fn suite(name: &str) -> Result<Suite, String> {
    let name = match name {
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        n => n,
    };
    if let Some(n) = TLS12_SUITES.iter().find(|n| **n == name) {
        return Ok(Suite::Tls12(n));
    }
    if TLS13_SUITES.contains(&name) {
        return Ok(Suite::Tls13);
    }
    if GO_ONLY_SUITES.contains(&name) {
        return Ok(Suite::Unsupported);
    }
    Err(format!("unexpected TLS cipher suite {name:?}"))
}

/// The TLS settings every listener shares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `--tls-min-version`; `None`: TLS 1.2.
    pub min_version: Option<TlsVersion>,
    /// `--tls-max-version`; `None`: TLS 1.3.
    pub max_version: Option<TlsVersion>,
    /// `--cipher-suites`: the TLS 1.2 suites allowed (Go names); empty:
    /// every suite rustls provides.
    pub cipher_suites: Vec<&'static str>,
}

impl TlsSettings {
    /// etcd's `Config.Validate` and `updateCipherSuites` checks, in their
    /// order. A suite etcd accepts but rustls cannot provide is refused:
    /// oxcd does not start with a setting it cannot honour.
    pub fn parse(min: &str, max: &str, suites: &[String]) -> Result<TlsSettings, String> {
        let min_version = TlsVersion::parse(min)?;
        let max_version = TlsVersion::parse(max)?;
        if let (Some(lo), Some(hi)) = (min_version, max_version)
            && lo > hi
        {
            return Err(format!(
                "min version ({}) is greater than max version ({})",
                lo.name(),
                hi.name()
            ));
        }
        if !suites.is_empty() && min_version == Some(TlsVersion::Tls13) {
            return Err("cipher suites cannot be configured when only TLS1.3 is enabled".into());
        }
        let mut cipher_suites = Vec::new();
        for s in suites {
            match suite(s)? {
                Suite::Tls12(n) => cipher_suites.push(n),
                Suite::Tls13 => {}
                Suite::Unsupported => {
                    return Err(format!(
                        "TLS cipher suite {s:?} is not supported by oxcd (rustls provides only these TLS 1.2 suites: {})",
                        TLS12_SUITES.join(", ")
                    ));
                }
            }
        }
        Ok(TlsSettings {
            min_version,
            max_version,
            cipher_suites,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_suites_are_checked_like_etcd() {
        assert_eq!(
            TlsSettings::parse("TLS1.1", "", &[]).unwrap_err(),
            "unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)"
        );
        assert_eq!(
            TlsSettings::parse("TLS1.3", "TLS1.2", &[]).unwrap_err(),
            "min version (TLS1.3) is greater than max version (TLS1.2)"
        );
        let one = vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string()];
        assert_eq!(
            TlsSettings::parse("TLS1.3", "", &one).unwrap_err(),
            "cipher suites cannot be configured when only TLS1.3 is enabled"
        );
        assert_eq!(
            TlsSettings::parse("", "", &["TLS_NOPE".to_string()]).unwrap_err(),
            "unexpected TLS cipher suite \"TLS_NOPE\""
        );
        let cbc = vec!["TLS_RSA_WITH_AES_128_CBC_SHA".to_string()];
        assert!(
            TlsSettings::parse("", "", &cbc)
                .unwrap_err()
                .contains("not supported by oxcd")
        );
        let s = TlsSettings::parse(
            "TLS1.2",
            "",
            &[
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305".to_string(),
                "TLS_AES_128_GCM_SHA256".to_string(),
            ],
        )
        .unwrap();
        assert_eq!(s.min_version, Some(TlsVersion::Tls12));
        assert_eq!(
            s.cipher_suites,
            ["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"]
        );
    }

    #[test]
    fn cert_and_key_come_together() {
        let info = TlsInfo {
            cert_file: "c.pem".into(),
            ..Default::default()
        };
        assert_eq!(
            info.validate().unwrap_err(),
            "KeyFile and CertFile must both be present[key: , cert: c.pem]"
        );
        let info = TlsInfo {
            trusted_ca_file: "ca.pem".into(),
            ..Default::default()
        };
        assert!(info.requires_client_cert());
        assert!(info.validate().is_ok());
    }
}
