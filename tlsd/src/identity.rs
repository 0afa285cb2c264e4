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
use zeroize::Zeroizing;

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
///
/// The file gets every session's secrets, so tlsd writes only a plain file
/// of its own: not through a symbolic link (another user could point one
/// at a file of tlsd's, or plant one where the log will be), not a FIFO or
/// device, not a file someone else owns or may write.
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
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let refuse = |why: String| file_err(path, format!("key log refused: {why}"));
        // O_NONBLOCK: opening a FIFO for writing would wait for a reader.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => refuse("it is a symbolic link".into()),
                // A FIFO without a reader, or a device.
                Some(libc::ENXIO) => refuse("it is not a regular file".into()),
                _ => file_err(path, e),
            })?;
        let meta = file.metadata().map_err(|e| file_err(path, e))?;
        if !meta.file_type().is_file() {
            return Err(refuse("it is not a regular file".into()));
        }
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(refuse(format!(
                "it belongs to uid {}, not to tlsd's uid {me}",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(refuse(format!(
                "others may write it (mode {:o}); chmod go-w it",
                meta.mode() & 0o7777
            )));
        }
        // Back to blocking writes, now that it is known to be a file.
        // SAFETY: fcntl on a descriptor we own, with plain integer flags.
        unsafe {
            let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
        Ok(KeyLogFile {
            file: Mutex::new(file),
        })
    }
}

/// `label client_random secret`, hex, into a buffer sized once (no copy
/// of the secret is left behind by a reallocation) and wiped when dropped.
fn keylog_line(label: &str, client_random: &[u8], secret: &[u8]) -> Zeroizing<Vec<u8>> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut line = Zeroizing::new(Vec::with_capacity(
        label.len() + 2 * (client_random.len() + secret.len()) + 3,
    ));
    line.extend_from_slice(label.as_bytes());
    for part in [client_random, secret] {
        line.push(b' ');
        for b in part {
            line.push(HEX[(b >> 4) as usize]);
            line.push(HEX[(b & 15) as usize]);
        }
    }
    line.push(b'\n');
    line
}

impl KeyLog for KeyLogFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let line = keylog_line(label, client_random, secret);
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.write_all(&line) {
            tracing::warn!(%e, "key log write failed");
        }
    }

    fn will_log(&self, _label: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tlsd-keylog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn refused(path: &Path) -> String {
        match KeyLogFile::open(path) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_key_log_is_a_plain_private_file_or_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("open");
        // Created 0600, and written in NSS form.
        let log = dir.join("keys.log");
        let k = KeyLogFile::open(&log).unwrap();
        k.log("CLIENT_RANDOM", &[0xab, 0x01], &[0xff, 0x10, 0x00]);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "CLIENT_RANDOM ab01 ff1000\n"
        );
        let mode = std::fs::metadata(&log).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // A symbolic link, even to a file of our own: refused, and the
        // target untouched.
        let target = dir.join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let link = dir.join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(refused(&link).contains("symbolic link"));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");

        // Writable by others.
        let open = dir.join("open.log");
        std::fs::write(&open, "").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(refused(&open).contains("others may write"));

        // A FIFO: refused at once, not waited on.
        let fifo = dir.join("fifo.log");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(refused(&fifo).contains("not a regular file"));

        // Someone else's file (needs root to make one).
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let theirs = dir.join("theirs.log");
            std::fs::write(&theirs, "").unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            assert!(refused(&theirs).contains("belongs to uid 65534"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
