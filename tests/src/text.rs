//! Small text helpers shared by process logs and CLI output.

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Removes ANSI escape sequences (colours) from log text.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameters and intermediates, then one final byte in @..~
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Parses a number that may carry thousands separators (`999,920`, `1_000`).
pub fn parse_grouped(text: &str) -> Option<u64> {
    text.trim().replace([',', '_'], "").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_strips_and_parses() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(strip_ansi("\u{1b}[32mINFO\u{1b}[0m x"), "INFO x");
        assert_eq!(parse_grouped(" 1,000,000 "), Some(1_000_000));
        assert_eq!(parse_grouped("x"), None);
    }
}
