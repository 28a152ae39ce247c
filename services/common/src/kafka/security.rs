//! How the services reach the brokers: bootstrap servers plus TLS and SASL,
//! read from the environment once and applied to every librdkafka client.
//!
//! Variables (see docs/configuration.md, "Kafka security"):
//! - `KAFKA_SECURITY_PROTOCOL`: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or
//!   `SASL_SSL`; when unset it follows from the two below.
//! - `KAFKA_TLS_DIR`: a directory laid out like a Kubernetes TLS Secret:
//!   `ca.crt` (the brokers' CA; the system roots when absent) and optionally
//!   `tls.crt` with `tls.key` (a client certificate).
//! - `KAFKA_SASL_MECHANISM` (`SCRAM-SHA-512` by default, `SCRAM-SHA-256`,
//!   `PLAIN`), `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD`.

use std::fmt;
use std::path::{Path, PathBuf};

use rdkafka::ClientConfig;

use crate::config::{Reader, Source};

/// librdkafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Plaintext,
            Self::Ssl,
            Self::SaslPlaintext,
            Self::SaslSsl,
        ]
        .into_iter()
        .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
    }

    fn from_parts(tls: bool, sasl: bool) -> Self {
        match (tls, sasl) {
            (false, false) => Self::Plaintext,
            (true, false) => Self::Ssl,
            (false, true) => Self::SaslPlaintext,
            (true, true) => Self::SaslSsl,
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// Files of `KAFKA_TLS_DIR`, checked to exist when read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    /// Client certificate and its key, always together.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// SASL credentials. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Sasl {
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

pub const SASL_MECHANISMS: [&str; 3] = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"];

/// TLS and SASL settings of every Kafka client of a service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Security {
    pub protocol: Protocol,
    pub tls: TlsFiles,
    pub sasl: Option<Sasl>,
}

impl Security {
    pub fn read<S: Source>(r: &mut Reader<S>) -> Self {
        let explicit = r.string("KAFKA_SECURITY_PROTOCOL", "");
        let tls_dir = r.string("KAFKA_TLS_DIR", "");
        let mechanism = r.string("KAFKA_SASL_MECHANISM", SASL_MECHANISMS[0]);
        let username = r.string("KAFKA_SASL_USERNAME", "");
        let password = r.string("KAFKA_SASL_PASSWORD", "");

        let protocol = if explicit.is_empty() {
            Protocol::from_parts(!tls_dir.is_empty(), !username.is_empty())
        } else {
            Protocol::parse(&explicit).unwrap_or_else(|| {
                r.invalid(
                    "KAFKA_SECURITY_PROTOCOL",
                    &explicit,
                    "expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                );
                Protocol::Plaintext
            })
        };

        let mut tls = TlsFiles::default();
        if !tls_dir.is_empty() {
            if !protocol.uses_tls() {
                r.invalid(
                    "KAFKA_TLS_DIR",
                    &tls_dir,
                    format!(
                        "set, but KAFKA_SECURITY_PROTOCOL={} does not use TLS",
                        protocol.as_str()
                    ),
                );
            }
            tls = read_tls_dir(r, Path::new(&tls_dir));
        }

        let sasl = if protocol.uses_sasl() {
            if !SASL_MECHANISMS.contains(&mechanism.as_str()) {
                r.invalid(
                    "KAFKA_SASL_MECHANISM",
                    &mechanism,
                    format!("expected one of {}", SASL_MECHANISMS.join(", ")),
                );
            }
            for (var, value) in [
                ("KAFKA_SASL_USERNAME", &username),
                ("KAFKA_SASL_PASSWORD", &password),
            ] {
                if value.is_empty() {
                    r.invalid(
                        var,
                        "",
                        format!(
                            "required with KAFKA_SECURITY_PROTOCOL={}",
                            protocol.as_str()
                        ),
                    );
                }
            }
            Some(Sasl {
                mechanism,
                username,
                password,
            })
        } else {
            if !username.is_empty() {
                r.invalid(
                    "KAFKA_SASL_USERNAME",
                    &username,
                    format!(
                        "set, but KAFKA_SECURITY_PROTOCOL={} does not use SASL",
                        protocol.as_str()
                    ),
                );
            }
            None
        };
        Self {
            protocol,
            tls,
            sasl,
        }
    }

    /// Adds the security settings to a librdkafka configuration.
    pub fn apply(&self, c: &mut ClientConfig) {
        if self.protocol == Protocol::Plaintext {
            return;
        }
        c.set("security.protocol", self.protocol.as_str());
        if self.protocol.uses_tls() {
            if let Some(ca) = &self.tls.ca {
                c.set("ssl.ca.location", ca.display().to_string());
            }
            if let Some((cert, key)) = &self.tls.client {
                c.set("ssl.certificate.location", cert.display().to_string());
                c.set("ssl.key.location", key.display().to_string());
            }
        }
        if let Some(sasl) = &self.sasl {
            c.set("sasl.mechanism", &sasl.mechanism);
            c.set("sasl.username", &sasl.username);
            c.set("sasl.password", &sasl.password);
        }
    }
}

fn read_tls_dir<S: Source>(r: &mut Reader<S>, dir: &Path) -> TlsFiles {
    let shown = dir.display().to_string();
    if !dir.is_dir() {
        r.invalid("KAFKA_TLS_DIR", &shown, "is not a readable directory");
        return TlsFiles::default();
    }
    let file = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
    let (cert, key) = (file("tls.crt"), file("tls.key"));
    let client = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            r.invalid(
                "KAFKA_TLS_DIR",
                &shown,
                "has only one of tls.crt and tls.key (a client certificate needs both)",
            );
            None
        }
    };
    TlsFiles {
        ca: file("ca.crt"),
        client,
    }
}

/// Bootstrap servers and how to authenticate to them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connection {
    pub bootstrap_servers: String,
    pub security: Security,
}

impl Connection {
    /// A client configuration with the brokers and security set.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        self.security.apply(&mut c);
        c
    }
}

/// What the plumbing accepts as "the brokers": a [`Connection`], or a bare
/// bootstrap list (plaintext), which tests and tools use.
pub trait Brokers {
    fn connection(&self) -> Connection;
}

impl Brokers for Connection {
    fn connection(&self) -> Connection {
        self.clone()
    }
}

impl Brokers for str {
    fn connection(&self) -> Connection {
        Connection {
            bootstrap_servers: self.to_owned(),
            security: Security::default(),
        }
    }
}

impl Brokers for String {
    fn connection(&self) -> Connection {
        self.as_str().connection()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Reader;

    fn read(vars: &[(&str, &str)]) -> Result<Security, String> {
        let map: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut r = Reader::new(map);
        let s = Security::read(&mut r);
        r.finish().map(|()| s).map_err(|e| e.to_string())
    }

    fn settings(s: &Security) -> Vec<(String, String)> {
        let mut c = ClientConfig::new();
        s.apply(&mut c);
        // `config_map` hides secrets; `get` gives the value librdkafka receives.
        let mut v: Vec<_> = c
            .config_map()
            .keys()
            .map(|k| (k.to_string(), c.get(k).unwrap_or_default().to_owned()))
            .collect();
        v.sort();
        v
    }

    /// A fresh directory holding `files` (removed with the test process's temp files).
    struct Dir(PathBuf);

    impl Dir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tls_dir(files: &[&str]) -> Dir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("polystream-kafka-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in files {
            std::fs::write(dir.join(f), "pem").unwrap();
        }
        Dir(dir)
    }

    #[test]
    fn nothing_set_is_plaintext_with_no_settings() {
        let s = read(&[]).unwrap();
        assert_eq!(s.protocol, Protocol::Plaintext);
        assert!(settings(&s).is_empty());
    }

    #[test]
    fn protocol_follows_tls_dir_and_username() {
        let dir = tls_dir(&["ca.crt"]);
        let d = dir.path().to_str().unwrap();
        let creds = [("KAFKA_SASL_USERNAME", "u"), ("KAFKA_SASL_PASSWORD", "p")];
        assert_eq!(
            read(&[("KAFKA_TLS_DIR", d)]).unwrap().protocol,
            Protocol::Ssl
        );
        assert_eq!(read(&creds).unwrap().protocol, Protocol::SaslPlaintext);
        let both = read(&[("KAFKA_TLS_DIR", d), creds[0], creds[1]]).unwrap();
        assert_eq!(both.protocol, Protocol::SaslSsl);
        let ca = dir.path().join("ca.crt").display().to_string();
        assert_eq!(
            settings(&both),
            vec![
                ("sasl.mechanism".into(), "SCRAM-SHA-512".into()),
                ("sasl.password".into(), "p".into()),
                ("sasl.username".into(), "u".into()),
                ("security.protocol".into(), "SASL_SSL".into()),
                ("ssl.ca.location".into(), ca),
            ]
        );
    }

    #[test]
    fn a_client_certificate_needs_both_files() {
        let dir = tls_dir(&["ca.crt", "tls.crt", "tls.key"]);
        let s = read(&[("KAFKA_TLS_DIR", dir.path().to_str().unwrap())]).unwrap();
        assert!(s.tls.client.is_some());
        assert!(
            settings(&s)
                .iter()
                .any(|(k, _)| k == "ssl.certificate.location")
        );

        let half = tls_dir(&["tls.crt"]);
        let e = read(&[("KAFKA_TLS_DIR", half.path().to_str().unwrap())]).unwrap_err();
        assert!(e.contains("KAFKA_TLS_DIR") && e.contains("tls.key"), "{e}");
    }

    #[test]
    fn bad_settings_name_their_variable_and_never_the_password() {
        let e = read(&[("KAFKA_SECURITY_PROTOCOL", "TLS")]).unwrap_err();
        assert!(e.contains("KAFKA_SECURITY_PROTOCOL"), "{e}");

        let e = read(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "GSSAPI"),
            ("KAFKA_SASL_PASSWORD", "S3CRET"),
        ])
        .unwrap_err();
        assert!(e.contains("KAFKA_SASL_MECHANISM"), "{e}");
        assert!(e.contains("KAFKA_SASL_USERNAME"), "{e}");
        assert!(!e.contains("S3CRET"), "{e}");

        let e = read(&[("KAFKA_TLS_DIR", "/nonexistent/kafka-tls")]).unwrap_err();
        assert!(e.contains("KAFKA_TLS_DIR"), "{e}");

        let e = read(&[
            ("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            ("KAFKA_SASL_USERNAME", "u"),
        ])
        .unwrap_err();
        assert!(e.contains("does not use SASL"), "{e}");

        let s = read(&[
            ("KAFKA_SASL_USERNAME", "u"),
            ("KAFKA_SASL_PASSWORD", "S3CRET"),
        ])
        .unwrap();
        assert!(!format!("{s:?}").contains("S3CRET"));
    }
}
