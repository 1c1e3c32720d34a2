//! Image paths from records are relative to the image root; an absolute path or one that climbs
//! out of the root (`..`) is rejected rather than followed.

use std::path::{Component, Path, PathBuf};

use crate::{FaultReason, SampleFault};

/// Joins a record's `image` onto `image_root`, refusing absolute paths, drive prefixes and `..`.
pub fn resolve_image_path(image_root: &Path, rel: &str) -> Result<PathBuf, SampleFault> {
    let p = Path::new(rel);
    let ok = !rel.is_empty()
        && !p.is_absolute()
        && p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        let path = image_root.join(p);
        confined(image_root, &path, rel)?;
        Ok(path)
    } else {
        Err(SampleFault::new(
            FaultReason::BadImagePath,
            format!("image path {rel:?} is absolute or leaves the image root"),
        ))
    }
}

/// A path that exists must stay under the image root once symbolic links are resolved (a link in
/// the image folder may point anywhere). Paths that do not exist are left for the loader to report.
fn confined(image_root: &Path, path: &Path, rel: &str) -> Result<(), SampleFault> {
    let (Ok(root), Ok(target)) = (std::fs::canonicalize(image_root), std::fs::canonicalize(path)) else { return Ok(()) };
    if target.starts_with(&root) {
        return Ok(());
    }
    Err(SampleFault::new(
        FaultReason::BadImagePath,
        format!("image path {rel:?} is a link that leads out of the image root (to {})", target.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_absolute_and_escaping_paths() {
        let root = Path::new("/data/images");
        assert_eq!(resolve_image_path(root, "coco/1.jpg").unwrap(), root.join("coco/1.jpg"));
        assert_eq!(resolve_image_path(root, "./a.png").unwrap(), root.join("./a.png"));
        for bad in ["/etc/passwd", "../x.png", "a/../../x.png", "a/..", ""] {
            let e = resolve_image_path(root, bad).unwrap_err();
            assert_eq!(e.reason, FaultReason::BadImagePath, "{bad}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn refuses_links_that_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("images");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(dir.path().join("outside.png"), b"x").unwrap();
        std::fs::write(root.join("sub/inside.png"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.png"), root.join("out.png")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/inside.png"), root.join("in.png")).unwrap();
        let e = resolve_image_path(&root, "out.png").unwrap_err();
        assert_eq!(e.reason, FaultReason::BadImagePath);
        assert!(e.detail.contains("leads out of the image root"), "{}", e.detail);
        assert_eq!(resolve_image_path(&root, "in.png").unwrap(), root.join("in.png"));
        assert_eq!(resolve_image_path(&root, "missing.png").unwrap(), root.join("missing.png"));
    }
}
