//! Certificates, private keys, trust roots and the key log: loaded only
//! here, from files named in tlsd's configuration, and turned into rustls
//! configurations per connection options.

use rustls::crypto::{ring as provider, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, KeyLog, RootCertStore, ServerConfig, SupportedCipherSuite};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub enum IdentityError {
    /// A file could not be read or holds no usable PEM object.
    File { path: PathBuf, what: String },
    /// rustls refused the certificate/key pair or a root.
    Rejected(String),
    /// The options name a cipher suite tlsd does not have.
    UnknownSuite(String),
    /// The options leave no version or suite to offer.
    Empty(&'static str),
    /// A server was asked for without a configured certificate and key.
    NoServerIdentity,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::File { path, what } => write!(f, "{}: {what}", path.display()),
            IdentityError::Rejected(e) => write!(f, "{e}"),
            IdentityError::UnknownSuite(s) => write!(f, "unknown cipher suite {s}"),
            IdentityError::Empty(what) => write!(f, "no {what} left to offer"),
            IdentityError::NoServerIdentity => {
                write!(f, "no server certificate and key are configured")
            }
        }
    }
}

impl std::error::Error for IdentityError {}

/// Protocol versions a connection may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// What an application may choose per connection.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub alpn: Vec<Vec<u8>>,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
    /// IANA names; empty: all.
    pub cipher_suites: Vec<String>,
}

/// The files tlsd is configured with.
#[derive(Clone, Debug, Default)]
pub struct IdentityConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// PEM bundle of trust anchors for servers we connect to.
    pub roots: Option<PathBuf>,
    /// NSS key log (debugging only; off unless configured).
    pub keylog: Option<PathBuf>,
}

/// The loaded material.
pub struct Identity {
    server_key: Option<Arc<CertifiedKey>>,
    roots: Arc<RootCertStore>,
    keylog: Option<Arc<dyn KeyLog>>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field(
                "server_certs",
                &self.server_key.as_ref().map(|k| k.cert.len()),
            )
            .field("roots", &self.roots.len())
            .field("keylog", &self.keylog.is_some())
            .finish()
    }
}

fn file_err(path: &Path, what: impl fmt::Display) -> IdentityError {
    IdentityError::File {
        path: path.to_owned(),
        what: what.to_string(),
    }
}

impl Identity {
    pub fn load(config: &IdentityConfig) -> Result<Identity, IdentityError> {
        let server_key = match (&config.cert, &config.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| file_err(cert, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| file_err(cert, e))?;
                if chain.is_empty() {
                    return Err(file_err(cert, "no CERTIFICATE in the file"));
                }
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
                // Checks that the key matches the certificate now, not at
                // the first client.
                let key = CertifiedKey::from_der(chain, key_der, &provider::default_provider())
                    .map_err(|e| IdentityError::Rejected(format!("certificate and key: {e}")))?;
                Some(Arc::new(key))
            }
            (None, None) => None,
            (Some(_), None) => return Err(IdentityError::Rejected("a cert without a key".into())),
            (None, Some(_)) => return Err(IdentityError::Rejected("a key without a cert".into())),
        };
        let mut roots = RootCertStore::empty();
        if let Some(path) = &config.roots {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_err(path, e))? {
                let cert = cert.map_err(|e| file_err(path, e))?;
                roots
                    .add(cert)
                    .map_err(|e| IdentityError::Rejected(format!("root: {e}")))?;
            }
            if roots.is_empty() {
                return Err(file_err(path, "no CERTIFICATE in the file"));
            }
        }
        let keylog = match &config.keylog {
            Some(path) => Some(Arc::new(KeyLogFile::open(path)?) as Arc<dyn KeyLog>),
            None => None,
        };
        Ok(Identity {
            server_key,
            roots: Arc::new(roots),
            keylog,
        })
    }

    pub fn has_server_identity(&self) -> bool {
        self.server_key.is_some()
    }

    pub fn client_config(&self, options: &Options) -> Result<Arc<ClientConfig>, IdentityError> {
        let (provider, versions) = provider_for(options)?;
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&versions)
            .map_err(|e| IdentityError::Rejected(e.to_string()))?
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = options.alpn.clone();
        config.enable_secret_extraction = true;
        if let Some(k) = &self.keylog {
            config.key_log = k.clone();
        }
        Ok(Arc::new(config))
    }

    /// A configuration for one accepted connection; the returned [`Sni`]
    /// holds the server name the client asks for once the handshake has
    /// seen its ClientHello (rustls's unbuffered server does not tell).
    pub fn server_config(
        &self,
        options: &Options,
    ) -> Result<(Arc<ServerConfig>, Arc<Sni>), IdentityError> {
        let key = self
            .server_key
            .clone()
            .ok_or(IdentityError::NoServerIdentity)?;
        let (provider, versions) = provider_for(options)?;
        let sni = Arc::new(Sni {
            key,
            name: Mutex::new(None),
        });
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&versions)
            .map_err(|e| IdentityError::Rejected(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(sni.clone());
        config.alpn_protocols = options.alpn.clone();
        config.enable_secret_extraction = true;
        if let Some(k) = &self.keylog {
            config.key_log = k.clone();
        }
        Ok((Arc::new(config), sni))
    }
}

/// Serves the one identity and remembers the name the client asked for.
#[derive(Debug)]
pub struct Sni {
    key: Arc<CertifiedKey>,
    name: Mutex<Option<String>>,
}

impl Sni {
    pub fn name(&self) -> Option<String> {
        self.name.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ResolvesServerCert for Sni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        *self.name.lock().unwrap_or_else(|e| e.into_inner()) =
            hello.server_name().map(str::to_owned);
        Some(self.key.clone())
    }
}

/// The suites tlsd offers: every AEAD suite of the ring provider.
pub fn all_suites() -> &'static [SupportedCipherSuite] {
    provider::ALL_CIPHER_SUITES
}

fn provider_for(
    options: &Options,
) -> Result<
    (
        CryptoProvider,
        Vec<&'static rustls::SupportedProtocolVersion>,
    ),
    IdentityError,
> {
    let min = options.min_version.unwrap_or(TlsVersion::Tls12);
    let max = options.max_version.unwrap_or(TlsVersion::Tls13);
    let mut versions = Vec::new();
    if min == TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if max == TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if versions.is_empty() {
        return Err(IdentityError::Empty("protocol version"));
    }
    let mut provider = provider::default_provider();
    if !options.cipher_suites.is_empty() {
        let mut chosen = Vec::new();
        for name in &options.cipher_suites {
            let suite = all_suites()
                .iter()
                .find(|s| s.suite().as_str() == Some(name.as_str()))
                .ok_or_else(|| IdentityError::UnknownSuite(name.clone()))?;
            chosen.push(*suite);
        }
        provider.cipher_suites = chosen;
    } else {
        provider.cipher_suites = all_suites().to_vec();
    }
    let usable = provider
        .cipher_suites
        .iter()
        .any(|s| versions.iter().any(|v| s.version().version == v.version));
    if !usable {
        return Err(IdentityError::Empty("cipher suite for these versions"));
    }
    Ok((provider, versions))
}

/// An NSS key log file (what `SSLKEYLOGFILE` writes), for tshark and
/// Wireshark. Appends; one line per secret.
struct KeyLogFile {
    file: Mutex<std::fs::File>,
}

impl fmt::Debug for KeyLogFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyLogFile")
    }
}

impl KeyLogFile {
    fn open(path: &Path) -> Result<KeyLogFile, IdentityError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| file_err(path, e))?;
        Ok(KeyLogFile {
            file: Mutex::new(file),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl KeyLog for KeyLogFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let line = format!("{label} {} {}\n", hex(client_random), hex(secret));
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.write_all(line.as_bytes()) {
            tracing::warn!(%e, "key log write failed");
        }
    }

    fn will_log(&self, _label: &str) -> bool {
        true
    }
}
