//! Search parameters read from the query: names, modifiers, prefixes, value lists (bounded),
//! result parameters; every problem an [`Issue`].

use super::*;

/// Most results per page.
pub const MAX_COUNT: usize = 1000;
/// Default page size.
pub const DEFAULT_COUNT: usize = 20;

/// Parameters understood by [`parse`] besides the search parameters.
pub const RESULT_PARAMS: &[&str] = &[
    "_count",
    "_sort",
    "_total",
    "_summary",
    "_include",
    "_revinclude",
    "_elements",
    "_cursor",
    "_format",
    "_pretty",
];

pub(crate) fn prefix_of(v: &str) -> (Prefix, &str) {
    let ps = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("lt", Prefix::Lt),
        ("gt", Prefix::Gt),
        ("le", Prefix::Le),
        ("ge", Prefix::Ge),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    for (s, p) in ps {
        if let Some(rest) = v.strip_prefix(s)
            && rest.starts_with(|c: char| c.is_ascii_digit())
        {
            return (p, rest);
        }
    }
    (Prefix::Eq, v)
}

/// Most values one parameter may list (`identifier=a,b,…`): a longer OR list is refused
/// with a clear error instead of reaching the database.
pub const MAX_VALUES_PER_PARAM: usize = 100;
/// Most values across all parameters of one search.
pub const MAX_VALUES_PER_SEARCH: usize = 400;

use crate::resource::forbidden_control;

/// Splits a comma-separated value list (`\,` escapes a comma).
pub(crate) fn split_values(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut esc = false;
    for c in v.chars() {
        match (esc, c) {
            (true, c) => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
                esc = false;
            }
            (false, '\\') => esc = true,
            (false, ',') => out.push(String::new()),
            (false, c) => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

pub(crate) fn issue(loc: &str, msg: impl Into<String>) -> Issue {
    Issue {
        location: loc.to_owned(),
        diagnostics: msg.into(),
    }
}

/// Parses the query parameters of a search on `rtype`. Returns the query and the
/// parameters it ignored (unknown ones); with `strict`, unknown parameters are errors.
pub fn parse(
    rtype: ResourceType,
    params: &[(String, String)],
    strict: bool,
) -> std::result::Result<(Query, Vec<String>), Vec<Issue>> {
    let mut q = Query {
        rtype,
        filters: Vec::new(),
        sort: Sort::Id,
        count: DEFAULT_COUNT,
        after: None,
        total: false,
        count_only: false,
        includes: Vec::new(),
        revincludes: Vec::new(),
        elements: Vec::new(),
    };
    let mut issues = Vec::new();
    let mut ignored = Vec::new();
    let mut values_seen = 0usize;
    for (k, v) in params {
        if let Some(c) = k.chars().chain(v.chars()).find(|c| forbidden_control(*c)) {
            issues.push(issue(
                k,
                format!("control character U+{:04X} is not allowed", c as u32),
            ));
            continue;
        }
        let n = v.split(',').count();
        values_seen += n;
        if n > MAX_VALUES_PER_PARAM {
            issues.push(issue(
                k,
                format!("at most {MAX_VALUES_PER_PARAM} values per parameter ({n} given)"),
            ));
            continue;
        }
        if values_seen > MAX_VALUES_PER_SEARCH {
            issues.push(issue(
                k,
                format!("at most {MAX_VALUES_PER_SEARCH} values in one search"),
            ));
            break;
        }
        let (name, modifier) = match k.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (k.as_str(), None),
        };
        match name {
            "_count" => match v.parse::<usize>() {
                Ok(n) => q.count = n.clamp(1, MAX_COUNT),
                Err(_) => issues.push(issue("_count", "must be a positive number")),
            },
            "_sort" => {
                q.sort = match v.as_str() {
                    "_lastUpdated" => Sort::LastUpdated,
                    "-_lastUpdated" => Sort::LastUpdatedDesc,
                    "_id" => Sort::Id,
                    _ => {
                        issues.push(issue(
                            "_sort",
                            "supported: _id, _lastUpdated, -_lastUpdated",
                        ));
                        Sort::Id
                    }
                }
            }
            "_total" => q.total = v == "accurate" || v == "estimate",
            "_summary" => {
                if v == "count" {
                    q.count_only = true;
                    q.total = true;
                } else if v != "false" {
                    ignored.push(k.clone());
                }
            }
            "_elements" => {
                q.elements = v
                    .split(',')
                    .map(|e| e.trim().to_owned())
                    .filter(|e| !e.is_empty())
                    .collect()
            }
            "_include" | "_revinclude" => {
                let mut it = v.split(':');
                let src = it.next().and_then(ResourceType::parse);
                let prm = it.next();
                match (src, prm) {
                    (Some(src), Some(pn)) => match index::param(src.as_str(), pn) {
                        Some(p) if p.kind == Kind::Reference => {
                            let inc = Include {
                                source: src,
                                param: p.name,
                            };
                            if name == "_include" {
                                if src != rtype {
                                    issues.push(issue(
                                        "_include",
                                        format!("must start with {rtype}"),
                                    ));
                                } else {
                                    q.includes.push(inc);
                                }
                            } else {
                                q.revincludes.push(inc);
                            }
                        }
                        _ => issues.push(issue(
                            name,
                            format!("{pn} is not a reference parameter of {src}"),
                        )),
                    },
                    _ => issues.push(issue(name, "expected Type:parameter")),
                }
            }
            "_cursor" | "_format" | "_pretty" => {}
            "_id" => {
                let vals: Vec<Cond> = split_values(v).into_iter().map(Cond::Id).collect();
                if !vals.is_empty() {
                    q.filters.push(Filter {
                        param: "_id",
                        any_of: vals,
                    });
                }
            }
            "_lastUpdated" => {
                let mut any = Vec::new();
                for val in split_values(v) {
                    let (p, d) = prefix_of(&val);
                    match index::date_range(d) {
                        Some((lo, hi)) => any.push(Cond::LastUpdated(p, lo, hi)),
                        None => issues.push(issue("_lastUpdated", "not a FHIR date")),
                    }
                }
                if !any.is_empty() {
                    q.filters.push(Filter {
                        param: "_lastUpdated",
                        any_of: any,
                    });
                }
            }
            _ => {
                let Some(p) = index::param(rtype.as_str(), name) else {
                    ignored.push(k.clone());
                    continue;
                };
                let mut any = Vec::new();
                for val in split_values(v) {
                    match (p.kind, modifier) {
                        (Kind::Token, None) => {
                            let c = match val.split_once('|') {
                                None => Cond::Token {
                                    system: None,
                                    code: Some(val.clone()),
                                },
                                Some(("", code)) => Cond::Token {
                                    system: Some(None),
                                    code: Some(code.to_owned()),
                                },
                                Some((sys, "")) => Cond::Token {
                                    system: Some(Some(sys.to_owned())),
                                    code: None,
                                },
                                Some((sys, code)) => Cond::Token {
                                    system: Some(Some(sys.to_owned())),
                                    code: Some(code.to_owned()),
                                },
                            };
                            any.push(c);
                        }
                        (Kind::String, m) => {
                            let mode = match m {
                                None => StrMode::Starts,
                                Some("exact") => StrMode::Exact,
                                Some("contains") => StrMode::Contains,
                                Some(other) => {
                                    issues.push(issue(k, format!("unsupported modifier :{other}")));
                                    continue;
                                }
                            };
                            any.push(Cond::Str(mode, val.clone()));
                        }
                        (Kind::Date, None) => {
                            let (pf, d) = prefix_of(&val);
                            match index::date_range(d) {
                                Some((lo, hi)) => any.push(Cond::Date(pf, lo, hi)),
                                None => issues.push(issue(k, "not a FHIR date")),
                            }
                        }
                        (Kind::Reference, None) => {
                            let (t, id) = match index::parse_reference(&val) {
                                Some((t, id)) => (Some(t.to_owned()), id.to_owned()),
                                None if crate::resource::valid_id(&val) => {
                                    (p.target.map(str::to_owned), val.clone())
                                }
                                None => {
                                    issues.push(issue(k, "expected an id or Type/id"));
                                    continue;
                                }
                            };
                            any.push(Cond::Ref(t, id));
                        }
                        (_, Some(m)) => {
                            issues.push(issue(k, format!("unsupported modifier :{m}")));
                        }
                    }
                }
                if !any.is_empty() {
                    q.filters.push(Filter {
                        param: p.name,
                        any_of: any,
                    });
                }
            }
        }
    }
    if strict && !ignored.is_empty() {
        for k in &ignored {
            issues.push(issue(
                k,
                "unknown search parameter (Prefer: handling=strict)",
            ));
        }
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    Ok((q, ignored))
}
