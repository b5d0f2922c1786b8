//! Which part of a rendered template came from a secret, whatever the template did with it.
//!
//! A template that uses a secret (`env`, `file()`, a secret var or capture) is rendered again
//! with every secret replaced by a stand-in that differs from it at every character
//! ([`perturb`]), [`SHADOWS`] times. What differs between the real output and the stand-ins'
//! ([`derived`]) is what the secret decided: `urlencode`, `base64`, `sha256`, `hmac_sha256`,
//! `upper`, slicing, `~` concatenation, `{% if %}` on it, any filter minijinja has or gains.
//! That part is registered as a secret, so traces show the template's other text (a URL's host
//! and path) and hide exactly the derived value. A stand-in render that fails (a stand-in is not
//! valid base64) marks the whole output secret.
//!
//! Vars keep their stand-in values (a secret var's value under each stand-in), so secrets stay
//! tracked through any chain of vars.

/// How many stand-in renders: two, so a derived character that happens to equal one stand-in's
/// (1 in 16 for a hex digest) still differs from the other's.
pub const SHADOWS: usize = 2;

/// The context key telling `file()` which stand-in render this is: it then returns a stand-in
/// of what it read.
pub const TAINT_KEY: &str = "__taint";

/// Replace minijinja's `default` (and `d`) filter: in a stand-in render, a fallback it uses is
/// replaced by its stand-in too — `{{ env.TOKEN | default('dev-token') }}` renders the written
/// fallback when the variable is unset, and that fallback is then the secret.
pub fn register(env: &mut minijinja::Environment<'static>) {
    env.add_filter("default", default);
    env.add_filter("d", default);
}

fn default(
    state: &minijinja::State,
    value: &minijinja::Value,
    args: minijinja::value::Rest<minijinja::Value>,
) -> Result<minijinja::Value, minijinja::Error> {
    let out = minijinja::filters::default(state, value, args)?;
    let fell_back = value.is_undefined() || &out != value;
    match (
        state.lookup(TAINT_KEY).and_then(|k| k.as_usize()),
        out.as_str(),
    ) {
        (Some(k), Some(text)) if fell_back => Ok(minijinja::Value::from(perturb(text, k))),
        _ => Ok(out),
    }
}

/// The `k`th stand-in of `s`: same length in characters, every character different (letters
/// and digits stay letters and digits, anything else becomes a letter).
pub fn perturb(s: &str, k: usize) -> String {
    let step = (k % 8) as u8 + 1;
    s.chars()
        .map(|c| {
            let rot = |base: u8, n: u8| (base + ((c as u8 - base) + step) % n) as char;
            match c {
                'a'..='z' => rot(b'a', 26),
                'A'..='Z' => rot(b'A', 26),
                '0'..='9' => rot(b'0', 10),
                _ => (b'g' + step) as char,
            }
        })
        .collect()
}

/// The part of `real` that differs from a stand-in render: from the first character where any
/// shadow differs to the last. `None` when they are all equal (or differ only by what `real`
/// lacks). A failed stand-in render (`None`) makes all of `real` derived.
pub fn derived<'a>(real: &'a str, shadows: &[Option<String>]) -> Option<&'a str> {
    let mut region: Option<(usize, usize)> = None;
    for sh in shadows {
        let (start, end) = match sh {
            None => (0, real.len()),
            Some(sh) => {
                let p = common_prefix(real, sh);
                let s = common_suffix(&real[p..], &sh[p..]);
                (p, real.len() - s)
            }
        };
        if start < end {
            region = Some(match region {
                None => (start, end),
                Some((a, b)) => (a.min(start), b.max(end)),
            });
        }
    }
    region.map(|(a, b)| &real[a..b])
}

/// Bytes of the longest common prefix, on a character boundary of both.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or_else(|| a.len().min(b.len()), |((i, _), _)| i)
}

/// Bytes of the longest common suffix, on a character boundary of both.
fn common_suffix(a: &str, b: &str) -> usize {
    let mut n = 0;
    for (x, y) in a.chars().rev().zip(b.chars().rev()) {
        if x != y {
            break;
        }
        n += x.len_utf8();
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_ins_differ_everywhere() {
        let s = "aZ9-@ é";
        for k in 0..SHADOWS {
            let p = perturb(s, k);
            assert_eq!(p.chars().count(), s.chars().count());
            assert!(p.chars().zip(s.chars()).all(|(a, b)| a != b), "{p}");
        }
        assert_ne!(perturb(s, 0), perturb(s, 1));
    }

    #[test]
    fn the_derived_part_is_what_differs() {
        let sh = |v: &[&str]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
        assert_eq!(
            derived(
                "http://h/?t=p%40ss&x=1",
                &sh(&["http://h/?t=qbtt&x=1", "http://h/?t=rcuu&x=1"])
            ),
            Some("p%40ss")
        );
        // One stand-in shares a first character by chance; the other does not.
        assert_eq!(derived("abcdef", &sh(&["aXXXXf", "YYYYYf"])), Some("abcde"));
        assert_eq!(derived("same", &sh(&["same", "same"])), None);
        assert_eq!(derived("ab", &sh(&["abc", "abd"])), None);
        assert_eq!(
            derived("whole", &[None, Some("whole".into())]),
            Some("whole")
        );
        assert_eq!(derived("é1é", &sh(&["é2é", "é3é"])), Some("1"));
    }

    /// Through `Templates`: what reaches the sink is the derived part, whatever the filter,
    /// through a chain of vars too.
    #[test]
    fn templates_register_what_a_secret_decided() {
        use crate::config::error::FileErrors;
        use crate::config::funcs::SecretSink;
        use crate::config::locate::PosIndex;
        use crate::config::template::Templates;
        use crate::config::units::VarValue;

        std::env::set_var("SONDE_TAINT_TEST_SECRET", "p@ss/w0rd");
        let t = Templates::new(None);
        let (sink, sv) = SecretSink::value();
        let mut scope = t.scope("s", std::path::Path::new(""), sv);
        let r = |src: &str, scope: &_| t.render(src, scope).unwrap();
        let out = r(
            "https://h/?q={{ env.SONDE_TAINT_TEST_SECRET | urlencode }}&x=1",
            &scope,
        );
        assert_eq!(out, "https://h/?q=p%40ss%2Fw0rd&x=1");
        assert_eq!(sink.take(), vec!["p%40ss%2Fw0rd"]);
        let out = r(
            "X {{ (env.SONDE_TAINT_TEST_SECRET ~ 'salt') | sha256 }} Y",
            &scope,
        );
        let got = sink.take();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].len(), 64, "{got:?}");
        assert_eq!(out, format!("X {} Y", got[0]));
        r("{{ env.SONDE_TAINT_TEST_SECRET | upper }}", &scope);
        assert_eq!(sink.take(), vec!["P@SS/W0RD"]);
        r("{{ scenario | upper }}", &scope);
        assert!(sink.take().is_empty(), "no secret, nothing registered");
        // An unset variable's written fallback stands for the secret.
        let out = r(
            "k={{ env.SONDE_TAINT_TEST_UNSET | default('fallback-key') | upper }}",
            &scope,
        );
        assert_eq!(out, "k=FALLBACK-KEY");
        assert_eq!(sink.take(), vec!["FALLBACK-KEY"]);

        let vars = [
            (
                "a".to_string(),
                VarValue::Str("user:{{ env.SONDE_TAINT_TEST_SECRET }}".into()),
            ),
            ("b".to_string(), VarValue::Str("{{ a | base64 }}".into())),
            (
                "c".to_string(),
                VarValue::Str("plain {{ scenario }}".into()),
            ),
        ];
        let mut errors = FileErrors::new("f");
        t.add_vars(&mut scope, &vars, "vars", &PosIndex::build(""), &mut errors);
        assert!(errors.is_empty());
        let mut got = sink.take();
        got.sort();
        // `a`'s derived part is the secret itself; of `b`, what the secret decided (the first
        // base64 characters encode `user:`, the padding its length).
        assert_eq!(got, vec!["p@ss/w0rd", "wQHNzL3cwcmQ"]);
        let out = r("https://h/{{ c }}?t={{ b | urlencode }}", &scope);
        assert_eq!(out, "https://h/plain s?t=dXNlcjpwQHNzL3cwcmQ%3D");
        assert_eq!(sink.take(), vec!["wQHNzL3cwcmQ"]);
    }
}
