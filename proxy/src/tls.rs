//! HTTPS for viewers (`[tls]`): pingora's OpenSSL listeners with HTTP/2 by ALPN beside
//! HTTP/1.1, the Mozilla "intermediate" profile (TLS 1.2 and 1.3, AEAD ciphers only), and
//! several certificates chosen by SNI. The certificates live with the rest of the config (the
//! reload module's tenancy), so a SIGHUP swaps them: handshakes after it use the new ones,
//! connections already open keep theirs.

use async_trait::async_trait;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{NameType, SslVersion};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;
use std::collections::HashMap;
use std::path::Path;

pub use crate::config::tls::{CertConfig, TlsConfig};

/// A certificate ready for handshakes.
struct Loaded {
    leaf: X509,
    chain: Vec<X509>,
    key: PKey<Private>,
}

/// The certificates of a config, by the names they answer for.
pub struct CertStore {
    certs: Vec<Loaded>,
    exact: HashMap<String, usize>,
    /// `example.com` for `*.example.com`.
    wildcard: HashMap<String, usize>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("certs", &self.certs.len())
            .field("names", &self.exact.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TlsConfig {
    /// Checks the section and loads its certificates; errors name the field.
    pub fn load(&self, base: &Path) -> Result<CertStore, (String, String)> {
        if self.listen.is_empty() {
            return Err(("tls.listen".into(), "needs at least one address".into()));
        }
        for (i, l) in self.listen.iter().enumerate() {
            l.parse::<std::net::SocketAddr>().map_err(|e| {
                (
                    format!("tls.listen[{i}]"),
                    format!("{l:?} is not an IP:port address: {e}"),
                )
            })?;
        }
        if !matches!(self.min_version.as_str(), "1.2" | "1.3") {
            return Err((
                "tls.min_version".into(),
                format!("{:?}: \"1.2\" or \"1.3\"", self.min_version),
            ));
        }
        if self.certificates.is_empty() {
            return Err(("tls.certificates".into(), "needs at least one".into()));
        }
        let mut store = CertStore {
            certs: Vec::new(),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for (i, c) in self.certificates.iter().enumerate() {
            let at = |f: &str| format!("tls.certificates[{i}].{f}");
            let (loaded, own_names) = match (&c.cert, &c.key, c.self_signed.is_empty()) {
                (Some(cert), Some(key), true) => {
                    load_files(&base.join(cert), &base.join(key)).map_err(|(f, m)| (at(f), m))?
                }
                (None, None, false) => {
                    let loaded = self_signed(&c.self_signed).map_err(|m| (at("self_signed"), m))?;
                    (loaded, c.self_signed.clone())
                }
                _ => {
                    return Err((
                        at("cert"),
                        "give cert and key (PEM files), or self_signed names".into(),
                    ))
                }
            };
            let names = if c.names.is_empty() {
                own_names
            } else {
                c.names.clone()
            };
            if names.is_empty() && i > 0 {
                return Err((at("names"), "the certificate names no host".into()));
            }
            let k = store.certs.len();
            store.certs.push(loaded);
            for n in names {
                let n = n.to_ascii_lowercase();
                match n.strip_prefix("*.") {
                    Some(domain) => store.wildcard.entry(domain.to_string()).or_insert(k),
                    None => store.exact.entry(n).or_insert(k),
                };
            }
        }
        Ok(store)
    }

    /// pingora listener settings: the intermediate profile, the minimum version, ALPN, and the
    /// SNI callback reading the current config's certificates.
    pub fn settings(&self, current: CurrentCerts) -> Result<TlsSettings, String> {
        let mut s = TlsSettings::with_callbacks(Box::new(SniCertificates { current }))
            .map_err(|e| e.to_string())?;
        let min = if self.min_version == "1.3" {
            SslVersion::TLS1_3
        } else {
            SslVersion::TLS1_2
        };
        s.set_min_proto_version(Some(min))
            .map_err(|e| format!("minimum TLS version: {e}"))?;
        if self.http2 {
            s.enable_h2();
        }
        Ok(s)
    }
}

impl CertStore {
    /// The certificate for an SNI name: exact, then `*.` one label up, then the default.
    fn pick(&self, sni: Option<&str>) -> &Loaded {
        let k = sni.map(str::to_ascii_lowercase).and_then(|n| {
            self.exact.get(&n).copied().or_else(|| {
                let (_, parent) = n.split_once('.')?;
                self.wildcard.get(parent).copied()
            })
        });
        &self.certs[k.unwrap_or(0)]
    }
}

fn load_files(cert: &Path, key: &Path) -> Result<(Loaded, Vec<String>), (&'static str, String)> {
    let pem = std::fs::read(cert).map_err(|e| ("cert", format!("{}: {e}", cert.display())))?;
    let mut chain = X509::stack_from_pem(&pem).map_err(|e| {
        (
            "cert",
            format!("{}: not a PEM certificate: {e}", cert.display()),
        )
    })?;
    if chain.is_empty() {
        return Err(("cert", format!("{}: no certificate in it", cert.display())));
    }
    let leaf = chain.remove(0);
    let pem = std::fs::read(key).map_err(|e| ("key", format!("{}: {e}", key.display())))?;
    let key_pem = PKey::private_key_from_pem(&pem).map_err(|e| {
        (
            "key",
            format!("{}: not a PEM private key: {e}", key.display()),
        )
    })?;
    let matches = leaf
        .public_key()
        .map(|p| p.public_eq(&key_pem))
        .unwrap_or(false);
    if !matches {
        return Err((
            "key",
            format!("{} is not the key of {}", key.display(), cert.display()),
        ));
    }
    let names = names_of(&leaf);
    Ok((
        Loaded {
            leaf,
            chain,
            key: key_pem,
        },
        names,
    ))
}

/// DNS and IP names of a certificate: its subjectAltName, else its common name.
fn names_of(cert: &X509) -> Vec<String> {
    let mut names: Vec<String> = cert
        .subject_alt_names()
        .map(|sans| {
            sans.iter()
                .filter_map(|n| {
                    n.dnsname().map(str::to_string).or_else(|| {
                        n.ipaddress()
                            .and_then(|b| match b.len() {
                                4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
                                16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
                                _ => None,
                            })
                            .map(|ip| ip.to_string())
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            cert.subject_name()
                .entries_by_nid(Nid::COMMONNAME)
                .filter_map(|e| e.data().to_string().ok()),
        );
    }
    names
}

/// A self-signed P-256 certificate for `names` (DNS names or IP addresses), valid 30 days.
fn self_signed(names: &[String]) -> Result<Loaded, String> {
    let e = |e: openssl::error::ErrorStack| e.to_string();
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(e)?;
    let key = PKey::from_ec_key(EcKey::generate(&group).map_err(e)?).map_err(e)?;
    let mut name = X509NameBuilder::new().map_err(e)?;
    name.append_entry_by_nid(Nid::COMMONNAME, &names[0])
        .map_err(e)?;
    let name = name.build();
    let mut b = X509::builder().map_err(e)?;
    b.set_version(2).map_err(e)?;
    let mut serial = BigNum::new().map_err(e)?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false).map_err(e)?;
    let serial = serial.to_asn1_integer().map_err(e)?;
    b.set_serial_number(&serial).map_err(e)?;
    b.set_subject_name(&name).map_err(e)?;
    b.set_issuer_name(&name).map_err(e)?;
    b.set_pubkey(&key).map_err(e)?;
    let (from, until) = (
        Asn1Time::days_from_now(0).map_err(e)?,
        Asn1Time::days_from_now(30).map_err(e)?,
    );
    b.set_not_before(&from).map_err(e)?;
    b.set_not_after(&until).map_err(e)?;
    let mut san = SubjectAlternativeName::new();
    for n in names {
        if n.parse::<std::net::IpAddr>().is_ok() {
            san.ip(n);
        } else {
            san.dns(n);
        }
    }
    let san = san.build(&b.x509v3_context(None, None)).map_err(e)?;
    b.append_extension(san).map_err(e)?;
    b.append_extension(BasicConstraints::new().build().map_err(e)?)
        .map_err(e)?;
    b.sign(&key, MessageDigest::sha256()).map_err(e)?;
    Ok(Loaded {
        leaf: b.build(),
        chain: Vec::new(),
        key,
    })
}

/// Writes a self-signed certificate and key for `names` as PEM files (`manifold tls
/// self-signed`).
pub fn write_self_signed(names: &[String], cert: &Path, key: &Path) -> Result<(), String> {
    if names.is_empty() {
        return Err("give at least one name".into());
    }
    let c = self_signed(names)?;
    let cert_pem = c.leaf.to_pem().map_err(|e| e.to_string())?;
    let key_pem = c
        .key
        .private_key_to_pem_pkcs8()
        .map_err(|e| e.to_string())?;
    std::fs::write(cert, cert_pem).map_err(|e| format!("{}: {e}", cert.display()))?;
    std::fs::write(key, key_pem).map_err(|e| format!("{}: {e}", key.display()))?;
    Ok(())
}

/// The certificates of the config current at the moment of asking.
pub type CurrentCerts = std::sync::Arc<dyn Fn() -> Option<std::sync::Arc<CertStore>> + Send + Sync>;

/// Chooses the certificate during the handshake, from the config current at that moment.
struct SniCertificates {
    current: CurrentCerts,
}

#[async_trait]
impl TlsAccept for SniCertificates {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let Some(store) = (self.current)() else {
            return;
        };
        let sni = ssl.servername(NameType::HOST_NAME).map(str::to_string);
        let c = store.pick(sni.as_deref());
        use pingora_core::tls::ext;
        let set = ext::ssl_use_certificate(ssl, &c.leaf)
            .and_then(|()| ext::ssl_use_private_key(ssl, &c.key))
            .and_then(|()| {
                c.chain
                    .iter()
                    .try_for_each(|x| ext::ssl_add_chain_cert(ssl, x))
            });
        if let Err(e) = set {
            tracing::warn!(sni = ?sni, error = %e, "TLS handshake: cannot use the certificate");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(certs: Vec<CertConfig>) -> CertStore {
        TlsConfig {
            listen: vec!["127.0.0.1:0".into()],
            http2: true,
            min_version: "1.2".into(),
            certificates: certs,
        }
        .load(Path::new("."))
        .unwrap()
    }

    fn cn(l: &Loaded) -> String {
        names_of(&l.leaf)[0].clone()
    }

    fn made(names: &[&str]) -> CertConfig {
        CertConfig {
            cert: None,
            key: None,
            names: Vec::new(),
            self_signed: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_default() {
        let s = store(vec![
            made(&["default.example", "127.0.0.1"]),
            made(&["live.acme.tv"]),
            made(&["*.beta.tv"]),
        ]);
        assert_eq!(cn(s.pick(Some("LIVE.acme.tv"))), "live.acme.tv");
        assert_eq!(cn(s.pick(Some("cdn.beta.tv"))), "*.beta.tv");
        assert_eq!(cn(s.pick(Some("a.cdn.beta.tv"))), "default.example");
        assert_eq!(cn(s.pick(None)), "default.example");
        assert_eq!(
            names_of(&s.pick(None).leaf),
            ["default.example", "127.0.0.1"]
        );
    }

    #[test]
    fn files_are_checked_and_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        write_self_signed(&["a.example".into()], &c, &k).unwrap();
        let (other_c, other_k) = (dir.path().join("o.pem"), dir.path().join("ok.pem"));
        write_self_signed(&["b.example".into()], &other_c, &other_k).unwrap();
        let cfg = |cert: &Path, key: &Path| TlsConfig {
            listen: vec!["127.0.0.1:0".into()],
            http2: true,
            min_version: "1.2".into(),
            certificates: vec![CertConfig {
                cert: Some(cert.into()),
                key: Some(key.into()),
                names: vec![],
                self_signed: vec![],
            }],
        };
        let s = cfg(&c, &k).load(Path::new("/")).unwrap();
        assert_eq!(cn(s.pick(Some("a.example"))), "a.example");
        let err = |t: TlsConfig| t.load(Path::new("/")).unwrap_err().0;
        assert_eq!(err(cfg(&c, &other_k)), "tls.certificates[0].key");
        assert_eq!(err(cfg(&k, &k)), "tls.certificates[0].cert");
        assert_eq!(
            err(cfg(&dir.path().join("nope.pem"), &k)),
            "tls.certificates[0].cert"
        );
        let mut bad = cfg(&c, &k);
        bad.min_version = "1.0".into();
        assert_eq!(err(bad), "tls.min_version");
        let mut none = cfg(&c, &k);
        none.certificates[0].self_signed = vec!["x".into()];
        assert_eq!(err(none), "tls.certificates[0].cert");
    }
}
