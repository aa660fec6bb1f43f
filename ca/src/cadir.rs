//! The CA directory: which files it holds, and writing them all-or-nothing.
//!
//! Every file is first written in full to a temporary name in the same directory (keys created
//! with mode 0600 from the start, so no other user can ever open them), flushed, and then linked
//! to its final name. `link` fails if the name exists, so an existing CA is never overwritten,
//! even by a concurrent `create`. If any step fails, whatever was already linked is removed.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::CaError;

pub(crate) const ROOT_CERT: &str = "root.crt";
pub(crate) const ROOT_KEY: &str = "root.key";
pub(crate) const ISSUING_CERT: &str = "issuing.crt";
pub(crate) const ISSUING_KEY: &str = "issuing.key";
pub(crate) const ALL_FILES: [&str; 4] = [ROOT_CERT, ROOT_KEY, ISSUING_CERT, ISSUING_KEY];
/// The patient-card issuing CA, made on first use (`patient_card::PatientCardCa::ensure`).
pub(crate) const PATIENT_CA_CERT: &str = "patient-card-ca.crt";
pub(crate) const PATIENT_CA_KEY: &str = "patient-card-ca.key";

pub(crate) const KEY_MODE: u32 = 0o600;
pub(crate) const CERT_MODE: u32 = 0o644;

pub(crate) struct NewFile<'a> {
    pub name: &'static str,
    pub contents: &'a [u8],
    pub mode: u32,
}

/// Creates `dir` if needed (0700) and refuses if any CA file is already there (the patient-card
/// CA's too: left from another CA, it would not chain to the new root).
pub(crate) fn prepare(dir: &Path) -> Result<(), CaError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| CaError::io("create the CA directory", dir, e))?;
    for name in ALL_FILES
        .into_iter()
        .chain([PATIENT_CA_CERT, PATIENT_CA_KEY])
    {
        let path = dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(_) => {
                return Err(CaError::AlreadyExists {
                    dir: dir.to_path_buf(),
                    file: name.to_owned(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CaError::io("check", path, e)),
        }
    }
    Ok(())
}

/// Writes all files, or none of them.
pub(crate) fn write_all_or_nothing(dir: &Path, files: &[NewFile<'_>]) -> Result<(), CaError> {
    let mut staged: Vec<PathBuf> = Vec::new();
    let mut linked: Vec<PathBuf> = Vec::new();
    let result = (|| {
        for f in files {
            staged.push(stage(dir, f)?);
        }
        for (f, tmp) in files.iter().zip(&staged) {
            let target = dir.join(f.name);
            fs::hard_link(tmp, &target).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    CaError::AlreadyExists {
                        dir: dir.to_path_buf(),
                        file: f.name.to_owned(),
                    }
                } else {
                    CaError::io("write", &target, e)
                }
            })?;
            linked.push(target);
        }
        sync_dir(dir);
        Ok(())
    })();
    if result.is_err() {
        for path in &linked {
            let _ = fs::remove_file(path);
        }
    }
    for tmp in &staged {
        let _ = fs::remove_file(tmp);
    }
    if result.is_ok() {
        sync_dir(dir);
    }
    result
}

fn stage(dir: &Path, f: &NewFile<'_>) -> Result<PathBuf, CaError> {
    let mut rnd = [0u8; 6];
    aws_lc_rs::rand::fill(&mut rnd).map_err(|_| CaError::Random)?;
    let tmp = dir.join(format!(".{}.{}.tmp", f.name, hex::encode(rnd)));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, f.mode);
    #[cfg(not(unix))]
    let _ = f.mode;
    let mut file = options
        .open(&tmp)
        .map_err(|e| CaError::io("create", &tmp, e))?;
    let written = file.write_all(f.contents).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = fs::remove_file(&tmp);
        return Err(CaError::io("write", &tmp, e));
    }
    Ok(tmp)
}

/// Makes the new names durable. Best effort: not every platform can open a directory.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Reads one CA file; a missing file is reported as "no CA found".
pub(crate) fn read(dir: &Path, name: &str) -> Result<Vec<u8>, CaError> {
    let path = dir.join(name);
    let meta = fs::metadata(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CaError::Missing(path.clone()),
        _ => CaError::io("read", &path, e),
    })?;
    if meta.len() > crate::encoding::MAX_INPUT as u64 {
        return Err(CaError::Inconsistent {
            dir: dir.to_path_buf(),
            reason: format!("{name} is far too large to be a CA file"),
        });
    }
    fs::read(&path).map_err(|e| CaError::io("read", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_existing_and_leaves_no_temporaries() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        prepare(&dir).unwrap();
        fs::write(dir.join(ISSUING_KEY), b"already here").unwrap();
        let files = [
            NewFile {
                name: ROOT_CERT,
                contents: b"a",
                mode: CERT_MODE,
            },
            NewFile {
                name: ISSUING_KEY,
                contents: b"b",
                mode: KEY_MODE,
            },
        ];
        let err = write_all_or_nothing(&dir, &files).unwrap_err();
        assert!(matches!(err, CaError::AlreadyExists { .. }), "{err}");
        // root.crt was linked first and must have been rolled back; the old file is untouched.
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec![ISSUING_KEY.to_owned()]);
        assert_eq!(fs::read(dir.join(ISSUING_KEY)).unwrap(), b"already here");
        assert!(matches!(prepare(&dir), Err(CaError::AlreadyExists { .. })));
    }
}

/// Writes a secret (a private key, a PKCS#12 bundle) to `path` with mode 0600 from the moment
/// it exists: staged under a temporary name beside it, synced, then renamed into place.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), CaError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| CaError::io("write", path, std::io::ErrorKind::InvalidInput.into()))?;
    let mut rnd = [0u8; 6];
    aws_lc_rs::rand::fill(&mut rnd).map_err(|_| CaError::Random)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        hex::encode(rnd)
    ));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, KEY_MODE);
    let mut file = options
        .open(&tmp)
        .map_err(|e| CaError::io("create", &tmp, e))?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        drop(file);
        let _ = fs::remove_file(&tmp);
        return Err(CaError::io("write", path, e));
    }
    sync_dir(dir);
    Ok(())
}

#[cfg(test)]
mod private_file_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_0600_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        write_private_file(&p, b"one").unwrap();
        write_private_file(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        assert!(write_private_file(&dir.path().join("missing/k.pem"), b"x").is_err());
    }
}
