//! Backup and restore of a data dir (R-OPS-2: data is backed up for system failure).
//!
//! A backup is one file: the data dir's directories and regular files (configuration, CA and
//! server keys, the assertion, checkpoint and enrollment-PIN keys, policies, tunnel key,
//! break-glass evidence, cached CRLs), and for SQLite a consistent snapshot of the database
//! taken with `VACUUM INTO` while the gateway keeps serving (a read transaction: writers go
//! on). It is compressed and encrypted as it is written (`crypt`: ChaCha20-Poly1305 in chunks,
//! the key from a key file or a passphrase through Argon2id); nothing of it is on disk
//! unencrypted except the database snapshot, in a private directory beside the database that is
//! removed when the backup ends. A PostgreSQL database is not in the backup: it is backed up
//! with PostgreSQL's own tools (`docs/operations.md`).
//!
//! A restore goes into a new data dir only: it is written into a directory beside the target
//! and renamed into place at the end, after the restored audit log has taken a record of the
//! restore and verified, so a wrong key, a damaged file or a failed check leave nothing.
//!
//! - `crypt`: the file's header, key derivation and chunked encryption;
//! - `archive`: the entries inside, and restoring them from hostile input.

pub mod archive;
pub mod crypt;

pub use crypt::{Secret, keygen};
