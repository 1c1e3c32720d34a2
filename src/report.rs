//! How a failed command's error is printed: the message and each cause behind it, joined by `: `
//! (anyhow's `{:#}`), without repeating a cause that an outer message already spells out. Many of
//! our error types name their source in their own message (`cannot read PATH: REASON`) and also
//! hand it on as the source, so a plain `{:#}` would print REASON two or three times.

/// The one-line report of `err` and its causes.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::error_line;

    /// An error as our thiserror types write them: the source in the message and as the source.
    #[derive(Debug)]
    struct Read {
        path: String,
        source: std::io::Error,
    }

    impl std::fmt::Display for Read {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot read {}: {}", self.path, self.source)
        }
    }

    impl std::error::Error for Read {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let err = anyhow::Error::new(Read { path: "a.png".into(), source: io }).context("question 0 (line 1)");
        assert_eq!(format!("{err:#}"), "question 0 (line 1): cannot read a.png: No such file or directory (os error 2): No such file or directory (os error 2)");
        assert_eq!(error_line(&err), "question 0 (line 1): cannot read a.png: No such file or directory (os error 2)");
    }

    #[test]
    fn causes_that_add_something_are_kept() {
        let err = anyhow::anyhow!("disk full").context("writing b.json").context("saving the checkpoint");
        assert_eq!(error_line(&err), "saving the checkpoint: writing b.json: disk full");
    }
}
