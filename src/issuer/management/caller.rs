//! Who calls the management API: the bearer token checked as introspection
//! would, for the management audience, and the scopes it may use now; the
//! no-escalation rules.

use super::MgmtError;
use crate::issuer::introspect::Verifier;
use crate::issuer::registry::{App, Registry};
use crate::jose;
use crate::oauth::ids::{Audience, ClientId, Scope};
use http::{HeaderMap, header};
use std::collections::{BTreeMap, BTreeSet};

/// Who is calling: the app behind a valid management token, and the
/// management scopes it may use now (those its token carries *and* its app is
/// still granted).
pub struct Caller {
    pub client_id: ClientId,
    pub scopes: BTreeSet<Scope>,
    /// The token's verified claims, to check the caller again against the
    /// registry a change is made to.
    claims: serde_json::Map<String, serde_json::Value>,
}

/// The bearer token of `headers`: the scheme is case-insensitive (RFC 6750
/// §2.1, RFC 9110 §11.1); more than one `Authorization` header is refused.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, MgmtError> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let (first, second) = (all.next(), all.next());
    if second.is_some() {
        return Err(MgmtError::BadRequest(
            "more than one Authorization header".into(),
        ));
    }
    Ok(first.and_then(|v| crate::oauth::authorization::bearer(v.as_bytes())))
}

/// Check the caller's bearer token exactly as introspection would (ours,
/// unexpired, not revoked, its app present, unblocked, and not blocked or
/// deleted since the token was issued), and for the management audience.
pub fn caller(
    verifier: &Verifier,
    reg: &Registry,
    audience: &str,
    headers: &HeaderMap,
) -> Result<Caller, MgmtError> {
    let Some(token) = bearer(headers)? else {
        return Err(MgmtError::Unauthorized { token_sent: false });
    };
    let bad = || MgmtError::Unauthorized { token_sent: true };
    let claims = verifier.check(token).map_err(|_| bad())?;
    if !jose::claims::audience(&claims, |a| a == audience).unwrap_or(false) {
        return Err(bad());
    }
    from_claims(claims, reg, audience)
}

/// The caller of a verified management token, as `reg` sees its app now.
fn from_claims(
    claims: serde_json::Map<String, serde_json::Value>,
    reg: &Registry,
    audience: &str,
) -> Result<Caller, MgmtError> {
    let bad = || MgmtError::Unauthorized { token_sent: true };
    let app = reg.token_app(&claims).map_err(|_| bad())?;
    let granted = app.granted(audience);
    let scopes = claims
        .get("scp")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .filter(|s| granted.iter().any(|g| g == s))
        .map(Scope::from)
        .collect();
    Ok(Caller {
        client_id: app.client_id.clone(),
        scopes,
        claims,
    })
}

impl Caller {
    /// The caller against `reg`, the registry a change is made to (after
    /// every change ordered before it, on every replica): an app blocked,
    /// deleted or stripped of a scope meanwhile is refused here, so calls in
    /// flight cannot undo what was done to their own app.
    pub(super) fn recheck(&self, reg: &Registry, audience: &str) -> Result<Caller, MgmtError> {
        from_claims(self.claims.clone(), reg, audience)
    }

    pub(super) fn need(&self, scope: &'static str) -> Result<(), MgmtError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(MgmtError::Forbidden(scope))
        }
    }

    /// No escalation: `grants` may hold, on the management audience, only
    /// scopes the caller has.
    pub(super) fn may_grant(
        &self,
        grants: &BTreeMap<Audience, Vec<Scope>>,
        audience: &str,
    ) -> Result<(), MgmtError> {
        self.covers(grants.get(audience).map_or(&[], Vec::as_slice))
    }

    /// No escalation: an app holding management scopes the caller lacks may
    /// not be changed, blocked, unblocked, rotated or deleted by it.
    pub(super) fn may_manage(&self, app: &App, audience: &str) -> Result<(), MgmtError> {
        self.covers(app.granted(audience))
            .map_err(|_| MgmtError::Outranked)
    }

    /// What a change answers with: the app's record for a caller that may
    /// read apps, else only its id (`apps:write` alone reads nothing).
    pub(super) fn written(&self, record: serde_json::Value) -> serde_json::Value {
        if self.scopes.contains("apps:read") {
            record
        } else {
            serde_json::json!({"client_id": record.get("client_id").cloned().unwrap_or_default()})
        }
    }

    fn covers(&self, scopes: &[Scope]) -> Result<(), MgmtError> {
        match scopes.iter().find(|s| !self.scopes.contains(*s)) {
            Some(s) => Err(MgmtError::Escalation(s.as_str().to_owned())),
            None => Ok(()),
        }
    }
}
