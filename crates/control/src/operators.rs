//! Plans and operator accounts, and the first operator at bootstrap.

use std::path::Path;

use tenantplane_catalog::CatalogError;
use tenantplane_core::{
    Operator, OperatorId, OperatorRole, Plan, PlanName, ValidationErrors,
    api::{CreateOperator, UpdatePlan},
    operator::validate_operator_name,
    tenant::validate_display_name,
};

use crate::{Control, ControlError, ControlResult, now, tenants::CAS_ATTEMPTS, tokens};

impl Control {
    /// All plans.
    pub async fn plans(&self) -> ControlResult<Vec<Plan>> {
        Ok(self.catalog.list_plans().await?)
    }

    /// Edits a plan.
    pub async fn update_plan(
        &self,
        name: &str,
        req: UpdatePlan,
        if_match: Option<u64>,
    ) -> ControlResult<Plan> {
        let name: PlanName = name.parse().map_err(|_| ControlError::NotFound("plan"))?;
        let mut errs = ValidationErrors::new();
        if let Some(n) = &req.display_name {
            validate_display_name("/display_name", n, &mut errs);
        }
        if let Some(q) = &req.quotas {
            q.validate("/quotas", &mut errs);
        }
        errs.into_result()?;
        for _ in 0..CAS_ATTEMPTS {
            let mut plan = self
                .catalog
                .get_plan(&name)
                .await?
                .ok_or(ControlError::NotFound("plan"))?;
            let expected = plan.version;
            if let Some(v) = if_match
                && v != expected
            {
                return Err(ControlError::VersionMismatch { current: expected });
            }
            if let Some(n) = &req.display_name {
                plan.display_name = n.trim().to_owned();
            }
            if let Some(q) = req.quotas {
                plan.quotas = q;
            }
            if let Some(i) = req.default_isolation {
                plan.default_isolation = i;
            }
            match self.catalog.update_plan(&plan, expected).await {
                Ok(p) => {
                    tracing::info!(plan = %p.name, version = p.version, "plan updated");
                    if let Err(e) = self.refresh_plans().await {
                        tracing::warn!(code = e.label(), "reloading plans failed");
                    }
                    return Ok(p);
                }
                Err(CatalogError::VersionMismatch { current }) if if_match.is_some() => {
                    return Err(ControlError::VersionMismatch { current });
                }
                Err(CatalogError::VersionMismatch { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ControlError::Contention { tenant: false })
    }

    /// All operators.
    pub async fn operators(&self) -> ControlResult<Vec<Operator>> {
        Ok(self.catalog.list_operators().await?)
    }

    /// Creates an operator and returns it with its token (shown once).
    pub async fn create_operator(&self, req: CreateOperator) -> ControlResult<(Operator, String)> {
        validate_operator_name(&req.name).map_err(|e| ControlError::field("/name", e))?;
        let token = tokens::generate_token();
        let op = Operator {
            id: OperatorId::new(),
            name: req.name,
            role: req.role.unwrap_or(OperatorRole::PlatformAdmin),
            token_hash: tokens::hash_token(&token),
            disabled: false,
            created_at: now(),
        };
        self.catalog.create_operator(&op).await?;
        self.operators.invalidate();
        tracing::info!(operator = %op.name, role = %op.role, "operator created");
        Ok((op, token))
    }

    /// Replaces an operator's token (and re-enables it); returns the new token.
    pub async fn reset_operator(&self, id_or_name: &str) -> ControlResult<(Operator, String)> {
        let mut op = self.find_operator(id_or_name).await?;
        let token = tokens::generate_token();
        op.token_hash = tokens::hash_token(&token);
        op.disabled = false;
        self.catalog.update_operator(&op).await?;
        self.operators.invalidate();
        tracing::info!(operator = %op.name, "operator token reset");
        Ok((op, token))
    }

    /// Disables an operator (its token stops working within seconds on every replica).
    pub async fn disable_operator(
        &self,
        id_or_name: &str,
        caller: &Operator,
    ) -> ControlResult<Operator> {
        let mut op = self.find_operator(id_or_name).await?;
        if op.id == caller.id {
            return Err(ControlError::SelfDisable);
        }
        op.disabled = true;
        self.catalog.update_operator(&op).await?;
        self.operators.invalidate();
        Ok(op)
    }

    pub(crate) async fn find_operator(&self, id_or_name: &str) -> ControlResult<Operator> {
        let op = match id_or_name.parse::<OperatorId>() {
            Ok(id) => self.catalog.get_operator(id).await?,
            Err(_) => self.catalog.get_operator_by_name(id_or_name).await?,
        };
        op.ok_or(ControlError::NotFound("operator"))
    }

    /// On first start (no operator exists): creates the first operator, from the token in
    /// `token_file` or with a generated token, which is returned so the caller can show it
    /// once. Returns `None` when operators already exist.
    pub async fn bootstrap(
        &self,
        token_file: Option<&Path>,
        name: &str,
    ) -> anyhow::Result<Option<String>> {
        let supplied = match token_file {
            Some(p) => {
                let raw = std::fs::read_to_string(p).map_err(|e| {
                    anyhow::anyhow!("cannot read bootstrap token file {}: {e}", p.display())
                })?;
                let t = raw.trim().to_owned();
                tokens::validate_supplied_token(&t)
                    .map_err(|e| anyhow::anyhow!("bootstrap token file {}: {e}", p.display()))?;
                Some(t)
            }
            None => None,
        };
        if !self.catalog.list_operators().await?.is_empty() {
            if let Some(t) = &supplied {
                let h = tokens::hash_token(t);
                if !self
                    .catalog
                    .list_operators()
                    .await?
                    .iter()
                    .any(|o| o.token_hash == h)
                {
                    tracing::warn!("bootstrap token file ignored: operators already exist");
                }
            }
            return Ok(None);
        }
        validate_operator_name(name)
            .map_err(|e| anyhow::anyhow!("bootstrap.operator_name: {e}"))?;
        let (token, show) = match supplied {
            Some(t) => (t, false),
            None => (tokens::generate_token(), true),
        };
        let op = Operator {
            id: OperatorId::new(),
            name: name.to_owned(),
            role: OperatorRole::PlatformAdmin,
            token_hash: tokens::hash_token(&token),
            disabled: false,
            created_at: now(),
        };
        match self.catalog.create_operator(&op).await {
            Ok(()) => {}
            // Another replica bootstrapped at the same moment.
            Err(CatalogError::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        self.operators.invalidate();
        tracing::info!(operator = %op.name, from_file = !show, "first operator created");
        Ok(show.then_some(token))
    }
}
