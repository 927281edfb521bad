//! What a control-plane operation can fail with. The HTTP edge maps each variant to one
//! problem `type` and status; nobody branches on messages.

use tenantplane_catalog::CatalogError;
use tenantplane_core::{DomainName, TenantStatus, ValidationErrors, lifecycle::IllegalTransition};
use tenantplane_identity::IdentityError;
use tenantplane_records::RecordsError;
use tenantplane_tenant_data::DataError;

/// A control-plane failure.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Fields of the request are invalid.
    #[error("invalid request: {0:?}")]
    Invalid(ValidationErrors),
    /// The named thing (`tenant`, `plan`, `operator`, `domain`) does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A tenant named in a list (fleet runs) does not exist.
    #[error("no tenant '{0}'")]
    NoSuchTenant(String),
    /// `If-Match` named another version than the current one.
    #[error("version mismatch (current {current})")]
    VersionMismatch {
        /// The current version.
        current: u64,
    },
    /// The lifecycle forbids the transition.
    #[error(transparent)]
    IllegalTransition(IllegalTransition),
    /// Too many concurrent changes of one record; `tenant` says whether it is a tenant
    /// (else a plan).
    #[error("too many concurrent changes")]
    Contention {
        /// The record is a tenant.
        tenant: bool,
    },
    /// The tenant is deleted.
    #[error("the tenant has been deleted")]
    TenantGone,
    /// The custom domain is already the tenant's.
    #[error("domain '{0}' is already assigned to this tenant")]
    DomainAlreadyAssigned(DomainName),
    /// The tenant is no longer being provisioned (another run finished or failed it).
    #[error("the tenant is {0} now")]
    NotProvisioning(TenantStatus),
    /// A provisioning step failed; the tenant was recorded as `failed`.
    #[error("provisioning failed: {reason}")]
    ProvisioningFailed {
        /// The tenant (id).
        id: String,
        /// Which step and why.
        reason: String,
    },
    /// The tenant's status does not allow the operation (`detail` says which do).
    #[error("{0}")]
    TenantNotReady(String),
    /// The tenant has no FHIR records.
    #[error("records module off")]
    RecordsDisabled,
    /// An imported Bundle is invalid (`detail` lists the issues).
    #[error("invalid bundle: {0}")]
    InvalidBundle(String),
    /// An entry of an imported Bundle failed; nothing was written.
    #[error("entry {index}: {message}")]
    BundleEntryFailed {
        /// The entry's index.
        index: usize,
        /// The HTTP status the entry would have had.
        status: u16,
        /// Why.
        message: String,
    },
    /// A service the answer depends on failed (Prometheus); the detail is for logs.
    #[error("upstream: {0}")]
    Upstream(String),
    /// No price sheet is stored: costs cannot be computed.
    #[error("no price sheet")]
    NoPrices,
    /// Idempotency keys already used for other usage events; nothing was recorded.
    #[error("idempotency keys reused: {0:?}")]
    KeyReused(Vec<String>),
    /// An operator tried to disable themselves.
    #[error("cannot disable yourself")]
    SelfDisable,
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A tenant store failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Identity failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The record store failed.
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// An invariant broke (logged; never shown).
    #[error("internal: {0}")]
    Internal(String),
}

impl From<ValidationErrors> for ControlError {
    fn from(e: ValidationErrors) -> Self {
        Self::Invalid(e)
    }
}

impl ControlError {
    /// One invalid field.
    pub fn field(pointer: &str, detail: impl Into<String>) -> Self {
        Self::Invalid(ValidationErrors::single(pointer, detail))
    }

    /// A stable label for logs and reports: the name of the problem type the edge answers
    /// with (never for deciding anything — match the variant).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "validation-failed",
            Self::NotFound(_) | Self::NoSuchTenant(_) => "not-found",
            Self::VersionMismatch { .. } => "version-mismatch",
            Self::IllegalTransition(_) => "illegal-transition",
            Self::Contention { .. } => "contention",
            Self::TenantGone => "tenant-gone",
            Self::DomainAlreadyAssigned(_) => "domain-taken",
            Self::NotProvisioning(_) => "not-provisioning",
            Self::ProvisioningFailed { .. } => "provisioning-failed",
            Self::TenantNotReady(_) => "tenant-not-ready",
            Self::RecordsDisabled => "records-disabled",
            Self::InvalidBundle(_) => "invalid-bundle",
            Self::BundleEntryFailed { .. } => "bundle-entry-failed",
            Self::SelfDisable => "self-disable",
            Self::KeyReused(_) => "idempotency-key-reused",
            Self::NoPrices => "no-prices",
            Self::Upstream(_) => "upstream-unavailable",
            Self::Catalog(e) => catalog_label(e),
            Self::Data(e) => data_label(e),
            Self::Identity(e) => match e {
                IdentityError::Data(d) => data_label(d),
                IdentityError::EmailTaken => "email-taken",
                IdentityError::NotFound => "not-found",
                IdentityError::VersionMismatch { .. } => "version-mismatch",
                IdentityError::QuotaExceeded { .. } => "quota-exceeded",
                IdentityError::Sso(_) => "sso",
                IdentityError::Internal(_) => "internal",
            },
            Self::Records(e) => match e {
                RecordsError::Data(d) => data_label(d),
                RecordsError::NotFound => "not-found",
                RecordsError::VersionConflict { .. } => "version-mismatch",
                RecordsError::QuotaExceeded { .. } => "quota-exceeded",
                RecordsError::Invalid(_) => "validation-failed",
                RecordsError::Internal(_) => "internal",
            },
            Self::Internal(_) => "internal",
        }
    }
}

fn catalog_label(e: &CatalogError) -> &'static str {
    use tenantplane_catalog::Conflict;
    match e {
        CatalogError::NotFound => "not-found",
        CatalogError::Conflict(Conflict::Slug(_)) => "slug-taken",
        CatalogError::Conflict(Conflict::Domain(_)) => "domain-taken",
        CatalogError::Conflict(Conflict::OperatorName(_)) => "operator-name-taken",
        CatalogError::Conflict(Conflict::Id) => "conflict",
        CatalogError::VersionMismatch { .. } => "version-mismatch",
        CatalogError::Unavailable(_) => "unavailable",
        CatalogError::Internal(_) => "internal",
    }
}

fn data_label(e: &DataError) -> &'static str {
    match e {
        DataError::Busy => "tenant-store-busy",
        DataError::Outdated { .. } => "tenant-store-upgrading",
        DataError::Unavailable(_) => "tenant-store-unavailable",
        DataError::Conflict(_) => "conflict",
        _ => "internal",
    }
}

/// The result of a control-plane operation.
pub type ControlResult<T> = Result<T, ControlError>;
