//! Connecting: a URL or Secret fields → a target; TLS per libpq's sslmode semantics.
//! Nothing here ever formats a password into a message.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::{Client, Config};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "disable" | "allow" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::Input(format!(
                    "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )));
            }
        })
    }
}

/// Where and how to connect. `Debug` is written by hand so a password can't be printed.
#[derive(Clone)]
pub struct Target {
    pub config: Config,
    pub sslmode: SslMode,
    /// PEM of the CA(s) that must have signed the server's certificate.
    pub root_cert_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl Target {
    /// `postgresql://user:pass@host:port/db?sslmode=verify-full&sslrootcert=/path/ca.pem`.
    pub fn from_url(url: &str) -> Result<Target> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut sslmode = SslMode::Prefer;
        let mut root_cert_pem = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", v)) => sslmode = v.parse()?,
                Some(("sslrootcert", path)) => {
                    root_cert_pem = Some(
                        std::fs::read(path)
                            .map_err(|e| Error::Input(format!("sslrootcert {path}: {e}")))?,
                    )
                }
                _ => rest.push(pair),
            }
        }
        let url = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        // tokio-postgres' parse errors quote no part of the string, so the password stays out.
        let config = Config::from_str(&url)
            .map_err(|e| Error::Input(format!("database URL is invalid: {e}")))?;
        Ok(Target {
            config,
            sslmode,
            root_cert_pem,
        })
    }

    /// host:port/dbname as user — for messages and pool keys; never the password.
    pub fn describe(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(s) => s.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{host}:{port}/{}",
            self.config.get_user().unwrap_or(""),
            self.config.get_dbname().unwrap_or("")
        )
    }

    /// Open one session, set up the way pgpart relies on: UTC, ISO dates, standard strings.
    pub async fn connect(&self) -> Result<Client> {
        let mut config = self.config.clone();
        config.application_name("pgpart");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let client = if self.sslmode == SslMode::Disable {
            config.ssl_mode(PgSslMode::Disable);
            let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            client
        } else {
            config.ssl_mode(if self.sslmode == SslMode::Prefer {
                PgSslMode::Prefer
            } else {
                PgSslMode::Require
            });
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config()?);
            let (client, conn) = config.connect(tls).await.map_err(|e| match self.sslmode {
                SslMode::VerifyCa | SslMode::VerifyFull => {
                    Error::Connect(format!("{e} (TLS with sslmode={:?}: is the CA in sslrootcert the one that signed the server certificate?)", self.sslmode))
                }
                _ => e.into(),
            })?;
            tokio::spawn(conn);
            client
        };
        // jit off: the catalog queries' cost estimates pass the JIT thresholds on big
        // catalogs, and compiling them took 33 of a one-table observation's 35 s.
        client
            .batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET standard_conforming_strings = on; SET IntervalStyle = 'iso_8601'; SET jit = off")
            .await?;
        Ok(client)
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Connect(format!("TLS setup: {e}")))?;
        let mut roots = RootCertStore::empty();
        match &self.root_cert_pem {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert
                        .map_err(|e| Error::Input(format!("sslrootcert is not valid PEM: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| Error::Input(format!("sslrootcert: {e}")))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let roots = Arc::new(roots);
        let config = match self.sslmode {
            SslMode::VerifyFull => builder.with_root_certificates(roots).with_no_client_auth(),
            SslMode::VerifyCa => {
                let inner =
                    rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                        .build()
                        .map_err(|e| Error::Connect(format!("TLS setup: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
                    .with_no_client_auth()
            }
            // libpq's require/prefer encrypt without verifying the server.
            _ => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth(),
        };
        Ok(config)
    }
}

/// verify-ca: the chain must lead to the CA; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// require/prefer: encryption without authentication of the server, as libpq does.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
