//! The preferred marker store: extended attributes on the target.
//!
//! # Format (phaselock 1.1.0)
//!
//! A completed phase is an attribute `<namespace>.<attr_name or name>` on
//! the **target** file (not the lock file), by default
//! `user.phaselock.<name>`, with the phase's `attr_value` (default `b"1"`).
//! Presence of the attribute, whatever its value, means "done".
//!
//! # Choosing the store
//!
//! [`XattrMode`](super::XattrMode) and the `PHASELOCK_ENABLE_XATTRS`
//! environment variable are read exactly as phaselock reads them
//! ([`env_allows_xattrs`]). When xattrs are not switched off, the answer to
//! reading an attribute from the target decides (phaselock reads
//! `<namespace>.__phaselock_probe__`; holdfast lets the first marker
//! lookup answer): "no such attribute" (or any value) means xattrs work; a
//! missing target leaves the question open and counts as "they work"
//! (phaselock does the same; the marker then falls back to the status file
//! if the target is still missing when it is written); any other error
//! (`ENOTSUP`, `EPERM`, `EACCES`, ...) means they do not, and the status
//! file is used.

use std::io;
use std::path::Path;

use crate::sys;

/// The environment variable phaselock reads to switch xattrs on or off.
pub const PHASELOCK_ENABLE_XATTRS: &str = "PHASELOCK_ENABLE_XATTRS";

/// The attribute phaselock probes to see whether xattrs work (holdfast
/// lets the first marker lookup answer instead; it never writes this one
/// and leaves it out of marker listings).
pub(crate) const PROBE_NAME: &str = "__phaselock_probe__";

/// Linux's limit on an attribute name (`XATTR_NAME_MAX`).
pub(crate) const MAX_KEY_BYTES: usize = 255;

/// Reads a `PHASELOCK_ENABLE_XATTRS` value as phaselock 1.1.0 does:
/// surrounding whitespace is ignored, case too. `Some(true)` for unset,
/// empty, `auto`, `1`, `true`, `yes`, `on`, `xattr`, `xattrs`;
/// `Some(false)` for `0`, `false`, `no`, `off`, `fallback`, `status`,
/// `none`; `None` for anything else, which phaselock (and holdfast) treat
/// like `auto`.
pub(crate) fn parse_env(value: Option<&str>) -> Option<bool> {
    let v = value.unwrap_or("").trim().to_lowercase();
    match v.as_str() {
        "" | "auto" | "1" | "true" | "yes" | "on" | "xattr" | "xattrs" => Some(true),
        "0" | "false" | "no" | "off" | "fallback" | "status" | "none" => Some(false),
        _ => None,
    }
}

/// Whether the environment leaves xattrs switched on (probing allowed).
pub(crate) fn env_allows_xattrs() -> bool {
    let raw = std::env::var_os(PHASELOCK_ENABLE_XATTRS);
    let text = raw.as_ref().map(|v| v.to_string_lossy());
    parse_env(text.as_deref()) != Some(false)
}

/// The attribute name for `raw` (an `attr_name` or a phase name):
/// `<namespace>.<raw>`, or `raw` alone for an empty namespace.
pub(crate) fn key(namespace: &str, raw: &str) -> String {
    if namespace.is_empty() {
        raw.to_owned()
    } else {
        format!("{namespace}.{raw}")
    }
}

/// Whether the marker attribute `key` is on the target. A missing target
/// has no markers. `Err` means the filesystem refused (xattrs unusable).
pub(crate) fn is_marked(target: &Path, key: &str, follow: bool) -> Result<bool, io::Error> {
    match sys::xattr_exists(target, key, follow) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_match_phaselock() {
        for on in [
            None,
            Some(""),
            Some("auto"),
            Some(" AUTO "),
            Some("1"),
            Some("true"),
            Some("Yes"),
            Some("on"),
            Some("xattr"),
            Some("XATTRS"),
        ] {
            assert_eq!(parse_env(on), Some(true), "{on:?}");
        }
        for off in [
            "0", "false", "no", "off", "fallback", "status", "none", " Off\n", "NONE",
        ] {
            assert_eq!(parse_env(Some(off)), Some(false), "{off:?}");
        }
        for odd in ["2", "maybe", "enabled", "nope"] {
            assert_eq!(parse_env(Some(odd)), None, "{odd:?} counts as auto");
        }
    }

    #[test]
    fn keys() {
        assert_eq!(
            key("user.phaselock", "schema-v3"),
            "user.phaselock.schema-v3"
        );
        assert_eq!(key("", "user.x"), "user.x");
    }

    #[test]
    fn probe_and_marks_on_this_filesystem() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("app.db");
        // Missing target: undecided, counts as usable; nothing is marked.
        assert!(!is_marked(&t, "user.phaselock.a", false).unwrap());
        std::fs::write(&t, b"").unwrap();
        if is_marked(&t, "user.phaselock.a", false).is_err() {
            eprintln!("skipping: no user xattrs on {}", d.path().display());
            return;
        }
        assert!(!is_marked(&t, "user.phaselock.a", false).unwrap());
        sys::xattr_set(&t, "user.phaselock.a", &[b'v'; 300], false).unwrap();
        assert!(
            is_marked(&t, "user.phaselock.a", false).unwrap(),
            "large value"
        );
        assert_eq!(
            sys::xattr_get(&t, "user.phaselock.a", false)
                .unwrap()
                .unwrap()
                .len(),
            300
        );
        let names = sys::xattr_list(&t, false).unwrap();
        assert!(names.iter().any(|n| n == b"user.phaselock.a"));
        assert!(sys::xattr_remove(&t, "user.phaselock.a", false).unwrap());
        assert!(!sys::xattr_remove(&t, "user.phaselock.a", false).unwrap());
        // A namespace the kernel does not accept for users: an error, which
        // means "xattrs unusable".
        assert!(is_marked(&t, "bogus.a", false).is_err());
    }
}
