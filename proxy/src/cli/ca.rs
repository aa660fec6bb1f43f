//! `sekisho ca …`: Sekisho's CA; today its certificate revocation list.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use super::data_dir::open;
use crate::terminals;

#[derive(Subcommand, Debug)]
pub enum CaCmd {
    /// Print the current CRL (PEM) on stdout.
    Crl {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

pub(super) async fn run(cmd: CaCmd) -> Result<i32> {
    match cmd {
        CaCmd::Crl { data_dir } => {
            let (dd, cfg, store) = open(&data_dir).await?;
            let ca = terminals::load_authority(&dd).ok();
            let crl = terminals::ensure_crl(&store, ca.as_ref(), &cfg.ca).await?;
            print!("{}", sekisho_ca::crl_pem(&crl.der));
            Ok(0)
        }
    }
}
