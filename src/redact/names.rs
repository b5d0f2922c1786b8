//! Which parameter names look like credentials: by the words they are made of, so
//! `access_token`, `accessToken`, `X-Amz-Signature` and `api%5Fkey` are caught and `monkey`,
//! `keyword` or `page` are not.

/// Words that make a name a credential wherever they stand in it.
const WORDS: &[&str] = &[
    "token",
    "key",
    "apikey",
    "secret",
    "sig",
    "signature",
    "password",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "session",
    "sessionid",
    "sid",
    "jwt",
    "bearer",
    "otp",
    "cookie",
];

/// Endings that make a glued word a credential (`accesstoken`, `clientsecret`); `key` is not
/// among them, or `monkey` and `hockey` would be.
const SUFFIXES: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "credential",
    "credentials",
    "apikey",
    "sessionid",
    "passphrase",
];

/// Whether a query (or fragment) parameter named `name` — as written, percent-encoded or not —
/// looks like it carries a credential. Case does not matter.
pub fn is_credential_name(name: &str) -> bool {
    let decoded = percent_decode(name);
    words(&decoded).iter().any(|w| {
        WORDS.contains(&w.as_str()) || SUFFIXES.iter().any(|s| w.len() > s.len() && w.ends_with(s))
    })
}

/// `%5F` → `_`, `+` → space; invalid escapes stay as written.
fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(s.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

/// Lower-cased words: split at anything not alphanumeric and where a lower-case letter or
/// digit is followed by an upper-case one (`accessToken` → `access`, `token`).
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in s.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_names_by_their_words() {
        for n in [
            "token",
            "access_token",
            "accessToken",
            "ACCESS_TOKEN",
            "key",
            "api_key",
            "apikey",
            "APIKEY",
            "api-key",
            "secret",
            "client_secret",
            "sig",
            "signature",
            "X-Amz-Signature",
            "x-amz-credential",
            "X-Amz-Security-Token",
            "password",
            "passwd",
            "pwd",
            "auth",
            "authorization",
            "credential",
            "session",
            "session_id",
            "sessionId",
            "AWSAccessKeyId",
            "access%5Ftoken",
            "%74oken",
            "auth+token",
        ] {
            assert!(is_credential_name(n), "{n} should be a credential name");
        }
        for n in [
            "q", "page", "monkey", "keyword", "limit", "next", "tokenize", "signed", "author",
            "sort", "", "%", "%zz",
        ] {
            assert!(
                !is_credential_name(n),
                "{n} should not be a credential name"
            );
        }
    }
}
