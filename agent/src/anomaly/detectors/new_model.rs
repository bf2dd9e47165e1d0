//! The first use of a model by an identity whose baseline is big enough to know its models.
use super::{Detector, ExchangeFacts, Finding};
use crate::{
    anomaly::baseline::Recorded, audit::governance::AlertDetails, config::anomaly::NewModelConfig,
};

pub fn judge(
    config: &NewModelConfig,
    recorded: &Recorded<'_>,
    facts: &ExchangeFacts,
) -> Option<Finding> {
    let model = facts.model.as_deref()?;
    let known = recorded.stats.requests;
    if !recorded.new_model || known < config.min_baseline_requests {
        return None;
    }
    Some(Finding {
        detector: Detector::NewModel,
        action: config.action,
        summary: format!(
            "first use of model {model:?} (not among the models of its {known} exchanges on record)"
        ),
        details: AlertDetails {
            observed: 1.0,
            threshold: 0.0,
            baseline_hours: Some(recorded.stats.span_hours),
            model: Some(model.to_owned()),
            ..AlertDetails::default()
        },
    })
}
