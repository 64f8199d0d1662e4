//! Application status as wadm reports it: status types with their precedence, per-scaler
//! details, and the JSON shape published on `wadm.status.{lattice}.{app}`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StatusType {
    Waiting,
    #[default]
    Undeployed,
    #[serde(alias = "compensating")]
    Reconciling,
    #[serde(alias = "ready")]
    Deployed,
    Failed,
    Unhealthy,
}

impl StatusType {
    /// failed > undeployed > waiting > reconciling > unhealthy > deployed.
    fn rank(self) -> u8 {
        match self {
            Self::Failed => 5,
            Self::Undeployed => 4,
            Self::Waiting => 3,
            Self::Reconciling => 2,
            Self::Unhealthy => 1,
            Self::Deployed => 0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Undeployed => "undeployed",
            Self::Reconciling => "reconciling",
            Self::Deployed => "deployed",
            Self::Failed => "failed",
            Self::Unhealthy => "unhealthy",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StatusInfo {
    #[serde(rename = "type")]
    pub status_type: StatusType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl StatusInfo {
    pub fn new(status_type: StatusType, message: impl Into<String>) -> Self {
        Self {
            status_type,
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalerStatus {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub status: StatusInfo,
}

/// The status of one application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Status {
    pub status: StatusInfo,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scalers: Vec<ScalerStatus>,
    /// Deprecated in wadm; always empty.
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub components: Vec<Value>,
}

use serde_json::Value;

impl Status {
    /// The sum of the scalers' statuses (an app without scalers is `undeployed`).
    pub fn from_scalers(scalers: Vec<ScalerStatus>) -> Self {
        let status_type = scalers
            .iter()
            .map(|s| s.status.status_type)
            .max_by_key(|t| t.rank())
            .unwrap_or(StatusType::Undeployed);
        let message = scalers
            .iter()
            .map(|s| s.status.message.as_str())
            .filter(|m| !m.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            status: StatusInfo::new(status_type, message),
            scalers,
            ..Default::default()
        }
    }

    pub fn undeployed(message: &str) -> Self {
        Self {
            status: StatusInfo::new(StatusType::Undeployed, message),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaler(t: StatusType, message: &str) -> ScalerStatus {
        ScalerStatus {
            id: "x".into(),
            kind: "SpreadScaler".into(),
            name: "n".into(),
            status: StatusInfo::new(t, message),
        }
    }

    #[test]
    fn precedence_and_messages() {
        let s = Status::from_scalers(vec![
            scaler(StatusType::Deployed, ""),
            scaler(StatusType::Reconciling, "a"),
            scaler(StatusType::Failed, "b"),
        ]);
        assert_eq!(s.status.status_type, StatusType::Failed);
        assert_eq!(s.status.message, "a, b");
        assert_eq!(
            Status::from_scalers(vec![]).status.status_type,
            StatusType::Undeployed
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["status"]["type"], "failed");
        assert_eq!(json["scalers"][0]["kind"], "SpreadScaler");
    }
}
