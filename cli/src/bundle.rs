//! `coprocess bundle build|verify`: Tyk plugin bundles, as `tyk bundle build` makes them and as the
//! gateway (and the bridge) checks them.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use coprocess_bridge::bundle::verify::{PrivateKey, PublicKey};
use coprocess_bridge::bundle::{build, check_archive};
use serde_json::Value;

use crate::error::{CliError, Result};
use crate::output;

#[derive(Debug, Args)]
pub struct BundleArgs {
    #[command(subcommand)]
    command: BundleCommand,
}

#[derive(Debug, Subcommand)]
enum BundleCommand {
    /// Build a bundle from a manifest and the files of its file_list, as `tyk bundle build` does.
    Build(BuildArgs),
    /// Check a bundle as the gateway does on download: zip entries, checksum and, with --key, signature.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "\
Files are read relative to the manifest's folder. The zip holds the file_list files and manifest.json
with `checksum` (md5 of the files' bytes in list order) and `signature` (base64 RSA PKCS#1 v1.5 over
their SHA-256) filled in. Without -k the bundle is unsigned: confirm on the terminal, or pass -y.

Examples:
  coprocess bundle build -k private.pem
  coprocess bundle build -m plugins/manifest.json -o plugins.zip -y")]
pub struct BuildArgs {
    /// The manifest.
    #[arg(short, long, value_name = "FILE", default_value = "manifest.json")]
    manifest: PathBuf,
    /// The bundle to write.
    #[arg(short, long, value_name = "FILE", default_value = "bundle.zip")]
    output: PathBuf,
    /// PEM RSA private key to sign with (PRIVATE KEY or RSA PRIVATE KEY).
    #[arg(short, long, value_name = "PEM", conflicts_with = "skip_signing")]
    key: Option<PathBuf>,
    /// Build an unsigned bundle without asking.
    #[arg(short = 'y', long)]
    skip_signing: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Exits with status 1 and a one-line reason (the step that failed and why) when the bundle would be
refused. Without --key the signature is not checked.

Example:
  coprocess bundle verify bundle.zip --key public.pem")]
pub struct VerifyArgs {
    /// The bundle zip.
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,
    /// PEM RSA public key the bundle must be signed with (PUBLIC KEY or RSA PUBLIC KEY).
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
}

pub fn run(args: BundleArgs) -> Result<()> {
    match args.command {
        BundleCommand::Build(a) => run_build(a),
        BundleCommand::Verify(a) => run_verify(a),
    }
}

fn run_build(args: BuildArgs) -> Result<()> {
    let key = match &args.key {
        Some(path) => Some(PrivateKey::load(path).map_err(CliError::new)?),
        None if args.skip_signing => None,
        None => {
            confirm_unsigned()?;
            None
        }
    };
    let built = build::build(&args.manifest, key.as_ref())
        .map_err(|why| CliError::new(format!("{}: {why}", args.manifest.display())))?;
    write_atomically(&args.output, &built.archive)?;
    let signed = if built.signature.is_empty() {
        "unsigned"
    } else {
        "signed"
    };
    output::line(&format!(
        "wrote {} ({} bytes, checksum {}, {signed})",
        args.output.display(),
        built.archive.len(),
        built.checksum
    ))
}

/// Tyk asks before building an unsigned bundle; so do we, on a terminal only.
fn confirm_unsigned() -> Result<()> {
    let refuse = || {
        CliError::new(
            "the bundle would be unsigned: pass -k PEM to sign it, or -y to build it unsigned",
        )
    };
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(refuse());
    }
    eprint!("The bundle will be unsigned, type \"y\" or \"yes\" to confirm: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).map_err(|_| refuse())?;
    match answer.trim() {
        "y" | "yes" => Ok(()),
        _ => Err(refuse()),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let failed = |e: std::io::Error| CliError::new(format!("cannot write {}: {e}", path.display()));
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
    tmp.write_all(bytes).map_err(failed)?;
    tmp.persist(path).map_err(|e| failed(e.error))?;
    Ok(())
}

fn run_verify(args: VerifyArgs) -> Result<()> {
    let shown = args.bundle.display().to_string();
    let key = match &args.key {
        Some(path) => Some(PublicKey::load(path).map_err(CliError::new)?),
        None => None,
    };
    let meta =
        std::fs::metadata(&args.bundle).map_err(|e| CliError::new(format!("{shown}: {e}")))?;
    if meta.len() > 64 << 20 {
        return Err(CliError::new(format!("{shown}: larger than 64 MiB")));
    }
    let bytes = std::fs::read(&args.bundle).map_err(|e| CliError::new(format!("{shown}: {e}")))?;
    let manifest = check_archive(&bytes, key.as_ref())
        .map_err(|(step, why)| CliError::new(format!("{shown}: {step}: {why}")))?;
    let signature = match (&key, manifest.signature.is_empty()) {
        (Some(_), _) => "signature verified",
        (None, true) => "unsigned",
        (None, false) => "signed (signature not checked: no --key)",
    };
    let cm = &manifest.custom_middleware;
    let mut hooks = Vec::new();
    for kind in ["pre", "post_key_auth", "post", "response"] {
        for h in cm.get(kind).and_then(Value::as_array).into_iter().flatten() {
            if let Some(name) = h.get("name").and_then(Value::as_str) {
                hooks.push(format!("{kind}:{name}"));
            }
        }
    }
    if let Some(name) = cm
        .pointer("/auth_check/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        hooks.push(format!("auth_check:{name}"));
    }
    output::line(&format!(
        "{shown}: OK (checksum {}, {signature})\ndriver  {}\nhooks   {}\nfiles   {}",
        manifest.checksum,
        manifest.driver().unwrap_or("(none)"),
        if hooks.is_empty() {
            "(none)".into()
        } else {
            hooks.join(", ")
        },
        manifest.file_list.join(", ")
    ))
}
