//! Credential: where the agent's key will be replaced by a custodied one. There is no credential
//! custody yet: the request passes with the key the agent presented.
use super::{Outbound, Refusal};

pub async fn credential(request: Outbound) -> Result<Outbound, Refusal> {
    Ok(request)
}
