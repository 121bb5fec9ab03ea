//! The TypeScript declarations of the answers and errors that cross to the extension's pages
//! are generated from the Rust types here (ts-rs, serde's renames honoured) into
//! `extension/src/shared/generated/`, which is checked in. The test below fails when those files are
//! not what the types generate now; `make typescript` rewrites them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use trickle_wallet::app::view;
use ts_rs::{Config, TS};

const REGENERATE: &str = "make typescript";
/// Set by `make typescript`: the test writes the checked-in files instead of comparing.
const WRITE_VAR: &str = "TRICKLE_WRITE_TYPESCRIPT";

fn checked_in_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../extension/src/shared/generated")
}

/// Writes the declaration of every type that crosses, and of every type they refer to, into
/// `dir`, one file per type. Amounts are `number` in JavaScript (sat stay far below 2^53).
fn export_into(dir: &Path) -> Result<(), ts_rs::ExportError> {
    let cfg = Config::new().with_large_int("number").with_out_dir(dir);
    crate::request::Request::export_all(&cfg)?;
    crate::errors::Failure::export_all(&cfg)?;
    crate::State::export_all(&cfg)?;
    crate::Overview::export_all(&cfg)?;
    view::SendPreviewView::export_all(&cfg)?;
    view::OfferAnswer::export_all(&cfg)?;
    view::ReceiptAnswer::export_all(&cfg)?;
    view::SitesView::export_all(&cfg)?;
    view::DutiesView::export_all(&cfg)?;
    crate::bench::BenchPayments::export_all(&cfg)?;
    Ok(())
}

/// The `.ts` files of `dir` by name.
fn read_ts_files(dir: &Path) -> BTreeMap<String, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let text = std::fs::read_to_string(e.path()).ok()?;
            name.ends_with(".ts").then_some((name, text))
        })
        .collect()
}

#[test]
fn the_checked_in_typescript_is_what_the_rust_types_generate() {
    let checked_in = checked_in_dir();
    if std::env::var_os(WRITE_VAR).is_some() {
        for name in read_ts_files(&checked_in).keys() {
            std::fs::remove_file(checked_in.join(name)).expect("remove a stale file");
        }
        export_into(&checked_in).expect("write the TypeScript declarations");
        return;
    }
    let fresh = std::env::temp_dir().join(format!("trickle-typescript-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&fresh);
    export_into(&fresh).expect("generate the TypeScript declarations");
    let (want, have) = (read_ts_files(&fresh), read_ts_files(&checked_in));
    let _ = std::fs::remove_dir_all(&fresh);
    assert!(!want.is_empty(), "nothing was generated");
    let stale: BTreeSet<&String> = want
        .keys()
        .chain(have.keys())
        .filter(|name| want.get(*name) != have.get(*name))
        .collect();
    assert!(
        stale.is_empty(),
        "extension/src/shared/generated/ is not what the Rust types generate (stale: {stale:?}): run `{REGENERATE}` and commit the result"
    );
}
