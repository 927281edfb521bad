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
    bundle_file(path, bytes)
}

/// The 20-patient Synthea sample shipped inside the binary (`sample/synthea`, bzip2):
/// the hospital and practitioner batches first, then the patient transactions.
const SAMPLE: &[(&str, &[u8])] = &[
    (
        "0-hospitalInformation1625911868739.json.bz2",
        include_bytes!("../sample/synthea/0-hospitalInformation1625911868739.json.bz2"),
    ),
    (
        "0-practitionerInformation1625911868739.json.bz2",
        include_bytes!("../sample/synthea/0-practitionerInformation1625911868739.json.bz2"),
    ),
    (
        "085e81c0-7a95-ef02-16ef-aa1b4344deed.json.bz2",
        include_bytes!("../sample/synthea/085e81c0-7a95-ef02-16ef-aa1b4344deed.json.bz2"),
    ),
    (
        "19625ee6-1a94-1a6a-ca95-40c4efbbdfc7.json.bz2",
        include_bytes!("../sample/synthea/19625ee6-1a94-1a6a-ca95-40c4efbbdfc7.json.bz2"),
    ),
    (
        "2fcbe29d-94f0-ec20-dcf3-740c45bc08ba.json.bz2",
        include_bytes!("../sample/synthea/2fcbe29d-94f0-ec20-dcf3-740c45bc08ba.json.bz2"),
    ),
    (
        "5035bbae-27fc-b927-4a9b-7af7fdd536eb.json.bz2",
        include_bytes!("../sample/synthea/5035bbae-27fc-b927-4a9b-7af7fdd536eb.json.bz2"),
    ),
    (
        "53eac4c0-8d6b-72da-2768-a6d08e687f48.json.bz2",
        include_bytes!("../sample/synthea/53eac4c0-8d6b-72da-2768-a6d08e687f48.json.bz2"),
    ),
    (
        "5875d3aa-192c-6d05-221a-88a9cee35ff9.json.bz2",
        include_bytes!("../sample/synthea/5875d3aa-192c-6d05-221a-88a9cee35ff9.json.bz2"),
    ),
    (
        "5f66ecbb-b445-1290-4b55-9fc3ddfd569e.json.bz2",
        include_bytes!("../sample/synthea/5f66ecbb-b445-1290-4b55-9fc3ddfd569e.json.bz2"),
    ),
    (
        "6c8f3e83-c351-ed33-c38d-6be101c275d2.json.bz2",
        include_bytes!("../sample/synthea/6c8f3e83-c351-ed33-c38d-6be101c275d2.json.bz2"),
    ),
    (
        "728248bf-a984-5d08-efff-c44f98f56435.json.bz2",
        include_bytes!("../sample/synthea/728248bf-a984-5d08-efff-c44f98f56435.json.bz2"),
    ),
    (
        "83c9c542-0421-9ccb-34f6-8c6876fe04e5.json.bz2",
        include_bytes!("../sample/synthea/83c9c542-0421-9ccb-34f6-8c6876fe04e5.json.bz2"),
    ),
    (
        "8708d3e1-f718-96bb-03f0-f2a6564ae1cd.json.bz2",
        include_bytes!("../sample/synthea/8708d3e1-f718-96bb-03f0-f2a6564ae1cd.json.bz2"),
    ),
    (
        "8a4c9c04-1524-9f1c-d65b-9b17e4520fef.json.bz2",
        include_bytes!("../sample/synthea/8a4c9c04-1524-9f1c-d65b-9b17e4520fef.json.bz2"),
    ),
    (
        "9a174f9e-ed67-6617-0106-745fb1f9a344.json.bz2",
        include_bytes!("../sample/synthea/9a174f9e-ed67-6617-0106-745fb1f9a344.json.bz2"),
    ),
    (
        "bba190d1-1356-0588-7a1b-7e1325835baa.json.bz2",
        include_bytes!("../sample/synthea/bba190d1-1356-0588-7a1b-7e1325835baa.json.bz2"),
    ),
    (
        "be9d18f7-f230-dadc-049e-c13d3a4ac079.json.bz2",
        include_bytes!("../sample/synthea/be9d18f7-f230-dadc-049e-c13d3a4ac079.json.bz2"),
    ),
    (
        "beb53716-4df8-a51c-c58e-a8b814b8ac88.json.bz2",
        include_bytes!("../sample/synthea/beb53716-4df8-a51c-c58e-a8b814b8ac88.json.bz2"),
    ),
    (
        "c0697745-be05-4abc-07e0-f78ca6cb7230.json.bz2",
        include_bytes!("../sample/synthea/c0697745-be05-4abc-07e0-f78ca6cb7230.json.bz2"),
    ),
    (
        "cd185ab5-8efb-c68a-4779-d49dd4ba8f28.json.bz2",
        include_bytes!("../sample/synthea/cd185ab5-8efb-c68a-4779-d49dd4ba8f28.json.bz2"),
    ),
    (
        "d1193889-ebd9-4e35-bf1b-8a73ecbfc00b.json.bz2",
        include_bytes!("../sample/synthea/d1193889-ebd9-4e35-bf1b-8a73ecbfc00b.json.bz2"),
    ),
    (
        "f500d29f-be62-9008-43c5-e2c173dde9bd.json.bz2",
        include_bytes!("../sample/synthea/f500d29f-be62-9008-43c5-e2c173dde9bd.json.bz2"),
    ),
];

/// The shipped Synthea sample, decompressed, batches first.
pub fn sample() -> anyhow::Result<Vec<BundleFile>> {
    let mut out = SAMPLE
        .iter()
        .map(|(name, raw)| {
            let mut bytes = Vec::new();
            bzip2::read::BzDecoder::new(*raw)
                .read_to_end(&mut bytes)
                .with_context(|| format!("decompressing the shipped sample {name}"))?;
            bundle_file(Path::new(name), bytes)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    out.sort_by_key(|b| b.kind != "batch");
    Ok(out)
}

fn bundle_file(path: &Path, bytes: Vec<u8>) -> anyhow::Result<BundleFile> {
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
    // No files: the Synthea sample shipped in the binary.
    let bundles = if files.is_empty() {
        sample()?
    } else {
        read_all(files)?
    };
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
