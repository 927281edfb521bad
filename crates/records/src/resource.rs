//! FHIR resources as stored: lossless JSON with the server's `id` and `meta`.
//!
//! A resource is parsed into its top-level elements, each kept as the exact JSON text the
//! client sent ([`serde_json::value::RawValue`]), so decimals keep their precision
//! (`1.50` stays `1.50`), unknown elements and extensions survive byte for byte, and element
//! order is kept. The server replaces `id` and sets `meta.versionId` and
//! `meta.lastUpdated`, keeping the rest of the client's `meta` (profiles, tags, security
//! labels).

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use time::OffsetDateTime;

/// Every resource type of FHIR R4 (4.0.1).
pub const R4_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// Types the store refuses as stored resources (they are messages about an interaction,
/// not records).
const NOT_STORED: &[&str] = &["OperationOutcome", "Parameters"];

/// A resource type the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(&'static str);

impl ResourceType {
    /// Parses a type name (case-sensitive, as FHIR).
    pub fn parse(s: &str) -> Option<Self> {
        R4_TYPES
            .binary_search(&s)
            .ok()
            .map(|i| R4_TYPES[i])
            .filter(|t| !NOT_STORED.contains(t))
            .map(Self)
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Whether `s` is a valid FHIR id (`[A-Za-z0-9\-\.]{1,64}`).
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// One problem with an incoming resource: the FHIRPath-ish location and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Where (`Patient.id`, `Observation.status`, or `$` for the whole body).
    pub location: String,
    /// What is wrong (safe to show; never contains the resource's values).
    pub diagnostics: String,
}

impl Issue {
    fn at(location: impl Into<String>, diagnostics: impl Into<String>) -> Self {
        Self {
            location: location.into(),
            diagnostics: diagnostics.into(),
        }
    }
}

/// A parsed incoming resource.
#[derive(Debug)]
pub struct Incoming {
    /// Its type.
    pub rtype: ResourceType,
    /// The `id` it carried, if any.
    pub id: Option<String>,
    /// Top-level elements other than `resourceType`, `id` and `meta`, in order, as sent.
    elements: Vec<(String, Box<RawValue>)>,
    /// The client's `meta` without `versionId` and `lastUpdated`.
    meta: serde_json::Map<String, serde_json::Value>,
    /// The whole resource as a value (for validation and search indexing; decimals there
    /// may be rounded — never stored from this).
    pub value: serde_json::Value,
}

struct Ordered(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                let mut out: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Box<RawValue>>()? {
                    if out.iter().any(|(x, _)| *x == k) {
                        return Err(serde::de::Error::custom(format!("duplicate element '{k}'")));
                    }
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Most nested JSON accepted in a resource.
pub const MAX_DEPTH: usize = 64;

fn depth_ok(v: &serde_json::Value, left: usize) -> bool {
    if left == 0 {
        return false;
    }
    match v {
        serde_json::Value::Array(a) => a.iter().all(|x| depth_ok(x, left - 1)),
        serde_json::Value::Object(o) => o.values().all(|x| depth_ok(x, left - 1)),
        _ => true,
    }
}

/// FHIR strings exclude control characters below U+0020 other than tab, CR and LF.
pub fn forbidden_control(c: char) -> bool {
    (c as u32) < 0x20 && !matches!(c, '\t' | '\r' | '\n')
}

/// The path of the first string (or member name) holding a forbidden control character.
fn control_char_at(v: &serde_json::Value, path: &mut String) -> bool {
    match v {
        serde_json::Value::String(s) => s.chars().any(forbidden_control),
        serde_json::Value::Array(a) => a.iter().enumerate().any(|(i, x)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = control_char_at(x, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        serde_json::Value::Object(o) => o.iter().any(|(k, x)| {
            let len = path.len();
            path.push('.');
            if k.chars().any(forbidden_control) {
                path.push_str("(member name)");
                return true;
            }
            path.push_str(k);
            let found = control_char_at(x, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        _ => false,
    }
}

/// Parses `body` as a resource of type `expected` (the URL's type; `None` takes the body's).
pub fn parse(body: &[u8], expected: Option<ResourceType>) -> Result<Incoming, Vec<Issue>> {
    let Ordered(fields) = serde_json::from_slice::<Ordered>(body).map_err(|e| {
        vec![Issue::at(
            "$",
            format!("not a JSON object: {}", json_error(&e)),
        )]
    })?;
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| vec![Issue::at("$", format!("invalid JSON: {}", json_error(&e)))])?;
    if !depth_ok(&value, MAX_DEPTH) {
        return Err(vec![Issue::at(
            "$",
            format!("nested deeper than {MAX_DEPTH} levels"),
        )]);
    }
    let mut at = value
        .get("resourceType")
        .and_then(|v| v.as_str())
        .filter(|t| t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphabetic()))
        .unwrap_or("$")
        .to_owned();
    if control_char_at(&value, &mut at) {
        return Err(vec![Issue::at(
            at,
            "control characters (below U+0020, other than tab, CR and LF) are not allowed in FHIR strings",
        )]);
    }
    let mut issues = Vec::new();
    let rt_name = value.get("resourceType").and_then(|v| v.as_str());
    let rtype = match (rt_name, expected) {
        (None, _) => {
            issues.push(Issue::at("$", "resourceType is missing"));
            None
        }
        (Some(n), Some(e)) if n != e.as_str() => {
            issues.push(Issue::at(
                "resourceType",
                format!("the body is a {n}, the URL names {e}"),
            ));
            None
        }
        (Some(n), _) => match ResourceType::parse(n) {
            Some(t) => Some(t),
            None => {
                issues.push(Issue::at(
                    "resourceType",
                    format!("'{}' is not a stored FHIR R4 resource type", truncate(n)),
                ));
                None
            }
        },
    };
    let loc = |el: &str| format!("{}.{el}", rt_name.unwrap_or("Resource"));
    let id = match value.get("id") {
        None => None,
        Some(serde_json::Value::String(s)) if valid_id(s) => Some(s.clone()),
        Some(_) => {
            issues.push(Issue::at(
                loc("id"),
                "an id is 1-64 characters of A-Z, a-z, 0-9, '-' and '.'",
            ));
            None
        }
    };
    let meta = match value.get("meta") {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => {
            let mut m = m.clone();
            m.remove("versionId");
            m.remove("lastUpdated");
            m
        }
        Some(_) => {
            issues.push(Issue::at(loc("meta"), "meta must be an object"));
            serde_json::Map::new()
        }
    };
    if value.get("text").is_some_and(|t| !t.is_object()) {
        issues.push(Issue::at(loc("text"), "text must be a Narrative object"));
    }
    for (k, _) in &fields {
        let ok = k
            .strip_prefix('_')
            .unwrap_or(k)
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || k == "resourceType");
        if !ok && !k.is_empty() {
            issues.push(Issue::at(
                loc(k),
                "element names start with a lowercase letter",
            ));
        }
    }
    let Some(rtype) = rtype else {
        return Err(issues);
    };
    if !issues.is_empty() {
        return Err(issues);
    }
    let elements = fields
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "resourceType" | "id" | "meta"))
        .collect();
    Ok(Incoming {
        rtype,
        id,
        elements,
        meta,
        value,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// What is wrong with a JSON body, by position only: serde's own messages can quote the
/// input ("invalid type: string \"…\"") and are a library's wording, not ours.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax => "invalid JSON syntax",
        Category::Eof => "the JSON ends early",
        Category::Data => "a member has the wrong type or value",
        Category::Io => "the body could not be read",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// RFC 3339 with milliseconds, as FHIR `instant`.
pub fn instant(t: OffsetDateTime) -> String {
    let ms = t.millisecond();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        ms
    )
}

impl Incoming {
    /// The stored JSON: `resourceType`, `id`, `meta` (with `versionId`, `lastUpdated`),
    /// then the client's elements as sent.
    pub fn assemble(&self, id: &str, version: u64, last_updated: OffsetDateTime) -> String {
        let mut meta = serde_json::Map::new();
        meta.insert("versionId".into(), version.to_string().into());
        meta.insert("lastUpdated".into(), instant(last_updated).into());
        for (k, v) in &self.meta {
            meta.insert(k.clone(), v.clone());
        }
        let mut out = String::with_capacity(256);
        out.push_str("{\"resourceType\":");
        out.push_str(&serde_json::Value::from(self.rtype.as_str()).to_string());
        out.push_str(",\"id\":");
        out.push_str(&serde_json::Value::from(id).to_string());
        out.push_str(",\"meta\":");
        out.push_str(&serde_json::Value::Object(meta).to_string());
        for (k, v) in &self.elements {
            out.push(',');
            out.push_str(&serde_json::Value::from(k.as_str()).to_string());
            out.push(':');
            out.push_str(v.get());
        }
        out.push('}');
        out
    }

    /// The stored form of a deleted resource's tombstone has no body.
    pub fn is_patient(&self) -> bool {
        self.rtype.as_str() == "Patient"
    }
}

/// `doc` with only `resourceType`, `id`, `meta` and the named top-level elements, marked
/// `SUBSETTED` (for `_elements`). Values are copied as stored.
pub fn subset(doc: &str, keep: &[String]) -> String {
    let Ok(Ordered(fields)) = serde_json::from_str::<Ordered>(doc) else {
        return doc.to_owned();
    };
    let mut out = String::from("{");
    let mut first = true;
    for (k, v) in fields {
        let always = matches!(k.as_str(), "resourceType" | "id");
        if !always && k != "meta" && !keep.contains(&k) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&serde_json::Value::from(k.as_str()).to_string());
        out.push(':');
        if k == "meta" {
            let mut meta: serde_json::Value =
                serde_json::from_str(v.get()).unwrap_or_else(|_| serde_json::json!({}));
            let tag = serde_json::json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED"
            });
            match meta.get_mut("tag").and_then(|t| t.as_array_mut()) {
                Some(a) => a.push(tag),
                None => meta["tag"] = serde_json::json!([tag]),
            }
            out.push_str(&meta.to_string());
        } else {
            out.push_str(v.get());
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_list_is_sorted_and_complete_enough() {
        let mut sorted = R4_TYPES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, R4_TYPES, "binary search needs the list sorted");
        assert_eq!(R4_TYPES.len(), 146);
        for t in [
            "Patient",
            "Observation",
            "ExplanationOfBenefit",
            "Claim",
            "Provenance",
        ] {
            assert!(ResourceType::parse(t).is_some(), "{t}");
        }
        assert!(ResourceType::parse("patient").is_none());
        assert!(ResourceType::parse("OperationOutcome").is_none());
    }

    #[test]
    fn lossless_except_id_and_meta() {
        let body = br#"{"resourceType":"Observation","id":"client-id","meta":{"versionId":"9","tag":[{"code":"x"}]},"status":"final","valueQuantity":{"value":1.50,"unit":"mg"},"extension":[{"url":"http://example.org/x","valueDecimal":0.1000}],"_status":{"id":"s"}}"#;
        let r = parse(body, ResourceType::parse("Observation")).unwrap();
        assert_eq!(r.id.as_deref(), Some("client-id"));
        let at = time::macros::datetime!(2026-12-01 10:11:12.345 UTC);
        let out = r.assemble("abc", 3, at);
        assert_eq!(
            out,
            r#"{"resourceType":"Observation","id":"abc","meta":{"lastUpdated":"2026-12-01T10:11:12.345Z","tag":[{"code":"x"}],"versionId":"3"},"status":"final","valueQuantity":{"value":1.50,"unit":"mg"},"extension":[{"url":"http://example.org/x","valueDecimal":0.1000}],"_status":{"id":"s"}}"#
        );
    }

    #[test]
    fn refusals_name_the_element() {
        let cases: &[(&[u8], &str)] = &[
            (b"[1,2]", "$"),
            (b"{\"resourceType\":\"Patient\",\"a\":1,\"a\":2}", "$"),
            (b"{\"id\":\"x\"}", "$"),
            (b"{\"resourceType\":\"Observation\"}", "resourceType"),
            (
                b"{\"resourceType\":\"Patient\",\"id\":\"bad id!\"}",
                "Patient.id",
            ),
            (b"{\"resourceType\":\"Patient\",\"meta\":3}", "Patient.meta"),
            (
                b"{\"resourceType\":\"Patient\",\"Name\":[]}",
                "Patient.Name",
            ),
            (b"not json", "$"),
        ];
        for (body, loc) in cases {
            let e = parse(body, ResourceType::parse("Patient")).unwrap_err();
            assert_eq!(e[0].location, *loc, "{}", String::from_utf8_lossy(body));
        }
        let deep = format!(
            "{{\"resourceType\":\"Patient\",\"x\":{}1{}}}",
            "[".repeat(80),
            "]".repeat(80)
        );
        assert_eq!(parse(deep.as_bytes(), None).unwrap_err()[0].location, "$");
        assert!(parse(b"{\"resourceType\":\"Unicorn\"}", None).is_err());
    }

    #[test]
    fn ids() {
        assert!(valid_id("0190f5b2-7c1e-7a11-8f00-123456789abc"));
        assert!(valid_id("a.b-C"));
        assert!(!valid_id(""));
        assert!(!valid_id(&"x".repeat(65)));
        assert!(!valid_id("a/b"));
    }
}
