//! `tenantplane fhir load`: FHIR Bundles (`.json` or `.json.bz2`) into a tenant's records,
//! through the control-plane import endpoint, with a progress bar on stderr.
//!
//! Batch bundles are sent before transactions (Synthea's hospital and practitioner batches
//! carry what the patient transactions refer to conditionally), each group in the order
//! given.

use std::{
    io::{IsTerminal as _, Read as _, Write as _},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::Context as _;
use tenantplane_client::Client;

/// A bundle read from disk.
pub struct BundleFile {
    /// Where from.
    pub path: PathBuf,
    /// The JSON.
    pub bytes: Vec<u8>,
    /// `batch`, `transaction`, …
    pub kind: String,
    /// Entries.
    pub entries: usize,
}

/// Reads a `.json` or `.json.bz2` bundle.
pub fn read_bundle(path: &Path) -> anyhow::Result<BundleFile> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "bz2") {
        bzip2::read::BzDecoder::new(f)
            .read_to_end(&mut bytes)
            .with_context(|| format!("decompressing {}", path.display()))?;
    } else {
        std::io::BufReader::new(f)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        entry: Vec<serde::de::IgnoredAny>,
    }
    let head: Head = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a FHIR Bundle", path.display()))?;
    Ok(BundleFile {
        path: path.to_owned(),
        kind: head.kind.unwrap_or_default(),
        entries: head.entry.len(),
        bytes,
    })
}

/// Reads every file (directories: their `.json`/`.json.bz2` files) and orders batches first.
pub fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<BundleFile>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("listing {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|x| {
                    let n = x.to_string_lossy();
                    n.ends_with(".json") || n.ends_with(".json.bz2")
                })
                .collect();
            inner.sort();
            files.extend(inner);
        } else {
            files.push(p.clone());
        }
    }
    let mut out = files
        .iter()
        .map(|p| read_bundle(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Stable: batches keep their order, then transactions keep theirs.
    out.sort_by_key(|b| b.kind != "batch");
    Ok(out)
}

fn bar(done: usize, total: usize, label: &str) {
    let width = 30;
    let filled = (done * width)
        .checked_div(total)
        .unwrap_or(width)
        .min(width);
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "\r[{}{}] {done}/{total} {label:<48.48}",
        "#".repeat(filled),
        ".".repeat(width - filled)
    );
    let _ = err.flush();
}

/// Loads `files` into `tenant`. Returns (bundles, entries, seconds).
pub async fn load(
    client: &Client,
    tenant: &str,
    files: &[PathBuf],
) -> anyhow::Result<(usize, usize, f64)> {
    let bundles = read_all(files)?;
    let total: usize = bundles.iter().map(|b| b.entries).sum();
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut done = 0;
    for (i, b) in bundles.iter().enumerate() {
        let name = b
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if tty {
            bar(done, total, &name);
        }
        let t0 = Instant::now();
        let resp = client
            .fhir_import(tenant, b.bytes.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let failed = resp["entry"]
            .as_array()
            .map(|es| {
                es.iter()
                    .filter(|e| {
                        let s = e["response"]["status"].as_str().unwrap_or("");
                        !(s.starts_with('2'))
                    })
                    .count()
            })
            .unwrap_or(0);
        done += b.entries;
        if tty {
            bar(done, total, &name);
        } else {
            eprintln!(
                "[{}/{}] {name}: {} {} entries in {:.2} s{}",
                i + 1,
                bundles.len(),
                b.entries,
                b.kind,
                t0.elapsed().as_secs_f64(),
                if failed > 0 {
                    format!(", {failed} failed")
                } else {
                    String::new()
                }
            );
        }
        if failed > 0 && tty {
            eprintln!("\n{name}: {failed} entries failed");
        }
    }
    if tty {
        eprintln!();
    }
    Ok((bundles.len(), total, started.elapsed().as_secs_f64()))
}
