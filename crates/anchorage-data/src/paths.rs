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
        Ok(image_root.join(p))
    } else {
        Err(SampleFault::new(
            FaultReason::BadImagePath,
            format!("image path {rel:?} is absolute or leaves the image root"),
        ))
    }
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
}
