//! Reading an `offlineData` payload (or any one-line text) from standard input, shared by the `sign`
//! and `qr` commands.

use std::io::Read as _;

/// Reads the whole of stdin; one trailing `\n` (or `\r\n`) is dropped, since `offlineData` never
/// ends with a newline but `echo` and `jq -r` add one.
pub fn read_stdin() -> Result<String, std::io::Error> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    Ok(strip_one_newline(text))
}

/// Drops one trailing `\n` or `\r\n`.
pub fn strip_one_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_newline_is_stripped() {
        assert_eq!(strip_one_newline("a\nb\n".into()), "a\nb");
        assert_eq!(strip_one_newline("a\r\n".into()), "a");
        assert_eq!(strip_one_newline("a\n\n".into()), "a\n");
        assert_eq!(strip_one_newline("a".into()), "a");
    }
}
