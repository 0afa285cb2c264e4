//! TLS alerts (RFC 8446 6, RFC 5246 7.2): a plain repr of the 2-byte alert
//! message that an Alert record carries.

use core::fmt;

/// How an alert wants to be taken. TLS 1.3 ignores the level: every alert
/// but close_notify and user_canceled is fatal there (RFC 8446 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertLevel {
    Warning,
    Fatal,
}

impl AlertLevel {
    pub fn to_u8(self) -> u8 {
        match self {
            AlertLevel::Warning => 1,
            AlertLevel::Fatal => 2,
        }
    }
}

impl TryFrom<u8> for AlertLevel {
    type Error = AlertError;
    fn try_from(v: u8) -> Result<Self, AlertError> {
        match v {
            1 => Ok(AlertLevel::Warning),
            2 => Ok(AlertLevel::Fatal),
            other => Err(AlertError::BadLevel(other)),
        }
    }
}

macro_rules! descriptions {
    ($($(#[$m:meta])* $name:ident = $v:literal, $text:literal;)*) => {
        /// The RFC 8446 6 alert list, plus TLS 1.2's no_renegotiation;
        /// reserved and unassigned codes are [`AlertDescription::Unknown`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum AlertDescription {
            $($(#[$m])* $name,)*
            Unknown(u8),
        }

        impl From<u8> for AlertDescription {
            fn from(v: u8) -> Self {
                match v {
                    $($v => AlertDescription::$name,)*
                    other => AlertDescription::Unknown(other),
                }
            }
        }

        impl From<AlertDescription> for u8 {
            fn from(d: AlertDescription) -> u8 {
                match d {
                    $(AlertDescription::$name => $v,)*
                    AlertDescription::Unknown(v) => v,
                }
            }
        }

        impl fmt::Display for AlertDescription {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(AlertDescription::$name => f.write_str($text),)*
                    AlertDescription::Unknown(v) => write!(f, "unknown alert {v}"),
                }
            }
        }
    };
}

descriptions! {
    CloseNotify = 0, "close_notify";
    UnexpectedMessage = 10, "unexpected_message";
    BadRecordMac = 20, "bad_record_mac";
    RecordOverflow = 22, "record_overflow";
    HandshakeFailure = 40, "handshake_failure";
    BadCertificate = 42, "bad_certificate";
    UnsupportedCertificate = 43, "unsupported_certificate";
    CertificateRevoked = 44, "certificate_revoked";
    CertificateExpired = 45, "certificate_expired";
    CertificateUnknown = 46, "certificate_unknown";
    IllegalParameter = 47, "illegal_parameter";
    UnknownCa = 48, "unknown_ca";
    AccessDenied = 49, "access_denied";
    DecodeError = 50, "decode_error";
    DecryptError = 51, "decrypt_error";
    ProtocolVersion = 70, "protocol_version";
    InsufficientSecurity = 71, "insufficient_security";
    InternalError = 80, "internal_error";
    InappropriateFallback = 86, "inappropriate_fallback";
    UserCanceled = 90, "user_canceled";
    /// TLS 1.2 only (RFC 5246 7.2.2); reserved in TLS 1.3.
    NoRenegotiation = 100, "no_renegotiation";
    MissingExtension = 109, "missing_extension";
    UnsupportedExtension = 110, "unsupported_extension";
    UnrecognizedName = 112, "unrecognized_name";
    BadCertificateStatusResponse = 113, "bad_certificate_status_response";
    UnknownPskIdentity = 115, "unknown_psk_identity";
    CertificateRequired = 116, "certificate_required";
    NoApplicationProtocol = 120, "no_application_protocol";
}

/// Why bytes are not an alert message. Either way the peer gets decode_error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertError {
    /// An alert message is exactly 2 bytes.
    Length(usize),
    BadLevel(u8),
}

impl fmt::Display for AlertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlertError::Length(n) => write!(f, "alert message of {n} bytes (must be 2)"),
            AlertError::BadLevel(l) => write!(f, "alert with level {l} (must be 1 or 2)"),
        }
    }
}

impl std::error::Error for AlertError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alert {
    pub level: AlertLevel,
    pub description: AlertDescription,
}

impl Alert {
    pub const LEN: usize = 2;

    pub fn fatal(description: AlertDescription) -> Alert {
        Alert {
            level: AlertLevel::Fatal,
            description,
        }
    }

    /// close_notify is sent at warning level (RFC 5246 7.2.1; TLS 1.3 keeps it).
    pub fn close_notify() -> Alert {
        Alert {
            level: AlertLevel::Warning,
            description: AlertDescription::CloseNotify,
        }
    }

    /// Parses one whole alert message (the plaintext of an Alert record,
    /// which carries exactly one in every stack this talks to).
    pub fn parse(bytes: &[u8]) -> Result<Alert, AlertError> {
        let &[level, description] = bytes else {
            return Err(AlertError::Length(bytes.len()));
        };
        Ok(Alert {
            level: AlertLevel::try_from(level)?,
            description: description.into(),
        })
    }

    pub fn encode(&self) -> [u8; 2] {
        [self.level.to_u8(), self.description.into()]
    }

    /// Whether the connection ends with this alert: close_notify ends the
    /// peer's sending side; in TLS 1.3 everything but user_canceled is fatal
    /// whatever its level says, and TLS 1.2 goes by the level.
    pub fn ends_connection(&self, tls13: bool) -> bool {
        match self.description {
            AlertDescription::CloseNotify => true,
            AlertDescription::UserCanceled => false,
            _ if tls13 => true,
            _ => self.level == AlertLevel::Fatal,
        }
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            AlertLevel::Warning => "warning",
            AlertLevel::Fatal => "fatal",
        };
        write!(f, "{level} alert {}", self.description)
    }
}
