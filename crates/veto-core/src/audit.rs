//! Audit events: an append-only trail of who changed what.
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: String,
    #[serde(skip)]
    pub tenant: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who acted: the API key id, or `system` for scheduled work.
    pub actor: String,
    /// e.g. `revocation.create`, `key.rotate`, `tenant.suspend`.
    pub action: String,
    pub target: String,
    pub reason: Option<String>,
    pub metadata: serde_json::Value,
}

impl AuditEvent {
    pub fn new(tenant: &str, actor: &str, action: &str, target: &str) -> Self {
        AuditEvent {
            id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
            tenant: tenant.to_owned(),
            at: crate::timeutil::now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            reason: None,
            metadata: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn with_reason(mut self, reason: Option<&str>) -> Self {
        self.reason = reason.map(str::to_owned);
        self
    }

    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }
}
