//! Value types with more than one written form, each with its own `Deserialize` so a wrong value
//! gets a message that says what was expected (serde's `untagged` would only say "data did not
//! match any variant"). Messages produced here are final: they reach the user as they are.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::suggest;

pub const DURATION_EXPECTED: &str = "a duration like 30s, 1m30s or 500ms";

/// A humantime duration (`30s`, `1m30s`, `500ms`, `14d`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(DURATION_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                humantime::parse_duration(s.trim()).map(Dur).map_err(|_| {
                    E::custom(format!(
                        "invalid duration {s:?} — expected {DURATION_EXPECTED}"
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration {n} (no unit) — expected {DURATION_EXPECTED}"
                )))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration {n} (no unit) — expected {DURATION_EXPECTED}"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte count: an integer, or a string with a unit (`512KB`, `10MiB`, `1GB`; KB = 1000,
/// KiB = 1024).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

const BYTES_EXPECTED: &str = "a number of bytes or a size like 512KB, 10MiB or 1GB";

pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "tb" | "t" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    if num.is_empty() {
        return None;
    }
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult);
    }
    let f: f64 = num.parse().ok()?;
    let v = f * mult as f64;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v.round() as u64)
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(BYTES_EXPECTED)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n).map(ByteSize).map_err(|_| {
                    E::custom(format!("invalid byte size {n} — expected {BYTES_EXPECTED}"))
                })
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                parse_bytes(s).map(ByteSize).ok_or_else(|| {
                    E::custom(format!(
                        "invalid byte size {s:?} — expected {BYTES_EXPECTED}"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A string written as any scalar: label and header values like `tier: 1` mean "1".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text, E> {
                Ok(Text(s.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Text, E> {
                Ok(Text(n.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Text, E> {
                Ok(Text(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Text, E> {
                Ok(Text(n.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Text, E> {
                Ok(Text(b.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One string or a list of them (`resolver:`, `expect.body.contains`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![s.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut v = Vec::new();
                while let Some(Text(s)) = seq.next_element::<Text>()? {
                    v.push(s);
                }
                Ok(OneOrMany(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// An accepted status: one code or a class (`"2xx"`), as an inclusive range.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct StatusItem {
    pub lo: u16,
    pub hi: u16,
}

const STATUS_EXPECTED: &str = "a status code (100–599) like 200, or a class like \"2xx\"";

fn status_from_str(s: &str) -> Option<StatusItem> {
    let s = s.trim();
    if !s.is_ascii() {
        return None;
    }
    if s.len() == 3 && s[1..].eq_ignore_ascii_case("xx") {
        let d = s[..1].parse::<u16>().ok().filter(|d| (1..=5).contains(d))?;
        return Some(StatusItem {
            lo: d * 100,
            hi: d * 100 + 99,
        });
    }
    let n = s.parse::<u16>().ok().filter(|n| (100..=599).contains(n))?;
    Some(StatusItem { lo: n, hi: n })
}

impl<'de> Deserialize<'de> for StatusItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StatusItem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(STATUS_EXPECTED)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<StatusItem, E> {
                match u16::try_from(n) {
                    Ok(c) if (100..=599).contains(&c) => Ok(StatusItem { lo: c, hi: c }),
                    _ => Err(E::custom(format!(
                        "invalid status {n} — expected {STATUS_EXPECTED}"
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<StatusItem, E> {
                Err(E::custom(format!(
                    "invalid status {n} — expected {STATUS_EXPECTED}"
                )))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StatusItem, E> {
                status_from_str(s).ok_or_else(|| {
                    E::custom(format!("invalid status {s:?} — expected {STATUS_EXPECTED}"))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `status:` — one item or a list mixing codes and classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSpec(pub Vec<StatusItem>);

impl<'de> Deserialize<'de> for StatusSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StatusSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{STATUS_EXPECTED}, or a list of them")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<StatusSpec, E> {
                StatusItem::deserialize(de::value::U64Deserializer::new(n))
                    .map(|s| StatusSpec(vec![s]))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<StatusSpec, E> {
                StatusItem::deserialize(de::value::I64Deserializer::new(n))
                    .map(|s| StatusSpec(vec![s]))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StatusSpec, E> {
                StatusItem::deserialize(de::value::StrDeserializer::new(s))
                    .map(|s| StatusSpec(vec![s]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StatusSpec, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<StatusItem>()? {
                    v.push(s);
                }
                if v.is_empty() {
                    return Err(de::Error::custom(format!(
                        "empty status list — expected {STATUS_EXPECTED}, or a list of them"
                    )));
                }
                Ok(StatusSpec(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping that keeps the order it was written in (labels, headers, vars).
#[derive(Clone, Debug, PartialEq)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<V>, A::Error> {
                let mut v = Vec::new();
                while let Some((Text(k), val)) = map.next_entry::<Text, V>()? {
                    v.push((k, val));
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(Vis(std::marker::PhantomData))
    }
}

/// A template variable: a string, number or boolean.
#[derive(Clone, Debug, PartialEq)]
pub enum VarValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl<'de> Deserialize<'de> for VarValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = VarValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<VarValue, E> {
                Ok(VarValue::Str(s.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<VarValue, E> {
                i64::try_from(n)
                    .map(VarValue::Int)
                    .or(Ok(VarValue::Float(n as f64)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<VarValue, E> {
                Ok(VarValue::Int(n))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<VarValue, E> {
                Ok(VarValue::Float(n))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<VarValue, E> {
                Ok(VarValue::Bool(b))
            }
        }
        d.deserialize_any(V)
    }
}

/// Enums written as one word: each gets a visitor that names the accepted words and suggests
/// the closest one (`ipv4` → did you mean `ip4`?).
macro_rules! word_enum {
    ($(#[$m:meta])* $name:ident { $($word:literal => $variant:ident),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Copy, Clone, Debug, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const WORDS: &'static [&'static str] = &[$($word),+];
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        write!(f, "one of: {}", $name::WORDS.join(", "))
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$name, E> {
                        match s {
                            $($word => Ok($name::$variant),)+
                            _ => Err(E::custom(format!(
                                "unknown value `{s}`{}",
                                suggest::hint(s, $name::WORDS)
                            ))),
                        }
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

word_enum!(
    /// `preferred_ip_protocol`.
    IpProto { "auto" => Auto, "ip4" => Ip4, "ip6" => Ip6 }
);
word_enum!(
    /// `transport_protocol` of dns steps.
    Transport { "udp" => Udp, "tcp" => Tcp }
);
word_enum!(
    /// `session:` — `per_run` (default): every run connects anew; `persistent`: connections live
    /// across runs.
    SessionWord { "per_run" => PerRun, "persistent" => Persistent }
);
word_enum!(
    /// `tls_config.min_version` / `max_version`.
    TlsVersionWord { "TLS12" => Tls12, "TLS13" => Tls13 }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("512KB"), Some(512_000));
        assert_eq!(parse_bytes("10MiB"), Some(10 * 1024 * 1024));
        assert_eq!(parse_bytes("1GB"), Some(1_000_000_000));
        assert_eq!(parse_bytes("1.5 KiB"), Some(1536));
        assert_eq!(parse_bytes("100"), Some(100));
        assert_eq!(parse_bytes("10 parsecs"), None);
        assert_eq!(parse_bytes("MiB"), None);
    }

    #[test]
    fn status_classes() {
        assert_eq!(
            status_from_str("2xx"),
            Some(StatusItem { lo: 200, hi: 299 })
        );
        assert_eq!(
            status_from_str("404"),
            Some(StatusItem { lo: 404, hi: 404 })
        );
        assert_eq!(status_from_str("6xx"), None);
        assert_eq!(status_from_str("99"), None);
        assert_eq!(status_from_str("é1"), None);
    }
}
