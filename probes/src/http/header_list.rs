//! Headers as a probe reports them (the request as sent, the response as received): every name
//! and value in one text buffer. A `Vec<(String, String)>` cost two allocations per header,
//! about 20 of an http `/probe`'s ~120; this costs two per list, and a report kept for the API
//! holds one buffer instead of a dozen small ones.

use std::fmt;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderList {
    text: String,
    /// Per header, where its name ends and where its value ends in `text`.
    ends: Vec<(usize, usize)>,
}

impl HeaderList {
    /// Room for the headers of `map` and `extra` more bytes: one allocation each for the text
    /// and the offsets when the list is made from that map.
    pub fn sized_for(map: &http::HeaderMap, extra: usize) -> Self {
        let bytes: usize = map.iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
        HeaderList {
            text: String::with_capacity(bytes + extra),
            ends: Vec::with_capacity(map.len() + usize::from(extra > 0)),
        }
    }

    pub fn push(&mut self, name: &str, value: &str) {
        self.text.push_str(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        self.ends.push((name_end, self.text.len()));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// (name, value) pairs in the order they were pushed.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone + '_ {
        self.ends.iter().enumerate().map(|(i, &(name_end, end))| {
            let start = i.checked_sub(1).map_or(0, |p| self.ends[p].1);
            (&self.text[start..name_end], &self.text[name_end..end])
        })
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for HeaderList {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> Self {
        let mut list = HeaderList::default();
        for (n, v) in pairs {
            list.push(n.as_ref(), v.as_ref());
        }
        list
    }
}

/// The real values of the response headers a report shows redacted (`Set-Cookie`, tokens…).
/// `Debug` names them with their values redacted, so a facts dump in a log line or a test's
/// failure message never prints a session cookie.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretHeaders(pub HeaderList);

impl std::ops::Deref for SecretHeaders {
    type Target = HeaderList;

    fn deref(&self) -> &HeaderList {
        &self.0
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for SecretHeaders {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> Self {
        SecretHeaders(pairs.into_iter().collect())
    }
}

impl fmt::Debug for SecretHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(n, _)| (n, super::REDACTED)))
            .finish()
    }
}

impl fmt::Debug for HeaderList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// As the `Vec<(String, String)>` it replaced: a list of `[name, value]` pairs.
impl serde::Serialize for HeaderList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_come_back_in_order_and_serialize_as_before() {
        let list: HeaderList = [("a", "1"), ("", ""), ("Set-Cookie", "x=y; Path=/")]
            .into_iter()
            .collect();
        let pairs: Vec<_> = list.iter().collect();
        assert_eq!(pairs, [("a", "1"), ("", ""), ("Set-Cookie", "x=y; Path=/")]);
        assert_eq!(list.len(), 3);
        let old: Vec<(String, String)> = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            serde_json::to_string(&old).unwrap()
        );
        assert_eq!(format!("{list:?}"), format!("{pairs:?}"));
    }

    #[test]
    fn secret_values_stay_out_of_debug_output() {
        let secret: SecretHeaders = [("set-cookie", "session=s3cr3t")].into_iter().collect();
        assert_eq!(secret.iter().next(), Some(("set-cookie", "session=s3cr3t")));
        assert_eq!(format!("{secret:?}"), r#"[("set-cookie", "<redacted>")]"#);
        let facts = super::super::HttpFacts {
            secret_headers: secret,
            ..Default::default()
        };
        assert!(!format!("{facts:?}").contains("s3cr3t"));
    }
}
