//! ACL 2.0's user requests (mqadmin `createUser`, `updateUser`, `deleteUser`, `getUser`,
//! `listUser`; `rocketry admin acl user`) kept in the users file: each change is written
//! back whole, atomically, and read again at once. The file's comments do not survive a
//! change; its users and grants do.

use std::path::Path;

use protocol::body::admin::UserInfo;

use super::accounts::{Accounts, Entry, File};
use super::Acl;

const SUPER: &str = "Super";
const NORMAL: &str = "Normal";
const ENABLE: &str = "enable";
const DISABLE: &str = "disable";

fn info(entry: &Entry) -> UserInfo {
    UserInfo {
        username: entry.name(),
        // Never a secret, whoever asks.
        password: None,
        user_type: Some(if entry.admin { SUPER } else { NORMAL }.into()),
        user_status: Some(if entry.disabled { DISABLE } else { ENABLE }.into()),
    }
}

/// Sets what `user` names on `entry`; unknown values are errors, not guesses.
fn apply(entry: &mut Entry, user: &UserInfo) -> Result<(), String> {
    if let Some(password) = user.password.as_deref().filter(|p| !p.is_empty()) {
        entry.set_secret(password);
    }
    match user.user_type.as_deref() {
        None | Some("") => {}
        Some(kind) if kind.eq_ignore_ascii_case(SUPER) => entry.admin = true,
        Some(kind) if kind.eq_ignore_ascii_case(NORMAL) => entry.admin = false,
        Some(other) => return Err(format!("userType {other:?} must be {SUPER} or {NORMAL}")),
    }
    match user.user_status.as_deref() {
        None | Some("") => {}
        Some(status) if status.eq_ignore_ascii_case(ENABLE) => entry.disabled = false,
        Some(status) if status.eq_ignore_ascii_case(DISABLE) => entry.disabled = true,
        Some(other) => {
            return Err(format!(
                "userStatus {other:?} must be {ENABLE} or {DISABLE}"
            ))
        }
    }
    Ok(())
}

/// Writes `text` over `path` by a rename, so a reader never sees half a file.
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let temporary = path.with_extension("yml.writing");
    std::fs::write(&temporary, text)?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, path)
}

impl Acl {
    /// Reads the file, applies `change`, checks the result reads as users, writes it back
    /// and reads it again.
    pub(super) fn edit(
        &self,
        change: impl FnOnce(&mut File) -> Result<(), String>,
    ) -> Result<(), String> {
        let _one_at_a_time = self.editing.lock();
        let mut file = self.read_file()?;
        change(&mut file)?;
        let text = file.to_text();
        Accounts::parse(&text)?;
        replace(&self.path, &text).map_err(|e| format!("{}: {e}", self.path.display()))?;
        self.reload_if_changed();
        Ok(())
    }

    /// AUTH_CREATE_USER (`update` false) or AUTH_UPDATE_USER.
    pub fn put_user(&self, user: &UserInfo, update: bool) -> Result<(), String> {
        let name = user.username.trim();
        if name.is_empty() {
            return Err("username is empty".into());
        }
        self.edit(|file| {
            let existing = file.accounts.iter_mut().find(|e| e.name() == name);
            match (existing, update) {
                (Some(_), false) => Err(format!("user {name} already exists")),
                (None, true) => Err(format!("user {name} does not exist")),
                (Some(entry), true) => apply(entry, user),
                (None, false) => {
                    let password = user.password.as_deref().unwrap_or_default();
                    if password.is_empty() {
                        return Err(format!("user {name} needs a password"));
                    }
                    let mut entry = Entry::new(name, password);
                    apply(&mut entry, user)?;
                    file.accounts.push(entry);
                    Ok(())
                }
            }
        })
    }

    /// AUTH_DELETE_USER; deleting a user that is not there changes nothing.
    pub fn delete_user(&self, name: &str) -> Result<(), String> {
        self.edit(|file| {
            file.accounts.retain(|entry| entry.name() != name);
            Ok(())
        })
    }

    /// The users file as it is on disk now.
    pub(super) fn read_file(&self) -> Result<File, String> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| e.to_string())?;
        File::parse(&text)
    }

    /// AUTH_LIST_USER and AUTH_GET_USER: users whose name contains `filter`, in file order.
    pub fn users(&self, filter: Option<&str>) -> Result<Vec<UserInfo>, String> {
        Ok(self
            .read_file()?
            .accounts
            .iter()
            .filter(|entry| filter.is_none_or(|f| entry.name().contains(f)))
            .map(info)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Checks;

    fn acl(dir: &Path) -> Acl {
        let path = dir.join("plain_acl.yml");
        std::fs::write(
            &path,
            "# hand-written\naccounts:\n  - {accessKey: ops, secretKey: s1, admin: true}\n",
        )
        .unwrap();
        Acl::open(Checks::Authentication, path, String::new(), None, 3).unwrap()
    }

    fn user(name: &str, password: Option<&str>, kind: Option<&str>) -> UserInfo {
        UserInfo {
            username: name.into(),
            password: password.map(Into::into),
            user_type: kind.map(Into::into),
            user_status: None,
        }
    }

    #[test]
    fn users_are_created_updated_listed_and_deleted_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let acl = acl(dir.path());
        acl.put_user(&user("app", Some("p1"), Some("Normal")), false)
            .unwrap();
        assert!(acl.knows_key("app"));
        let again = acl
            .put_user(&user("app", Some("p2"), None), false)
            .unwrap_err();
        assert!(again.contains("already exists"), "{again}");
        assert!(acl.put_user(&user("nobody", None, None), true).is_err());
        assert!(acl
            .put_user(&user("bad", Some("p"), Some("Root")), false)
            .is_err());

        let mut disabled = user("app", None, Some("Super"));
        disabled.user_status = Some("disable".into());
        acl.put_user(&disabled, true).unwrap();
        let listed = acl.users(Some("ap")).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].user_type.as_deref(), Some("Super"));
        assert_eq!(listed[0].user_status.as_deref(), Some("disable"));
        assert_eq!(listed[0].password, None);

        acl.delete_user("app").unwrap();
        assert!(!acl.knows_key("app"));
        assert_eq!(acl.users(None).unwrap().len(), 1);
    }
}
