//! `fjord certs`: a development CA and certificates signed by it, for TLS on gateways
//! (`gateway.tls`) and client certificates as principals. Not for production: the CA's
//! key sits beside its certificate.

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

/// Flags of `fjord certs`.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Where to write `ca.pem`, `ca.key` and a `NAME.pem` + `NAME.key` per certificate.
    /// An existing CA there is reused.
    #[arg(long, default_value = "certs")]
    pub dir: PathBuf,
    /// A server certificate (gateway), valid for NAME, localhost and 127.0.0.1; repeatable.
    #[arg(long = "server")]
    pub servers: Vec<String>,
    /// A client certificate whose common name is NAME (the principal); repeatable.
    #[arg(long = "client")]
    pub clients: Vec<String>,
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        anyhow::bail!("certificate name `{name}`: use 1 to 64 characters from [a-zA-Z0-9._-]");
    }
    Ok(())
}

/// Writes (or reuses) the CA and the asked-for certificates; prints what it wrote.
pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    for n in args.servers.iter().chain(&args.clients) {
        check_name(n)?;
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let (ca_pem, ca_key_pem) = (args.dir.join("ca.pem"), args.dir.join("ca.key"));
    let (ca_key, ca_cert) = if ca_pem.exists() && ca_key_pem.exists() {
        let key = KeyPair::from_pem(&std::fs::read_to_string(&ca_key_pem)?).context("reading ca.key")?;
        let params =
            CertificateParams::from_ca_cert_pem(&std::fs::read_to_string(&ca_pem)?).context("reading ca.pem")?;
        let cert = params.self_signed(&key).context("re-signing the CA")?;
        (key, cert)
    } else {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Fjord development CA");
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        std::fs::write(&ca_pem, cert.pem()).with_context(|| format!("writing {}", ca_pem.display()))?;
        write_private(&ca_key_pem, &key.serialize_pem())?;
        println!("{}", ca_pem.display());
        (key, cert)
    };
    let leaf = |name: &str, server: bool| -> anyhow::Result<()> {
        let sans = if server { vec![name.to_owned(), "localhost".into(), "127.0.0.1".into()] } else { Vec::new() };
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages =
            vec![if server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
        let pem = args.dir.join(format!("{name}.pem"));
        std::fs::write(&pem, cert.pem()).with_context(|| format!("writing {}", pem.display()))?;
        write_private(&args.dir.join(format!("{name}.key")), &key.serialize_pem())?;
        println!("{}", pem.display());
        Ok(())
    };
    for s in &args.servers {
        leaf(s, true)?;
    }
    for c in &args.clients {
        leaf(c, false)?;
    }
    Ok(())
}
