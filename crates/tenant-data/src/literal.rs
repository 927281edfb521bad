//! Statements with their parameters written in as literals, for PostgreSQL's simple query
//! protocol: the tenant's context and the statement then travel as one `Query` message,
//! which the server runs as one implicit transaction — no `BEGIN`, no `COMMIT`, one parse
//! and one reply (`PgServer::query_text_once`).
//!
//! Values are never escaped by hand: each is written by its own `ToSql` (as for a bound
//! parameter), decoded from that binary form, and put in the text as a dollar-quoted string
//! (`$q$…$q$`, whose content the server takes verbatim — no backslash or quote processing,
//! whatever `standard_conforming_strings` says) with an explicit cast to the parameter's
//! declared type. The tag is chosen so the value cannot end the string early. Arrays are
//! written as array literals (`{"a","b"}`) inside the dollar quotes.

use bytes::BytesMut;
use tokio_postgres::types::{IsNull, ToSql, Type};

/// A parameter type this module does not write as a literal (the caller uses bound
/// parameters instead).
#[derive(Debug, thiserror::Error)]
pub enum LiteralError {
    /// Not one of text, bigint, integer, boolean, text[] and bigint[].
    #[error("no literal form for parameter type {0}")]
    Unsupported(String),
    /// The value could not be encoded (e.g. a NUL byte in text, which PostgreSQL refuses
    /// either way).
    #[error("parameter cannot be written: {0}")]
    Value(String),
}

/// A statement parameter with its declared type (as `query_typed` takes them).
pub type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// `sql` with `$1`, `$2`, … replaced by the literals of `params`.
pub fn render(sql: &str, params: &[Param<'_>]) -> Result<String, LiteralError> {
    let lits = params
        .iter()
        .map(|(v, t)| literal(*v, t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = String::with_capacity(sql.len() + lits.iter().map(String::len).sum::<usize>());
    let b = sql.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let prev_word = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if b[i] == b'$' && !prev_word && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let mut j = i + 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let n: usize = sql[i + 1..j].parse().unwrap_or(0);
            let lit = n
                .checked_sub(1)
                .and_then(|k| lits.get(k))
                .ok_or_else(|| LiteralError::Value(format!("no parameter ${n}")))?;
            out.push_str(&sql[copied..i]);
            out.push('(');
            out.push_str(lit);
            out.push(')');
            i = j;
            copied = j;
        } else {
            i += 1;
        }
    }
    out.push_str(&sql[copied..]);
    Ok(out)
}

/// A dollar-quoted string holding `s` verbatim.
///
/// The tag is `$q$` or `$q<n>$`. A tag can end the string early only where the value holds
/// `$q` followed by exactly the tag's digits and then `$` (or the end of the value, where
/// the closing tag's own `$` follows). So the value is scanned once for the digit runs after
/// each `$q`, and the first tag whose digits are not among them is taken: linear in the
/// value, whatever it holds.
pub fn quote(s: &str) -> Result<String, LiteralError> {
    if s.contains('\0') {
        return Err(LiteralError::Value("text holds a NUL byte".into()));
    }
    let b = s.as_bytes();
    let mut taken: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut i = 0;
    while let Some(k) = s[i..].find("$q") {
        let start = i + k + 2;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == b.len() || b[end] == b'$' {
            taken.insert(&s[start..end]);
        }
        i = i + k + 1;
    }
    let digits = (0usize..)
        .map(|n| if n == 0 { String::new() } else { n.to_string() })
        .find(|d| !taken.contains(d.as_str()))
        .unwrap_or_default();
    let tag = format!("$q{digits}$");
    Ok(format!("{tag}{s}{tag}"))
}

fn literal(v: &(dyn ToSql + Sync), ty: &Type) -> Result<String, LiteralError> {
    let cast = cast_of(ty)?;
    let mut buf = BytesMut::new();
    match v
        .to_sql_checked(ty, &mut buf)
        .map_err(|e| LiteralError::Value(e.to_string()))?
    {
        IsNull::Yes => return Ok(format!("NULL::{cast}")),
        IsNull::No => {}
    }
    let raw = &buf[..];
    let body = match *ty {
        Type::TEXT | Type::VARCHAR => quote(text(raw)?)?,
        // In parentheses: `-9223372036854775808::bigint` would cast before negating.
        Type::INT8 => format!("({})", int8(raw)?),
        Type::INT4 => format!("({})", int4(raw)?),
        Type::BOOL => (raw.first() == Some(&1)).to_string(),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::INT8_ARRAY => quote(&array(raw, ty)?)?,
        _ => return Err(LiteralError::Unsupported(ty.name().to_owned())),
    };
    Ok(format!("{body}::{cast}"))
}

fn cast_of(ty: &Type) -> Result<&'static str, LiteralError> {
    Ok(match *ty {
        Type::TEXT | Type::VARCHAR => "text",
        Type::INT8 => "bigint",
        Type::INT4 => "integer",
        Type::BOOL => "boolean",
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => "text[]",
        Type::INT8_ARRAY => "bigint[]",
        _ => return Err(LiteralError::Unsupported(ty.name().to_owned())),
    })
}

fn bad(what: &str) -> LiteralError {
    LiteralError::Value(format!("malformed {what}"))
}

fn text(raw: &[u8]) -> Result<&str, LiteralError> {
    std::str::from_utf8(raw).map_err(|_| bad("text"))
}

fn int8(raw: &[u8]) -> Result<i64, LiteralError> {
    Ok(i64::from_be_bytes(
        raw.try_into().map_err(|_| bad("bigint"))?,
    ))
}

fn int4(raw: &[u8]) -> Result<i32, LiteralError> {
    Ok(i32::from_be_bytes(
        raw.try_into().map_err(|_| bad("integer"))?,
    ))
}

fn be_i32(raw: &[u8], at: usize) -> Result<i32, LiteralError> {
    raw.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_be_bytes)
        .ok_or_else(|| bad("array"))
}

/// A one-dimensional array in binary form (`ndim`, flags, element type, then length and
/// lower bound, then each element as length + bytes, -1 for NULL) as an array literal.
fn array(raw: &[u8], ty: &Type) -> Result<String, LiteralError> {
    let ndim = be_i32(raw, 0)?;
    if ndim == 0 {
        return Ok("{}".into());
    }
    if ndim != 1 {
        return Err(bad("array (more than one dimension)"));
    }
    let len = usize::try_from(be_i32(raw, 12)?).map_err(|_| bad("array"))?;
    let mut at = 20;
    let mut out = String::from("{");
    for k in 0..len {
        if k > 0 {
            out.push(',');
        }
        let n = be_i32(raw, at)?;
        at += 4;
        if n < 0 {
            out.push_str("NULL");
            continue;
        }
        let n = n as usize;
        let el = raw.get(at..at + n).ok_or_else(|| bad("array"))?;
        at += n;
        if *ty == Type::INT8_ARRAY {
            out.push_str(&int8(el)?.to_string());
        } else {
            let s = text(el)?;
            if s.contains('\0') {
                return Err(LiteralError::Value("text holds a NUL byte".into()));
            }
            out.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
    }
    out.push('}');
    Ok(out)
}

/// Typed reads of a simple-protocol row (its values are text).
pub trait TextRow {
    /// Column `i` as text (`None` for NULL).
    fn text(&self, i: usize) -> Option<String>;
    /// Column `i` as a bigint.
    fn int(&self, i: usize) -> crate::Result<i64>;
    /// Column `i` as a boolean (`t`/`f`).
    fn flag(&self, i: usize) -> crate::Result<bool>;
}

impl TextRow for tokio_postgres::SimpleQueryRow {
    fn text(&self, i: usize) -> Option<String> {
        self.get(i).map(str::to_owned)
    }

    fn int(&self, i: usize) -> crate::Result<i64> {
        self.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| crate::DataError::Db(format!("column {i} is not a bigint")))
    }

    fn flag(&self, i: usize) -> crate::Result<bool> {
        match self.get(i) {
            Some("t") => Ok(true),
            Some("f") => Ok(false),
            _ => Err(crate::DataError::Db(format!("column {i} is not a boolean"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_typed_literals() {
        let (t, i, b, n): (&str, i64, bool, Option<i64>) = ("it's a \\ $q$ test", -5, true, None);
        let arr = vec![Some("a\"b"), None, Some("c\\d"), Some("")];
        let ints: Vec<i64> = vec![1, -2];
        let empty: Vec<&str> = vec![];
        let s = render(
            "SELECT $1, $2, $3, $4, $5, $6, $7, x$1 FROM t WHERE a = $10",
            &[
                (&t, Type::TEXT),
                (&i, Type::INT8),
                (&b, Type::BOOL),
                (&n, Type::INT8),
                (&arr, Type::TEXT_ARRAY),
                (&ints, Type::INT8_ARRAY),
                (&empty, Type::TEXT_ARRAY),
                (&t, Type::TEXT),
                (&t, Type::TEXT),
                (&i, Type::INT8),
            ],
        )
        .unwrap();
        assert_eq!(
            s,
            "SELECT ($q1$it's a \\ $q$ test$q1$::text), ((-5)::bigint), (true::boolean), \
             (NULL::bigint), ($q${\"a\\\"b\",NULL,\"c\\\\d\",\"\"}$q$::text[]), \
             ($q${1,-2}$q$::bigint[]), ($q${}$q$::text[]), x$1 FROM t WHERE a = ((-5)::bigint)"
        );
    }

    #[test]
    fn the_closing_tag_is_never_inside_the_value() {
        for s in ["", "$", "$q", "a$q", "$q$", "x$q$q1$", "$q1$$q$"] {
            let q = quote(s).unwrap();
            let tag_end = q[1..].find('$').unwrap() + 2;
            let tag = &q[..tag_end];
            assert!(q.ends_with(tag));
            // The first occurrence of the tag after the opening one is the closing one.
            assert_eq!(
                q[tag_end..].find(tag),
                Some(q.len() - tag_end - tag.len()),
                "{s:?}"
            );
            assert_eq!(&q[tag_end..q.len() - tag.len()], s);
        }
        assert!(quote("a\0b").is_err());
        // Every tag up to a large number taken: still one pass, and a free tag is found.
        let hostile: String = (0..20_000)
            .map(|n| {
                if n == 0 {
                    "$q$".to_owned()
                } else {
                    format!("$q{n}$")
                }
            })
            .collect();
        let q = quote(&hostile).unwrap();
        assert!(q.starts_with("$q20000$") && q.ends_with("$q20000$"));
    }

    #[test]
    fn other_types_are_refused() {
        let j = serde_json_free();
        assert!(matches!(
            render("SELECT $1", &[(&j, Type::FLOAT8)]),
            Err(LiteralError::Unsupported(_))
        ));
    }

    fn serde_json_free() -> f64 {
        1.5
    }
}
