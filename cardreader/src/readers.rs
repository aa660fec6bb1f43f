//! Reader discovery through the system's PC/SC service (`pcscd` on Linux).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReaderError {
    #[error("the smart-card service is not running (start pcscd)")]
    NoService,
    #[error("PC/SC error: {0}")]
    Pcsc(#[from] pcsc::Error),
}

/// Names of the connected readers; an empty list when none is plugged in.
pub fn list_readers() -> Result<Vec<String>, ReaderError> {
    let ctx = match pcsc::Context::establish(pcsc::Scope::User) {
        Ok(c) => c,
        Err(pcsc::Error::NoService) | Err(pcsc::Error::ServiceStopped) => {
            return Err(ReaderError::NoService);
        }
        Err(e) => return Err(e.into()),
    };
    let mut buf = vec![0u8; ctx.list_readers_len()?];
    match ctx.list_readers(&mut buf) {
        Ok(names) => Ok(names.map(|n| n.to_string_lossy().into_owned()).collect()),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}
