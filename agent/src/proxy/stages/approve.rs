//! Approve: where a request held for a human decision will wait. Approvals are not enabled yet:
//! the policy refuses `action = "approve"` rules itself (403, see `policy::check`), so every
//! request that reaches this stage passes.
use super::{Outbound, Refusal};

pub async fn approve(request: Outbound) -> Result<Outbound, Refusal> {
    Ok(request)
}
