//! User and group names to ids, from the system's databases (NSS).

use std::ffi::CString;

/// The uid of user `name`.
pub fn user_id(name: &str) -> Result<u32, String> {
    let c = CString::new(name).map_err(|_| format!("{name:?}: not a user name"))?;
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: a zeroed passwd is a valid out-parameter for getpwnam_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is live for the call and `buf.len()` is its size;
    // the strings getpwnam_r stores point into `buf`, which we do not read.
    let r =
        unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    if r != 0 || found.is_null() {
        return Err(format!("no user {name:?}"));
    }
    Ok(pw.pw_uid)
}

/// The gid of group `name`.
pub fn group_id(name: &str) -> Result<u32, String> {
    let c = CString::new(name).map_err(|_| format!("{name:?}: not a group name"))?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: a zeroed group is a valid out-parameter for getgrnam_r.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is live for the call and `buf.len()` is its size.
    let r =
        unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut found) };
    if r != 0 || found.is_null() {
        return Err(format!("no group {name:?}"));
    }
    Ok(gr.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_and_nonsense_does_not() {
        assert_eq!(user_id("root"), Ok(0));
        assert_eq!(group_id("root"), Ok(0));
        assert!(user_id("no-such-user-capnet").is_err());
        assert!(group_id("no-such-group-capnet").is_err());
    }
}
