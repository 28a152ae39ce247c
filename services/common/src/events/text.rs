//! The one rule for characters in free text: control characters never reach a
//! store. PostgreSQL rejects NUL outright (SQLSTATE 22021) and the others are
//! never meant as data, so a command carrying one is refused up front rather
//! than failing, or being retried, at the store.

/// Which whitespace controls a string field may hold. Every free-text field of
/// every command names its rule in [`crate::events::Command::text_fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// Names, ids, codes: no control character at all.
    SingleLine,
    /// Prose such as a title's description: line feed, carriage return (for
    /// `\r\n`) and tab are allowed; every other control character is not.
    MultiLine,
}

/// Whether `c` may not appear in a field following `rule`: Unicode general
/// category Cc (U+0000–U+001F, U+007F–U+009F) except what the rule allows,
/// and the line/paragraph separators U+2028/U+2029, which break line-based
/// consumers of JSON. (Lone surrogates cannot occur in a Rust string.)
pub fn is_forbidden(c: char, rule: Text) -> bool {
    match c {
        '\n' | '\r' | '\t' => rule == Text::SingleLine,
        '\u{2028}' | '\u{2029}' => true,
        c => c.is_control(),
    }
}

/// The first character in `s` that `rule` forbids.
pub fn forbidden_char(s: &str, rule: Text) -> Option<char> {
    s.chars().find(|&c| is_forbidden(c, rule))
}

/// The violation message for `c`; it names the code point, never echoes it.
pub fn control_message(c: char) -> String {
    format!(
        "must not contain control characters (found U+{:04X})",
        u32::from(c)
    )
}

/// `Err(message)` when `s` holds a character `rule` forbids.
pub fn check_text(s: &str, rule: Text) -> Result<(), String> {
    forbidden_char(s, rule).map_or(Ok(()), |c| Err(control_message(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_forbids_every_control_character() {
        for c in (0u32..=0x1F).chain(0x7F..=0x9F).filter_map(char::from_u32) {
            assert!(is_forbidden(c, Text::SingleLine), "U+{:04X}", u32::from(c));
        }
        for c in ['\u{2028}', '\u{2029}'] {
            assert!(is_forbidden(c, Text::SingleLine));
            assert!(is_forbidden(c, Text::MultiLine));
        }
        for c in [' ', 'a', 'ã', '€', '\u{200B}', '\u{FEFF}', '🎬', '\u{A0}'] {
            assert!(!is_forbidden(c, Text::SingleLine), "{c:?}");
        }
    }

    #[test]
    fn multi_line_allows_only_newlines_and_tabs() {
        for c in ['\n', '\r', '\t'] {
            assert!(!is_forbidden(c, Text::MultiLine));
        }
        for c in ['\0', '\u{7}', '\u{1B}', '\u{7F}', '\u{85}', '\u{9F}'] {
            assert!(is_forbidden(c, Text::MultiLine), "{c:?}");
        }
        assert_eq!(check_text("line 1\r\nline\t2", Text::MultiLine), Ok(()));
    }

    #[test]
    fn the_message_names_the_code_point() {
        assert_eq!(
            check_text("Bad\u{0}Name", Text::SingleLine),
            Err("must not contain control characters (found U+0000)".into())
        );
        assert_eq!(
            forbidden_char("a\u{85}b\u{0}", Text::MultiLine),
            Some('\u{85}')
        );
        assert_eq!(forbidden_char("a\nb", Text::SingleLine), Some('\n'));
    }
}
