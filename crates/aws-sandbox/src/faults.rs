//! Fault injection: which requests are throttled, fail, wait or lose their connection.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Faults the sandbox injects into AWS requests (never into `/_sandbox/` admin requests).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Probability (0..=1) that a request is answered `ThrottlingException`.
    pub throttle_rate: f64,
    /// The next N requests are throttled, whatever `throttle_rate` says.
    pub throttle_next: u32,
    /// Probability (0..=1) of an HTTP 5xx answer.
    pub error_rate: f64,
    /// Added before answering each request.
    pub latency: Duration,
    /// "Endpoint down": connections are closed without an answer.
    pub drop_connections: bool,
    /// When set, faults apply only to these operations (e.g. `"StartExecution"`).
    pub only_operations: Option<Vec<String>>,
    /// When set, faults apply only to requests signed with one of these access key ids (the
    /// SigV4 `Authorization: … Credential=KEY/…`): one client's path to the endpoint fails
    /// while the others' works, as when one host loses its route to a service.
    pub only_access_keys: Option<Vec<String>>,
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Injected {
    /// Close the connection without an answer.
    Drop,
    /// Answer `ThrottlingException`.
    Throttle,
    /// Answer HTTP 5xx.
    ServerError,
}

/// The faults decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Decision {
    pub latency: Duration,
    pub action: Option<Injected>,
}

impl Faults {
    /// True when faults apply to `operation` signed with `access_key`.
    pub(crate) fn applies_to(&self, operation: &str, access_key: Option<&str>) -> bool {
        self.only_operations
            .as_ref()
            .is_none_or(|ops| ops.iter().any(|op| op == operation))
            && self
                .only_access_keys
                .as_ref()
                .is_none_or(|keys| access_key.is_some_and(|k| keys.iter().any(|x| x == k)))
    }

    /// True when connections should be closed as soon as they are accepted: before the
    /// request is read, which is only right when faults apply to every operation and client.
    pub(crate) fn drops_at_accept(&self) -> bool {
        self.drop_connections && self.only_operations.is_none() && self.only_access_keys.is_none()
    }

    /// Decides the faults for one request (`access_key`: who signed it), consuming one of
    /// `throttle_next`.
    pub(crate) fn decide(
        &mut self,
        operation: &str,
        access_key: Option<&str>,
        mut roll: impl FnMut() -> f64,
    ) -> Decision {
        if !self.applies_to(operation, access_key) {
            return Decision::default();
        }
        let action = if self.drop_connections {
            Some(Injected::Drop)
        } else if self.throttle_next > 0 {
            self.throttle_next -= 1;
            Some(Injected::Throttle)
        } else if self.throttle_rate > 0.0 && roll() < self.throttle_rate {
            Some(Injected::Throttle)
        } else if self.error_rate > 0.0 && roll() < self.error_rate {
            Some(Injected::ServerError)
        } else {
            None
        };
        Decision {
            latency: self.latency,
            action,
        }
    }
}

/// [`Faults`] as the admin endpoint reads and writes it: durations in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FaultsJson {
    pub throttle_rate: f64,
    pub throttle_next: u32,
    pub error_rate: f64,
    pub latency_ms: u64,
    pub drop_connections: bool,
    pub only_operations: Option<Vec<String>>,
    pub only_access_keys: Option<Vec<String>>,
}

impl FaultsJson {
    /// Validates the rates and converts.
    pub(crate) fn into_faults(self) -> Result<Faults, String> {
        for (name, rate) in [
            ("throttle_rate", self.throttle_rate),
            ("error_rate", self.error_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        Ok(Faults {
            throttle_rate: self.throttle_rate,
            throttle_next: self.throttle_next,
            error_rate: self.error_rate,
            latency: Duration::from_millis(self.latency_ms),
            drop_connections: self.drop_connections,
            only_operations: self.only_operations,
            only_access_keys: self.only_access_keys,
        })
    }
}

impl From<&Faults> for FaultsJson {
    fn from(f: &Faults) -> Self {
        Self {
            throttle_rate: f.throttle_rate,
            throttle_next: f.throttle_next,
            error_rate: f.error_rate,
            latency_ms: u64::try_from(f.latency.as_millis()).unwrap_or(u64::MAX),
            drop_connections: f.drop_connections,
            only_operations: f.only_operations.clone(),
            only_access_keys: f.only_access_keys.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_next_counts_down_then_stops() {
        let mut faults = Faults {
            throttle_next: 2,
            ..Faults::default()
        };
        let never = || 1.0;
        assert_eq!(
            faults.decide("StartExecution", None, never).action,
            Some(Injected::Throttle)
        );
        assert_eq!(
            faults.decide("StartExecution", None, never).action,
            Some(Injected::Throttle)
        );
        assert_eq!(faults.decide("StartExecution", None, never).action, None);
    }

    #[test]
    fn only_operations_limits_every_fault() {
        let mut faults = Faults {
            throttle_rate: 1.0,
            drop_connections: true,
            latency: Duration::from_millis(5),
            only_operations: Some(vec!["StartExecution".into()]),
            ..Faults::default()
        };
        assert!(!faults.drops_at_accept());
        assert_eq!(
            faults.decide("DescribeExecution", None, || 0.0),
            Decision::default()
        );
        assert_eq!(
            faults.decide("StartExecution", None, || 0.0).action,
            Some(Injected::Drop)
        );
    }

    #[test]
    fn only_access_keys_limits_faults_to_one_client() {
        let mut faults = Faults {
            drop_connections: true,
            only_operations: Some(vec!["PutItem".into()]),
            only_access_keys: Some(vec!["LEADER".into()]),
            ..Faults::default()
        };
        assert!(!faults.drops_at_accept());
        let hit = |f: &mut Faults, op, key| f.decide(op, key, || 0.0).action;
        assert_eq!(
            hit(&mut faults, "PutItem", Some("LEADER")),
            Some(Injected::Drop)
        );
        assert_eq!(hit(&mut faults, "PutItem", Some("STANDBY")), None);
        assert_eq!(hit(&mut faults, "PutItem", None), None);
        assert_eq!(hit(&mut faults, "StartExecution", Some("LEADER")), None);
    }

    #[test]
    fn rates_roll_the_dice() {
        let mut faults = Faults {
            throttle_rate: 0.5,
            error_rate: 0.5,
            ..Faults::default()
        };
        assert_eq!(
            faults.decide("X", None, || 0.4).action,
            Some(Injected::Throttle)
        );
        let mut rolls = [0.9, 0.1].into_iter();
        let action = faults.decide("X", None, || rolls.next().unwrap()).action;
        assert_eq!(action, Some(Injected::ServerError));
    }

    #[test]
    fn admin_json_uses_milliseconds_and_checks_rates() {
        let json: FaultsJson =
            serde_json::from_str(r#"{"throttle_rate":0.5,"latency_ms":100}"#).unwrap();
        let faults = json.into_faults().unwrap();
        assert_eq!(faults.latency, Duration::from_millis(100));
        assert_eq!(FaultsJson::from(&faults).latency_ms, 100);
        let bad: FaultsJson = serde_json::from_str(r#"{"error_rate":2}"#).unwrap();
        assert!(bad.into_faults().is_err());
        assert!(serde_json::from_str::<FaultsJson>(r#"{"latency":1}"#).is_err());
    }
}
