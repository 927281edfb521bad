//! Search parameters and their extraction at write time.
//!
//! Each supported parameter names the elements it reads (choice types spelled out, e.g.
//! `effectiveDateTime` and `effectivePeriod`). Extraction turns a resource into index rows —
//! tokens (system, code), strings (normalised: lowercase, without diacritics), date ranges
//! (milliseconds, from the value's precision) and references (type, id) — stored beside the
//! resource in the same transaction.

use serde_json::Value;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// What kind of values a parameter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `system|code`.
    Token,
    /// Text, starts-with by default.
    String,
    /// A date or a period, with prefixes.
    Date,
    /// `Type/id`.
    Reference,
}

/// A search parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Resource type (`*` for every type).
    pub rtype: &'static str,
    /// Its name in the query.
    pub name: &'static str,
    /// Kind.
    pub kind: Kind,
    /// Top-level (or dotted) element paths.
    pub paths: &'static [&'static str],
    /// For references: the only target type (e.g. `patient` → `Patient`).
    pub target: Option<&'static str>,
}

const fn p(
    rtype: &'static str,
    name: &'static str,
    kind: Kind,
    paths: &'static [&'static str],
) -> Param {
    Param {
        rtype,
        name,
        kind,
        paths,
        target: None,
    }
}

const fn r(
    rtype: &'static str,
    name: &'static str,
    paths: &'static [&'static str],
    target: Option<&'static str>,
) -> Param {
    Param {
        rtype,
        name,
        kind: Kind::Reference,
        paths,
        target,
    }
}

use Kind::{Date as D, String as S, Token as T};

/// Every supported search parameter (besides `_id` and `_lastUpdated`, which every type
/// has).
pub const PARAMS: &[Param] = &[
    p("*", "identifier", T, &["identifier"]),
    p("Patient", "name", S, &["name"]),
    p("Patient", "family", S, &["name.family"]),
    p("Patient", "given", S, &["name.given"]),
    p("Patient", "birthdate", D, &["birthDate"]),
    p("Patient", "gender", T, &["gender"]),
    r(
        "Patient",
        "general-practitioner",
        &["generalPractitioner"],
        None,
    ),
    r(
        "Patient",
        "organization",
        &["managingOrganization"],
        Some("Organization"),
    ),
    p("Practitioner", "name", S, &["name"]),
    p("Practitioner", "family", S, &["name.family"]),
    p("Practitioner", "given", S, &["name.given"]),
    r(
        "PractitionerRole",
        "practitioner",
        &["practitioner"],
        Some("Practitioner"),
    ),
    r(
        "PractitionerRole",
        "organization",
        &["organization"],
        Some("Organization"),
    ),
    p("Organization", "name", S, &["name", "alias"]),
    p("Location", "name", S, &["name", "alias"]),
    r(
        "Location",
        "organization",
        &["managingOrganization"],
        Some("Organization"),
    ),
    // Clinical resources: patient / subject.
    r("Observation", "patient", &["subject"], Some("Patient")),
    r("Observation", "subject", &["subject"], None),
    r(
        "Observation",
        "encounter",
        &["encounter"],
        Some("Encounter"),
    ),
    p("Observation", "category", T, &["category"]),
    p("Observation", "code", T, &["code"]),
    p(
        "Observation",
        "date",
        D,
        &["effectiveDateTime", "effectivePeriod", "effectiveInstant"],
    ),
    p("Observation", "status", T, &["status"]),
    r("Condition", "patient", &["subject"], Some("Patient")),
    r("Condition", "subject", &["subject"], None),
    r("Condition", "encounter", &["encounter"], Some("Encounter")),
    p("Condition", "category", T, &["category"]),
    p("Condition", "clinical-status", T, &["clinicalStatus"]),
    p(
        "Condition",
        "verification-status",
        T,
        &["verificationStatus"],
    ),
    p("Condition", "code", T, &["code"]),
    p(
        "Condition",
        "onset-date",
        D,
        &["onsetDateTime", "onsetPeriod"],
    ),
    p("Condition", "recorded-date", D, &["recordedDate"]),
    r(
        "AllergyIntolerance",
        "patient",
        &["patient"],
        Some("Patient"),
    ),
    p(
        "AllergyIntolerance",
        "clinical-status",
        T,
        &["clinicalStatus"],
    ),
    p("AllergyIntolerance", "code", T, &["code"]),
    r(
        "MedicationRequest",
        "patient",
        &["subject"],
        Some("Patient"),
    ),
    r("MedicationRequest", "subject", &["subject"], None),
    r(
        "MedicationRequest",
        "encounter",
        &["encounter"],
        Some("Encounter"),
    ),
    p("MedicationRequest", "intent", T, &["intent"]),
    p("MedicationRequest", "status", T, &["status"]),
    p("MedicationRequest", "authoredon", D, &["authoredOn"]),
    p(
        "MedicationRequest",
        "code",
        T,
        &["medicationCodeableConcept"],
    ),
    r("Immunization", "patient", &["patient"], Some("Patient")),
    p("Immunization", "date", D, &["occurrenceDateTime"]),
    p("Immunization", "status", T, &["status"]),
    p("Immunization", "vaccine-code", T, &["vaccineCode"]),
    r("Procedure", "patient", &["subject"], Some("Patient")),
    r("Procedure", "subject", &["subject"], None),
    p("Procedure", "code", T, &["code"]),
    p(
        "Procedure",
        "date",
        D,
        &["performedDateTime", "performedPeriod"],
    ),
    p("Procedure", "status", T, &["status"]),
    r("DiagnosticReport", "patient", &["subject"], Some("Patient")),
    r("DiagnosticReport", "subject", &["subject"], None),
    r(
        "DiagnosticReport",
        "result",
        &["result"],
        Some("Observation"),
    ),
    p("DiagnosticReport", "category", T, &["category"]),
    p("DiagnosticReport", "code", T, &["code"]),
    p(
        "DiagnosticReport",
        "date",
        D,
        &["effectiveDateTime", "effectivePeriod"],
    ),
    p("DiagnosticReport", "status", T, &["status"]),
    r(
        "DocumentReference",
        "patient",
        &["subject"],
        Some("Patient"),
    ),
    r("DocumentReference", "subject", &["subject"], None),
    p("DocumentReference", "category", T, &["category"]),
    p("DocumentReference", "type", T, &["type"]),
    p("DocumentReference", "date", D, &["date"]),
    p("DocumentReference", "status", T, &["status"]),
    r("Encounter", "patient", &["subject"], Some("Patient")),
    r("Encounter", "subject", &["subject"], None),
    p("Encounter", "date", D, &["period"]),
    p("Encounter", "status", T, &["status"]),
    p("Encounter", "class", T, &["class"]),
    p("Encounter", "type", T, &["type"]),
    r("CarePlan", "patient", &["subject"], Some("Patient")),
    p("CarePlan", "status", T, &["status"]),
    p("CarePlan", "category", T, &["category"]),
    r("CareTeam", "patient", &["subject"], Some("Patient")),
    p("CareTeam", "status", T, &["status"]),
    r("Claim", "patient", &["patient"], Some("Patient")),
    r(
        "ExplanationOfBenefit",
        "patient",
        &["patient"],
        Some("Patient"),
    ),
    r("Provenance", "target", &["target"], None),
    r("Provenance", "patient", &["target"], Some("Patient")),
    r("ImagingStudy", "patient", &["subject"], Some("Patient")),
    r(
        "MedicationAdministration",
        "patient",
        &["subject"],
        Some("Patient"),
    ),
    r("Device", "patient", &["patient"], Some("Patient")),
    r("SupplyDelivery", "patient", &["patient"], Some("Patient")),
    r("Goal", "patient", &["subject"], Some("Patient")),
];

/// The parameter `name` of `rtype`, if supported.
pub fn param(rtype: &str, name: &str) -> Option<&'static Param> {
    PARAMS
        .iter()
        .find(|p| p.name == name && p.rtype == rtype)
        .or_else(|| PARAMS.iter().find(|p| p.name == name && p.rtype == "*"))
}

/// The parameters of `rtype`.
pub fn params_of(rtype: &str) -> impl Iterator<Item = &'static Param> + '_ {
    PARAMS
        .iter()
        .filter(move |p| p.rtype == rtype || p.rtype == "*")
}

/// One index row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Row {
    /// A token.
    Token {
        /// Parameter.
        param: &'static str,
        /// Code system (or identifier system), if any.
        system: Option<String>,
        /// Code (or identifier value).
        code: String,
    },
    /// A string.
    Str {
        /// Parameter.
        param: &'static str,
        /// Normalised (lowercase, no diacritics).
        norm: String,
        /// As written.
        raw: String,
    },
    /// A date range, in Unix milliseconds, both ends inclusive.
    Date {
        /// Parameter.
        param: &'static str,
        /// Start.
        lo: i64,
        /// End.
        hi: i64,
    },
    /// A reference.
    Ref {
        /// Parameter.
        param: &'static str,
        /// Target type.
        rtype: String,
        /// Target id.
        id: String,
    },
}

/// The most rows one resource contributes (a pathological resource cannot bloat the index).
pub const MAX_ROWS: usize = 2000;

/// The index rows of `resource` (of type `rtype`).
pub fn extract(rtype: &str, resource: &Value) -> Vec<Row> {
    let mut out = Vec::new();
    for prm in params_of(rtype) {
        for path in prm.paths {
            let mut vals = Vec::new();
            collect(resource, path, &mut vals);
            for v in vals {
                rows_of(prm, v, &mut out);
            }
        }
    }
    out.sort();
    out.dedup();
    let also = covers(rtype, "name");
    if !also.is_empty() {
        // A `name` part that is also a `family` or `given` row is not stored twice: a
        // `name` search reads those rows too (`search_params_of`).
        let parts: std::collections::HashSet<(&str, &str)> = out
            .iter()
            .filter_map(|r| match r {
                Row::Str { param, norm, raw } if also.contains(param) => {
                    Some((norm.as_str(), raw.as_str()))
                }
                _ => None,
            })
            .collect();
        let keep: Vec<bool> = out
            .iter()
            .map(|r| match r {
                Row::Str { param, norm, raw } if *param == "name" => {
                    !parts.contains(&(norm.as_str(), raw.as_str()))
                }
                _ => true,
            })
            .collect();
        let mut k = keep.into_iter();
        out.retain(|_| k.next().unwrap_or(true));
    }
    out.truncate(MAX_ROWS);
    out
}

/// The parameters whose rows a search on `param` of `rtype` also reads, because `param`'s
/// values include theirs and are not stored twice: a HumanName `name` covers its `family`
/// and `given` parts.
pub fn covers(rtype: &str, param: &str) -> &'static [&'static str] {
    match (rtype, param) {
        ("Patient" | "Practitioner", "name") => &["family", "given"],
        _ => &[],
    }
}

fn collect<'a>(v: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let next = match v {
        Value::Object(m) => m.get(head),
        _ => None,
    };
    let Some(next) = next else { return };
    let items: Vec<&Value> = match next {
        Value::Array(a) => a.iter().collect(),
        x => vec![x],
    };
    for it in items {
        match rest {
            Some(r) => collect(it, r, out),
            None => out.push(it),
        }
    }
}

fn rows_of(prm: &'static Param, v: &Value, out: &mut Vec<Row>) {
    match prm.kind {
        Kind::Token => tokens(prm.name, v, out),
        Kind::String => strings(prm.name, v, out),
        Kind::Date => {
            if let Some((lo, hi)) = date_value(v) {
                out.push(Row::Date {
                    param: prm.name,
                    lo,
                    hi,
                });
            }
        }
        Kind::Reference => {
            if let Some((t, id)) = v
                .get("reference")
                .and_then(|r| r.as_str())
                .and_then(parse_reference)
                && prm.target.is_none_or(|want| want == t)
            {
                out.push(Row::Ref {
                    param: prm.name,
                    rtype: t.to_owned(),
                    id: id.to_owned(),
                });
            }
        }
    }
}

fn tokens(param: &'static str, v: &Value, out: &mut Vec<Row>) {
    let s = |x: &Value, k: &str| x.get(k).and_then(|y| y.as_str()).map(str::to_owned);
    match v {
        Value::String(code) => out.push(Row::Token {
            param,
            system: None,
            code: code.clone(),
        }),
        Value::Bool(b) => out.push(Row::Token {
            param,
            system: None,
            code: b.to_string(),
        }),
        Value::Object(m) => {
            if let Some(Value::Array(codings)) = m.get("coding") {
                for c in codings {
                    if let Some(code) = s(c, "code") {
                        out.push(Row::Token {
                            param,
                            system: s(c, "system"),
                            code,
                        });
                    }
                }
            } else if let Some(code) = s(v, "code") {
                out.push(Row::Token {
                    param,
                    system: s(v, "system"),
                    code,
                });
            } else if let Some(value) = s(v, "value") {
                // Identifier.
                out.push(Row::Token {
                    param,
                    system: s(v, "system"),
                    code: value,
                });
            }
        }
        _ => {}
    }
}

fn strings(param: &'static str, v: &Value, out: &mut Vec<Row>) {
    let mut push = |raw: &str| {
        if !raw.is_empty() {
            out.push(Row::Str {
                param,
                norm: normalise(raw),
                raw: raw.chars().take(256).collect(),
            });
        }
    };
    match v {
        Value::String(s) => push(s),
        Value::Object(m) => {
            // HumanName, Address: every text part.
            for k in [
                "text",
                "family",
                "given",
                "prefix",
                "suffix",
                "line",
                "city",
                "state",
                "postalCode",
                "country",
            ] {
                match m.get(k) {
                    Some(Value::String(s)) => push(s),
                    Some(Value::Array(a)) => {
                        for x in a {
                            if let Some(s) = x.as_str() {
                                push(s);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Lowercase without diacritics, for string search.
pub fn normalise(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            'ý' | 'ÿ' => 'y',
            c => c,
        })
        .take(256)
        .collect()
}

/// `Type/id` (also the last two segments of an absolute URL).
pub fn parse_reference(r: &str) -> Option<(&str, &str)> {
    let r = r.split(['?', '#']).next()?;
    let mut it = r.rsplit('/');
    let id = it.next()?;
    let t = it.next()?;
    (crate::resource::ResourceType::parse(t).is_some() && crate::resource::valid_id(id))
        .then_some((t, id))
}

fn date_value(v: &Value) -> Option<(i64, i64)> {
    match v {
        Value::String(s) => date_range(s),
        Value::Object(m) => {
            let lo = m
                .get("start")
                .and_then(|x| x.as_str())
                .and_then(date_range)
                .map(|r| r.0)
                .unwrap_or(i64::MIN);
            let hi = m
                .get("end")
                .and_then(|x| x.as_str())
                .and_then(date_range)
                .map(|r| r.1)
                .unwrap_or(i64::MAX);
            (lo != i64::MIN || hi != i64::MAX).then_some((lo, hi))
        }
        _ => None,
    }
}

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The range a FHIR date, dateTime or instant covers, in ms (inclusive): `2020` is the
/// whole year, `2020-03` the month, `2020-03-04` the day (UTC), a dateTime to its precision.
pub fn date_range(s: &str) -> Option<(i64, i64)> {
    let s = s.trim();
    let num = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<i32>().ok());
    let year = num(0, 4)?;
    let start_of = |y: i32, m: u8, d: u8| -> Option<OffsetDateTime> {
        let date = Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()?;
        Some(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc())
    };
    match s.len() {
        4 => {
            let a = start_of(year, 1, 1)?;
            let b = start_of(year + 1, 1, 1)?;
            Some((ms(a), ms(b) - 1))
        }
        7 => {
            let m = num(5, 7)? as u8;
            let a = start_of(year, m, 1)?;
            let b = if m == 12 {
                start_of(year + 1, 1, 1)?
            } else {
                start_of(year, m + 1, 1)?
            };
            Some((ms(a), ms(b) - 1))
        }
        10 => {
            let a = start_of(year, num(5, 7)? as u8, num(8, 10)? as u8)?;
            Some((ms(a), ms(a) + 86_400_000 - 1))
        }
        _ => {
            let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .ok()
                .or_else(|| {
                    // Without seconds or offset (allowed in search values): as UTC minutes.
                    let p = format!("{s}:00Z");
                    OffsetDateTime::parse(&p, &time::format_description::well_known::Rfc3339).ok()
                })?;
            let t = t.to_offset(UtcOffset::UTC);
            let has_frac = s.contains('.');
            let end = if has_frac { ms(t) } else { ms(t) + 999 };
            Some((ms(t), end))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extracts_the_ipa_parameters() {
        let obs = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
            "subject": {"reference": "urn:uuid:x"},
            "effectiveDateTime": "2020-03-04T10:00:00+01:00",
            "identifier": [{"system": "urn:x", "value": "A1"}]
        });
        let rows = extract("Observation", &obs);
        assert!(rows.contains(&Row::Token {
            param: "category",
            system: Some("http://terminology.hl7.org/CodeSystem/observation-category".into()),
            code: "vital-signs".into()
        }));
        assert!(rows.contains(&Row::Token {
            param: "code",
            system: Some("http://loinc.org".into()),
            code: "8867-4".into()
        }));
        assert!(rows.contains(&Row::Token {
            param: "status",
            system: None,
            code: "final".into()
        }));
        assert!(rows.contains(&Row::Token {
            param: "identifier",
            system: Some("urn:x".into()),
            code: "A1".into()
        }));
        // urn:uuid references are rewritten before indexing; unresolved ones are not indexed.
        assert!(!rows.iter().any(|r| matches!(r, Row::Ref { .. })));
        let (lo, hi) = rows
            .iter()
            .find_map(|r| match r {
                Row::Date { lo, hi, .. } => Some((*lo, *hi)),
                _ => None,
            })
            .unwrap();
        assert_eq!(hi - lo, 999);
        let pat = json!({"resourceType": "Patient", "name": [{"family": "Gonçalves", "given": ["Ana", "Júlia"]}], "gender": "female", "birthDate": "1980-04"});
        let rows = extract("Patient", &pat);
        assert!(rows.contains(&Row::Str {
            param: "family",
            norm: "goncalves".into(),
            raw: "Gonçalves".into()
        }));
        // A given name is a `given` row; `name` searches read it there (not stored twice).
        assert!(rows.contains(&Row::Str {
            param: "given",
            norm: "julia".into(),
            raw: "Júlia".into()
        }));
        assert!(
            !rows
                .iter()
                .any(|r| matches!(r, Row::Str { param: "name", .. }))
        );
        assert_eq!(covers("Patient", "name"), ["family", "given"]);
        // Parts only `name` covers (text, prefix) stay `name` rows.
        let pat2 = json!({"resourceType": "Patient", "name": [{"text": "Dr Ana Lima", "prefix": ["Dr"], "family": "Lima"}]});
        let rows2 = extract("Patient", &pat2);
        let names: Vec<&str> = rows2
            .iter()
            .filter_map(|r| match r {
                Row::Str {
                    param: "name", raw, ..
                } => Some(raw.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["Dr", "Dr Ana Lima"]);
        assert!(rows.contains(&Row::Token {
            param: "gender",
            system: None,
            code: "female".into()
        }));
        let (lo, hi) = rows
            .iter()
            .find_map(|r| match r {
                Row::Date { lo, hi, .. } => Some((*lo, *hi)),
                _ => None,
            })
            .unwrap();
        assert_eq!((hi - lo + 1) / 86_400_000, 30, "April has 30 days");
        let enc = json!({"resourceType": "Encounter", "subject": {"reference": "Patient/abc"}, "period": {"start": "2020-01-01T00:00:00Z"}});
        let rows = extract("Encounter", &enc);
        assert!(rows.contains(&Row::Ref {
            param: "patient",
            rtype: "Patient".into(),
            id: "abc".into()
        }));
        assert!(
            rows.iter()
                .any(|r| matches!(r, Row::Date { hi, .. } if *hi == i64::MAX))
        );
    }

    #[test]
    fn dates_and_references() {
        assert!(date_range("2020-02-30").is_none());
        assert!(date_range("garbage").is_none());
        let (a, b) = date_range("2020").unwrap();
        assert_eq!(b - a + 1, 366 * 86_400_000);
        assert_eq!(parse_reference("Patient/123"), Some(("Patient", "123")));
        assert_eq!(
            parse_reference("https://x.example/fhir/Patient/123"),
            Some(("Patient", "123"))
        );
        assert_eq!(parse_reference("Practitioner?identifier=a|b"), None);
        assert_eq!(parse_reference("urn:uuid:1234"), None);
        assert_eq!(normalise("JOSÉ Ñandú"), "jose nandu");
    }
}
