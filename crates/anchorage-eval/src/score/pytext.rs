//! The few Python `str` behaviours the reference scripts lean on, so that the scorers cut, strip and
//! split text exactly where CPython 3 does.

/// Lines as `for line in open(path)` yields them in text mode: universal newlines (`\r\n` and a lone
/// `\r` both end a line and read as `\n`), each line keeping its `\n` (the last may lack it).
pub fn py_lines(text: &str) -> Vec<String> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    text.split_inclusive('\n').map(str::to_string).collect()
}

/// `str.isspace()` for one character: Unicode White_Space plus the four ASCII separators U+001C..U+001F
/// that Python also counts (Rust's `char::is_whitespace` does not).
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `str.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// `str.split()` with no separator: runs of whitespace split, no empty pieces.
pub fn py_split_ws(s: &str) -> Vec<&str> {
    s.split(is_py_space).filter(|w| !w.is_empty()).collect()
}

/// `str.lower()` (full Unicode lowercasing, as CPython does).
pub fn py_lower(s: &str) -> String {
    s.to_lowercase()
}

/// `str.rstrip(chars)` for one character.
pub fn py_rstrip_char(s: &str, c: char) -> &str {
    s.trim_end_matches(c)
}

/// The first `n` characters (code points), as `s[:n]` takes them.
pub fn py_prefix(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Zero digits of the Unicode 14.0 (CPython 3.11) category Nd blocks; each block holds the ten digits
/// `zero..=zero + 9`. Printed by `unicodedata` (`category(c) == 'Nd' and decimal(c) == 0`).
const ND_ZEROS: [u32; 66] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6, 0xE50,
    0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40,
    0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x10D30, 0x11066,
    0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950,
    0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6,
    0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// The value of a decimal digit as `re`'s `\d` and `int()` see digits (category Nd), or `None`.
pub fn py_decimal(c: char) -> Option<u32> {
    let c = c as u32;
    let i = ND_ZEROS.partition_point(|&zero| zero <= c);
    let zero = *ND_ZEROS.get(i.checked_sub(1)?)?;
    (c - zero < 10).then_some(c - zero)
}

/// `int(s)` for a string in base 10: surrounding whitespace, one sign, Unicode decimal digits with
/// single underscores between them. `None` where Python raises `ValueError`.
pub fn py_int_str(s: &str) -> Option<i128> {
    let s = py_strip(s);
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let mut value: i128 = 0;
    let mut previous_underscore = true; // no leading underscore
    let mut any = false;
    for c in digits.chars() {
        if c == '_' {
            if previous_underscore {
                return None;
            }
            previous_underscore = true;
            continue;
        }
        let d = py_decimal(c)?;
        value = value.checked_mul(10)?.checked_add(i128::from(d))?;
        previous_underscore = false;
        any = true;
    }
    if !any || previous_underscore {
        return None;
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_universal_newlines() {
        assert_eq!(py_lines("a\r\nb\rc\nd"), vec!["a\n", "b\n", "c\n", "d"]);
        assert!(py_lines("").is_empty());
    }

    #[test]
    fn whitespace_includes_the_ascii_separators() {
        assert_eq!(py_strip("\u{1f} x \u{a0}"), "x");
        assert_eq!(py_split_ws(" a\u{1c}b  c\n"), vec!["a", "b", "c"]);
    }

    #[test]
    fn decimal_digits_are_category_nd_only() {
        assert_eq!(py_decimal('7'), Some(7));
        assert_eq!(py_decimal('\u{663}'), Some(3)); // ARABIC-INDIC DIGIT THREE
        assert_eq!(py_decimal('\u{b2}'), None); // SUPERSCRIPT TWO is No, not Nd
        assert_eq!(py_decimal('a'), None);
        assert_eq!(py_decimal('/'), None);
    }

    #[test]
    fn int_of_strings_as_python() {
        assert_eq!(py_int_str(" 101669\n"), Some(101669));
        assert_eq!(py_int_str("+1_000"), Some(1000));
        assert_eq!(py_int_str("-007"), Some(-7));
        assert_eq!(py_int_str("\u{661}\u{662}"), Some(12));
        for bad in ["", "1__0", "_1", "1_", "1.0", "0x10", "- 1", "abc"] {
            assert_eq!(py_int_str(bad), None, "{bad}");
        }
    }

    #[test]
    fn prefix_counts_code_points() {
        assert_eq!(py_prefix("héllo", 4), "héll");
        assert_eq!(py_prefix("no", 4), "no");
    }
}
