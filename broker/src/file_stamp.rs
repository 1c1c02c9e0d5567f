//! Noticing that a file changed, for the files read again while running (the ACL's users,
//! the TLS certificate and key): its modification time and length, or `None` when it
//! cannot be read. A change of either means "read it again".

use std::path::Path;
use std::time::SystemTime;

pub type FileStamp = Option<(SystemTime, u64)>;

pub fn of(path: &Path) -> FileStamp {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}
