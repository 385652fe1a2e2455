//! The CQL subset `search/user` understands: `type=user`, `user="id"`,
//! `user IN ("a","b")`, `user.accountid="id"`, `user.fullname~"jo"`, joined by `and`/`or`.

use crate::model::User;

#[derive(Debug, PartialEq)]
pub enum CqlError {
    /// Unparsable query: 400.
    Syntax(String),
    /// `~""`: Confluence answers 500.
    EmptyFuzzy,
}

#[derive(Debug)]
enum Cond {
    TypeIs(String),
    AccountIn(Vec<String>),
    NamePrefix(String),
    /// A field the fake does not know: matches nothing, as Confluence does.
    Nothing,
}

/// Disjunction of conjunctions.
#[derive(Debug)]
pub struct Query(Vec<Vec<Cond>>);

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(String),
    Open,
    Close,
    Comma,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, CqlError> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                out.push(Tok::Close);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '=' | '~' => {
                out.push(Tok::Op(c.to_string()));
                i += 1
            }
            '!' => {
                let op: String = chars[i..].iter().take(2).collect();
                out.push(Tok::Op(op));
                i += 2
            }
            '"' | '\'' => {
                let mut j = i + 1;
                let mut v = String::new();
                while j < chars.len() && chars[j] != c {
                    if chars[j] == '\\' && j + 1 < chars.len() {
                        j += 1;
                    }
                    v.push(chars[j]);
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(CqlError::Syntax("unterminated string".into()));
                }
                out.push(Tok::Str(v));
                i = j + 1;
            }
            _ => {
                let mut j = i;
                let mut v = String::new();
                while j < chars.len()
                    && !chars[j].is_whitespace()
                    && !"()=,~!\"'".contains(chars[j])
                {
                    v.push(chars[j]);
                    j += 1;
                }
                out.push(Tok::Word(v));
                i = j;
            }
        }
    }
    Ok(out)
}

fn value(t: Option<&Tok>) -> Result<String, CqlError> {
    match t {
        Some(Tok::Str(s)) | Some(Tok::Word(s)) => Ok(s.clone()),
        other => Err(CqlError::Syntax(format!("expected a value, got {other:?}"))),
    }
}

pub fn parse(cql: &str) -> Result<Query, CqlError> {
    let toks = tokenize(cql)?;
    let mut pos = 0;
    let mut ors = vec![Vec::new()];
    loop {
        let field = match toks.get(pos) {
            Some(Tok::Word(w)) => w.to_lowercase(),
            other => return Err(CqlError::Syntax(format!("expected a field, got {other:?}"))),
        };
        pos += 1;
        let op = match toks.get(pos) {
            Some(Tok::Op(o)) => o.clone(),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in") => "in".to_owned(),
            other => {
                return Err(CqlError::Syntax(format!(
                    "expected an operator, got {other:?}"
                )));
            }
        };
        pos += 1;
        let values = if op == "in" {
            if toks.get(pos) != Some(&Tok::Open) {
                return Err(CqlError::Syntax("expected (".into()));
            }
            pos += 1;
            let mut vs = Vec::new();
            loop {
                vs.push(value(toks.get(pos))?);
                pos += 1;
                match toks.get(pos) {
                    Some(Tok::Comma) => pos += 1,
                    Some(Tok::Close) => {
                        pos += 1;
                        break;
                    }
                    other => {
                        return Err(CqlError::Syntax(format!("expected , or ), got {other:?}")));
                    }
                }
            }
            vs
        } else {
            let v = value(toks.get(pos))?;
            pos += 1;
            vec![v]
        };
        let cond = match (field.as_str(), op.as_str()) {
            ("type", "=") => Cond::TypeIs(values.concat().to_lowercase()),
            ("type", "in") => {
                if values.iter().any(|v| v.eq_ignore_ascii_case("user")) {
                    Cond::TypeIs("user".into())
                } else {
                    Cond::Nothing
                }
            }
            ("user" | "user.accountid", "=" | "in") => Cond::AccountIn(values),
            ("user.fullname", "~") => {
                let v = values.concat();
                if v.trim().is_empty() {
                    return Err(CqlError::EmptyFuzzy);
                }
                Cond::NamePrefix(v.to_lowercase())
            }
            (_, "=" | "~" | "in" | "!=") => Cond::Nothing,
            (_, other) => return Err(CqlError::Syntax(format!("unknown operator {other}"))),
        };
        if let Some(last) = ors.last_mut() {
            last.push(cond);
        }
        match toks.get(pos) {
            None => break,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("or") => {
                ors.push(Vec::new());
                pos += 1;
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("and") => pos += 1,
            other => return Err(CqlError::Syntax(format!("unexpected {other:?}"))),
        }
    }
    Ok(Query(ors))
}

impl Query {
    pub fn matches(&self, u: &User) -> bool {
        self.0.iter().any(|all| {
            all.iter().all(|c| match c {
                Cond::TypeIs(t) => t == "user",
                Cond::AccountIn(ids) => ids.contains(&u.account_id),
                Cond::NamePrefix(p) => u
                    .display_name()
                    .to_lowercase()
                    .split_whitespace()
                    .any(|w| w.starts_with(p.as_str())),
                Cond::Nothing => false,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_supported_forms() {
        for q in [
            "type=user",
            "type = \"user\"",
            "user=\"a\"",
            "user IN (\"a\",\"b\")",
            "user.accountid=\"a\" or user.fullname~\"jo\"",
            "type=user and user.fullname~jo",
        ] {
            assert!(parse(q).is_ok(), "{q}");
        }
        assert_eq!(
            parse("user.fullname~\"\"").err(),
            Some(CqlError::EmptyFuzzy)
        );
        assert!(matches!(parse("type="), Err(CqlError::Syntax(_))));
    }
}
