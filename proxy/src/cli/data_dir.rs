//! Where every command starts: the data dir, its configuration and the store it names.

use std::path::Path;

use anyhow::Result;

use crate::config::{Config, DataDir};
use sekisho_store::Store;

pub(super) async fn open(data_dir: &Path) -> Result<(DataDir, Config, Store)> {
    let dd = DataDir::new(data_dir);
    let cfg = Config::load(data_dir)?;
    let store = Store::open(&cfg.store_url(data_dir)).await?;
    Ok((dd, cfg, store))
}
