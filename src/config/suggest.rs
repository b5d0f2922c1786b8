//! "did you mean `x`?" for misspelt keys and values.

/// The closest candidate, when it is close enough to be a likely typo: a small edit distance
/// relative to the length (`intervall` → `interval`, `ipv4` → `ip4`), or the same word in another
/// case (`get` → `GET`).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase());
        let limit = (c.chars().count().max(word.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `" — did you mean `x`?"` or `" — expected one of: a, b, c"`.
pub fn hint(word: &str, candidates: &[&str]) -> String {
    match closest(word, candidates.iter().copied()) {
        Some(c) => format!(" — did you mean `{c}`?"),
        None => format!(" — expected one of: {}", candidates.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_found() {
        assert_eq!(
            closest("intervall", ["interval", "timeout"]),
            Some("interval")
        );
        assert_eq!(closest("ipv4", ["auto", "ip4", "ip6"]), Some("ip4"));
        assert_eq!(closest("foo", ["interval", "timeout"]), None);
        assert_eq!(closest("get", ["GET", "POST"]), Some("GET"));
    }
}
