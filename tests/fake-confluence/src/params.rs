//! Query-string access that keeps repeated keys (`accountId=a&accountId=b`).

pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Self {
        Params(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Comma-separated and repeated values of `key`, flattened.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.all(key)
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// A non-negative number, `default` when absent; `Err` carries the bad text.
    pub fn number(&self, key: &str, default: usize) -> Result<usize, String> {
        match self.get(key) {
            None | Some("") => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| v.to_owned()),
        }
    }

    pub fn flag(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// Whether `expand` names `what` (comma-separated, possibly repeated).
    pub fn expands(&self, what: &str) -> bool {
        self.list("expand").iter().any(|e| e == what)
    }
}
