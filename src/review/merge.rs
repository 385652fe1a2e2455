//! Merge-join of two key-ordered row streams: each key is seen once, as present in the
//! old stream only, the new one only, or both. Memory stays at one row per side.

use std::cmp::Ordering;

use crate::c1z::Result;

/// Where a key was found.
pub(crate) enum Side<T> {
    /// Only in the old snapshot.
    Old(T),
    /// Only in the new snapshot.
    New(T),
    /// In both.
    Both(T, T),
}

impl<T> Side<T> {
    /// A key present on one side only: its row, and whether it is the new side's.
    /// `None` for a key in both.
    pub(crate) fn one_sided(self) -> Option<(T, bool)> {
        match self {
            Side::Old(x) => Some((x, false)),
            Side::New(x) => Some((x, true)),
            Side::Both(..) => None,
        }
    }
}

/// Walks `old` and `new` (both ascending by `key`) together, calling `f` per key.
pub(crate) fn merge_join<T, E>(
    mut old: impl Iterator<Item = Result<T>>,
    mut new: impl Iterator<Item = Result<T>>,
    key: fn(&T) -> &str,
    mut f: impl FnMut(Side<T>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E>
where
    E: From<crate::c1z::C1zError>,
{
    let mut a = old.next().transpose()?;
    let mut b = new.next().transpose()?;
    loop {
        match (a.take(), b.take()) {
            (None, None) => return Ok(()),
            (Some(x), None) => {
                f(Side::Old(x))?;
                a = old.next().transpose()?;
            }
            (None, Some(y)) => {
                f(Side::New(y))?;
                b = new.next().transpose()?;
            }
            (Some(x), Some(y)) => match key(&x).cmp(key(&y)) {
                Ordering::Less => {
                    f(Side::Old(x))?;
                    a = old.next().transpose()?;
                    b = Some(y);
                }
                Ordering::Greater => {
                    f(Side::New(y))?;
                    b = new.next().transpose()?;
                    a = Some(x);
                }
                Ordering::Equal => {
                    f(Side::Both(x, y))?;
                    a = old.next().transpose()?;
                    b = new.next().transpose()?;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(old: &[&str], new: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        let it = |v: &[&str]| {
            v.iter()
                .map(|s| Ok(s.to_string()))
                .collect::<Vec<_>>()
                .into_iter()
        };
        merge_join::<String, crate::c1z::C1zError>(
            it(old),
            it(new),
            |s| s.as_str(),
            |side| {
                out.push(match side {
                    Side::Old(x) => format!("-{x}"),
                    Side::New(y) => format!("+{y}"),
                    Side::Both(x, y) => format!("={x}{y}"),
                });
                Ok(())
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn each_key_once_in_order() {
        assert_eq!(
            run(&["a", "c", "d"], &["b", "c", "e"]),
            ["-a", "+b", "=cc", "-d", "+e"]
        );
        assert_eq!(run(&[], &["x"]), ["+x"]);
        assert_eq!(run(&["x"], &[]), ["-x"]);
        assert!(run(&[], &[]).is_empty());
    }
}
