//! Warden's interception CA: created once on disk (0700 dir, 0600 key), loaded on every later start.
use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{crypto_provider, TlsError};

const CERT_FILE: &str = "ca.pem";
const KEY_FILE: &str = "ca.key";
const DIR_MODE: u32 = 0o700;
const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// Backdating tolerates clients whose clocks run a little behind the host's.
pub(crate) const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// Where the CA certificate lives inside `dir` (what `warden ca path` prints).
pub fn cert_path(dir: &Path) -> PathBuf {
    dir.join(CERT_FILE)
}

/// Where the CA private key lives inside `dir`.
pub fn key_path(dir: &Path) -> PathBuf {
    dir.join(KEY_FILE)
}

/// The CA that signs Warden's per-SNI leaf certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl fmt::Debug for CertificateAuthority {
    // Hand-written so the key can never end up in a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_der_len", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Loads the CA from `dir`, creating `dir` and a fresh CA on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        ensure_private_dir(dir)?;
        let cert_file = cert_path(dir);
        let key_file = key_path(dir);
        match (exists(&cert_file)?, exists(&key_file)?) {
            (true, true) => Self::load(&cert_file, &key_file),
            (false, false) => {
                let ca = Self::generate()?;
                // Key first: a crash between the two renames leaves a key without a certificate,
                // which load_or_create reports instead of silently replacing.
                write_atomically(
                    &key_file,
                    ca.issuer.key().serialize_pem().as_bytes(),
                    KEY_MODE,
                )?;
                write_atomically(&cert_file, ca.cert_pem.as_bytes(), CERT_MODE)?;
                tracing::info!(cert = %cert_file.display(), "created a new Warden interception CA");
                Ok(ca)
            }
            (true, false) => Err(TlsError::PartialCa {
                present: cert_file,
                missing: key_file,
            }),
            (false, true) => Err(TlsError::PartialCa {
                present: key_file,
                missing: cert_file,
            }),
        }
    }

    /// A CA that lives only in memory, for tests and benchmarks.
    pub fn ephemeral() -> Result<Self, TlsError> {
        Self::generate()
    }

    /// The CA certificate, PEM-encoded (what agents' trust stores need).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER-encoded (the last element of every leaf chain).
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(TlsError::GenerateCa)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, ca_common_name());
        name.push(DnType::OrganizationName, "Warden");
        params.distinguished_name = name;
        // Path length 0: this CA signs leaves only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        set_validity(&mut params, now - BACKDATE, now + CA_VALIDITY);
        let cert = params.self_signed(&key).map_err(TlsError::GenerateCa)?;
        let cert_der = cert.der().clone();
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            cert_der,
        })
    }

    fn load(cert_file: &Path, key_file: &Path) -> Result<Self, TlsError> {
        tighten_mode(key_file, KEY_MODE)?;
        let cert_pem = read_to_string(cert_file)?;
        let key_pem = read_to_string(key_file)?;
        let invalid = |path: &Path, reason: String| TlsError::InvalidCa {
            path: path.to_path_buf(),
            reason,
        };
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| invalid(cert_file, e.to_string()))?;
        // The error text of a key parser could quote key material, so it is not passed on.
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|_| invalid(key_file, "not a PEM PKCS#8 private key".into()))?;
        check_key_matches(&cert_der, &key, cert_file, key_file)?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| invalid(cert_file, e.to_string()))?;
        Ok(Self {
            issuer,
            cert_pem,
            cert_der,
        })
    }
}

/// Sets a certificate's validity window from `SystemTime`s. rcgen takes `time::OffsetDateTime`;
/// building it from rcgen's own epoch date keeps the `time` crate out of Warden's dependencies.
pub(crate) fn set_validity(
    params: &mut CertificateParams,
    not_before: SystemTime,
    not_after: SystemTime,
) {
    let since_epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    // Adding a std Duration only panics past year 9999; the spans used here end decades earlier.
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_before);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_after);
}

fn ca_common_name() -> String {
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    // A CN is at most 64 characters; the hostname is only a hint for humans reading trust stores.
    match hostname.trim() {
        "" => "Warden Interception CA".to_string(),
        host => format!("Warden Interception CA ({host})")
            .chars()
            .take(64)
            .collect(),
    }
}

fn check_key_matches(
    cert_der: &CertificateDer<'static>,
    key: &KeyPair,
    cert_file: &Path,
    key_file: &Path,
) -> Result<(), TlsError> {
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    CertifiedKey::from_der(vec![cert_der.clone()], key_der, &crypto_provider())
        .map(|_| ())
        .map_err(|_| TlsError::KeyMismatch {
            cert: cert_file.to_path_buf(),
            key: key_file.to_path_buf(),
        })
}

fn exists(path: &Path) -> Result<bool, TlsError> {
    path.try_exists().map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_to_string(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates `dir` with mode 0700 (parents with default modes), or tightens an existing one.
fn ensure_private_dir(dir: &Path) -> Result<(), TlsError> {
    let create_err = |source| TlsError::CreateDir {
        path: dir.to_path_buf(),
        source,
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(create_err)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => tighten_mode(dir, DIR_MODE),
        Err(e) => Err(create_err(e)),
    }
}

/// Removes group/other permission bits that `wanted` does not grant, warning when it had to.
fn tighten_mode(path: &Path, wanted: u32) -> Result<(), TlsError> {
    let perm_err = |source| TlsError::Permissions {
        path: path.to_path_buf(),
        source,
    };
    let mode = fs::metadata(path).map_err(perm_err)?.permissions().mode() & 0o777;
    if mode & 0o077 & !wanted == 0 {
        return Ok(());
    }
    tracing::warn!(
        path = %path.display(),
        found = %format_args!("{mode:04o}"),
        fixed = %format_args!("{wanted:04o}"),
        "CA file permissions were too open; tightened them"
    );
    fs::set_permissions(path, fs::Permissions::from_mode(wanted)).map_err(perm_err)
}

/// Writes `contents` to a temporary sibling created with `mode`, syncs it, then renames it over
/// `path`, so a reader never sees a half-written file and the key is never briefly readable.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let write_err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    // A leftover from a crashed earlier attempt would make create_new fail.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(write_err)?;
    if mode & 0o044 != 0 {
        // The umask may have removed read bits a public file (the CA cert) needs.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(write_err)?;
    }
    file.write_all(contents).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(write_err)?;
    if let Some(dir) = path.parent() {
        // Persist the rename itself; failure here only weakens crash durability.
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_ca_with_private_modes_and_reloads_the_same_cert() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested").join("ca");
        let created = CertificateAuthority::load_or_create(&dir).unwrap();
        assert_eq!(mode_of(&dir), 0o700);
        assert_eq!(mode_of(&key_path(&dir)), 0o600);
        assert_eq!(mode_of(&cert_path(&dir)), 0o644);
        assert!(created
            .cert_pem()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(fs::read_to_string(key_path(&dir))
            .unwrap()
            .contains("PRIVATE KEY"));
        assert!(!dir.join("ca.key.tmp").exists());

        let loaded = CertificateAuthority::load_or_create(&dir).unwrap();
        assert_eq!(loaded.cert_der(), created.cert_der());
        assert_eq!(loaded.cert_pem(), created.cert_pem());
    }

    #[test]
    fn tightens_loose_modes_on_load() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        CertificateAuthority::load_or_create(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(key_path(&dir), fs::Permissions::from_mode(0o644)).unwrap();
        CertificateAuthority::load_or_create(&dir).unwrap();
        assert_eq!(mode_of(&dir), 0o700);
        assert_eq!(mode_of(&key_path(&dir)), 0o600);
    }

    #[test]
    fn missing_half_of_the_ca_is_an_error_naming_both_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        CertificateAuthority::load_or_create(&dir).unwrap();
        fs::remove_file(cert_path(&dir)).unwrap();
        let err = CertificateAuthority::load_or_create(&dir).unwrap_err();
        assert!(matches!(err, TlsError::PartialCa { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem") && err.to_string().contains("ca.key"));
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        CertificateAuthority::load_or_create(&dir).unwrap();
        let other = tmp.path().join("other");
        CertificateAuthority::load_or_create(&other).unwrap();
        fs::copy(key_path(&other), key_path(&dir)).unwrap();
        let err = CertificateAuthority::load_or_create(&dir).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn garbage_key_error_does_not_echo_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        CertificateAuthority::load_or_create(&dir).unwrap();
        fs::write(key_path(&dir), "SECRET-NOT-A-KEY").unwrap();
        let err = CertificateAuthority::load_or_create(&dir).unwrap_err();
        assert!(matches!(err, TlsError::InvalidCa { .. }), "{err}");
        assert!(!err.to_string().contains("SECRET"));
    }
}
