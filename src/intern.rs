//! Shared copies of values made from text: thousands of scenarios of one shape make the same
//! values (a step's name, a compiled JSONPath) again and again, and each copy is held for the
//! scenario's life. An [`Interner`] hands out one `Arc` per text and forgets the values nobody
//! holds any more whenever its table has doubled since it last looked, so texts that come and
//! go (a reload renaming steps, a path rendered per run) do not pile up.

use std::collections::HashMap;
use std::sync::Arc;

/// One shared value per text.
pub struct Interner<V> {
    values: HashMap<String, Arc<V>>,
    /// Size of the table after the last sweep.
    swept: usize,
}

impl<V> Default for Interner<V> {
    fn default() -> Self {
        Interner {
            values: HashMap::new(),
            swept: 0,
        }
    }
}

impl<V> Interner<V> {
    /// The shared value of `text`, made by `make` when there is none; an error is not kept.
    pub fn get_or_try<E>(
        &mut self,
        text: &str,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        if let Some(v) = self.values.get(text) {
            return Ok(v.clone());
        }
        if self.values.len() >= 2 * self.swept.max(32) {
            self.values.retain(|_, v| Arc::strong_count(v) > 1);
            self.swept = self.values.len();
        }
        let v = Arc::new(make()?);
        self.values.insert(text.to_string(), v.clone());
        Ok(v)
    }

    /// Texts kept.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_text_and_unheld_ones_are_swept() {
        let mut t: Interner<String> = Interner::default();
        let ok = |s: &str| Ok::<_, ()>(s.to_string());
        let kept = t.get_or_try("kept", || ok("kept")).unwrap();
        for i in 0..1000 {
            let text = format!("gone-{i}");
            drop(t.get_or_try(&text, || ok(&text)).unwrap());
        }
        assert!(t.len() <= 64, "{} texts kept", t.len());
        let again = t.get_or_try("kept", || ok("made again")).unwrap();
        assert!(Arc::ptr_eq(&kept, &again));
        assert_eq!(t.get_or_try("bad", || Err("no")), Err("no"));
        assert!(t.get_or_try("bad", || ok("fine")).is_ok());
    }
}
