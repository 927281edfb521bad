//! The Synthea sample shipped in the repository (`crates/tenantplane/sample/synthea`), decompressed: the
//! hospital and practitioner batches first, then the patient transactions by file name —
//! the order they must be loaded in.

use std::{io::Read as _, path::PathBuf};

use anyhow::Context as _;

/// The sample's directory.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tenantplane/sample/synthea")
}

/// Every bundle as (file name, JSON text), in load order.
pub fn bundles() -> anyhow::Result<Vec<(String, String)>> {
    let dir = dir();
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
        let p = e?.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".json.bz2") {
            files.push((name, p));
        }
    }
    files.sort_by_key(|(n, _)| {
        (
            !n.starts_with("0-hospital"),
            !n.starts_with("0-practitioner"),
            n.clone(),
        )
    });
    files
        .into_iter()
        .map(|(name, p)| {
            let mut text = String::new();
            bzip2::read::BzDecoder::new(
                std::fs::File::open(&p).with_context(|| p.display().to_string())?,
            )
            .read_to_string(&mut text)
            .with_context(|| p.display().to_string())?;
            Ok((name, text))
        })
        .collect()
}
