//! The HTTPS API's families: requests answered, by status, and bearer tokens refused.
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    /// The HTTP status: the API answers a small fixed set (200, 303, 400, 401, 403, 404, 409, 413,
    /// 500, 503), so the label stays bounded.
    status: u16,
}

#[derive(Debug)]
pub struct ApiMetrics {
    requests: Family<StatusLabels, Counter>,
}

impl ApiMetrics {
    pub(super) fn register(registry: &mut Registry) -> ApiMetrics {
        let requests = Family::default();
        registry.register(
            "warden_api_requests",
            "Requests the HTTPS API and console answered, by status (401: no valid token or session; 403: a role or CSRF check refused)",
            requests.clone(),
        );
        ApiMetrics { requests }
    }

    pub fn answered(&self, status: u16) {
        self.requests.get_or_create(&StatusLabels { status }).inc();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn requests_are_counted_by_status() {
        let metrics = crate::metrics::Metrics::new(crate::metrics::LiveReadings::zero());
        metrics.api.answered(401);
        metrics.api.answered(401);
        metrics.api.answered(200);
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("warden_api_requests_total{status=\"401\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("warden_api_requests_total{status=\"200\"} 1"),
            "{text}"
        );
    }
}
