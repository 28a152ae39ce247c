//! The scenarios: what fails, for how long, and the load's timeline around
//! it. Pure: names, selection and timings are unit-tested.

use std::time::Duration;

/// A shared local server the suite stops (`./dev stop NAME`) and restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Postgres,
    Redis,
    Ferretdb,
    Opensearch,
    Kafka,
}

impl Server {
    /// The component name `./dev` knows it by.
    pub fn component(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::Ferretdb => "ferretdb",
            Self::Opensearch => "opensearch",
            Self::Kafka => "kafka",
        }
    }
}

/// One of the suite's own service processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    S1,
    S2,
    S3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `kill -9` the service, then start it again.
    Kill(Service),
    /// Stop a shared server for the outage time, then start it again.
    Stop(Server),
    /// A second S2 joins the consumer group, then leaves (SIGTERM).
    Rebalance,
    /// Records S2 can never process, written straight to the command topic.
    Poison,
}

/// Every scenario, in the order a full run uses: the ones that are expected
/// to leave a partition stalled (until S2 is fixed) come last, so they do
/// not spoil the others.
pub const ALL: [Scenario; 10] = [
    Scenario::Kill(Service::S2),
    Scenario::Kill(Service::S3),
    Scenario::Kill(Service::S1),
    Scenario::Rebalance,
    Scenario::Stop(Server::Postgres),
    Scenario::Stop(Server::Redis),
    Scenario::Stop(Server::Ferretdb),
    Scenario::Stop(Server::Opensearch),
    Scenario::Stop(Server::Kafka),
    Scenario::Poison,
];

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill(Service::S1) => "kill-s1",
            Self::Kill(Service::S2) => "kill-s2",
            Self::Kill(Service::S3) => "kill-s3",
            Self::Stop(Server::Postgres) => "stop-postgres",
            Self::Stop(Server::Redis) => "stop-redis",
            Self::Stop(Server::Ferretdb) => "stop-ferretdb",
            Self::Stop(Server::Opensearch) => "stop-opensearch",
            Self::Stop(Server::Kafka) => "stop-kafka",
            Self::Rebalance => "rebalance",
            Self::Poison => "poison",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Kill(Service::S1) => "kill -9 S1 while requests are in flight, restart it",
            Self::Kill(Service::S2) => "kill -9 S2 under load, start it again 5 s later",
            Self::Kill(Service::S3) => "kill -9 S3 under load, restart it 5 s later",
            Self::Stop(_) => "stop the server for the outage time (./dev stop), then ./dev up",
            Self::Rebalance => "a second S2 joins the group under load, then leaves (SIGTERM)",
            Self::Poison => {
                "malformed JSON, unknown type, control characters and an oversized record \
                 written straight to the command topic"
            }
        }
    }

    /// Load before the fault, how long the fault lasts, load after it.
    pub fn timeline(self, outage: Duration) -> Timeline {
        let s = Duration::from_secs;
        match self {
            Self::Stop(_) => Timeline {
                before: s(8),
                fault: outage,
                after: s(8),
            },
            Self::Kill(Service::S1) => Timeline {
                before: s(8),
                fault: Duration::ZERO,
                after: s(8),
            },
            Self::Kill(_) => Timeline {
                before: s(8),
                fault: s(5),
                after: s(8),
            },
            Self::Rebalance => Timeline {
                before: s(8),
                fault: s(12),
                after: s(8),
            },
            Self::Poison => Timeline {
                before: s(6),
                fault: Duration::ZERO,
                after: s(6),
            },
        }
    }
}

/// When the fault starts and ends, relative to the start of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    pub before: Duration,
    pub fault: Duration,
    pub after: Duration,
}

impl Timeline {
    /// The whole load; the fault's restart time comes on top (the load keeps
    /// running while a server restarts).
    pub fn load(self) -> Duration {
        self.before + self.fault + self.after
    }
}

/// The scenarios named on the command line (all of them when none is), in
/// the order given; an unknown name is an error listing the known ones.
pub fn select(names: &[String]) -> Result<Vec<Scenario>, String> {
    if names.is_empty() {
        return Ok(ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            ALL.iter().copied().find(|s| s.name() == n).ok_or_else(|| {
                let known: Vec<&str> = ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario '{n}'; known: {}", known.join(", "))
            })
        })
        .collect()
}

/// `--list`: one line per scenario.
pub fn listing() -> String {
    ALL.iter()
        .map(|s| format!("{:<16} {}\n", s.name(), s.describe()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_has_a_unique_name_that_selects_it() {
        let names: Vec<String> = ALL.iter().map(|s| s.name().to_owned()).collect();
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), ALL.len());
        assert_eq!(select(&names).unwrap(), ALL.to_vec());
        assert_eq!(listing().lines().count(), ALL.len());
    }

    #[test]
    fn selection_keeps_the_order_given_and_rejects_unknown_names() {
        let picked = select(&["poison".into(), "kill-s2".into()]).unwrap();
        assert_eq!(picked, [Scenario::Poison, Scenario::Kill(Service::S2)]);
        let err = select(&["kill-s4".into()]).unwrap_err();
        assert!(
            err.contains("kill-s4") && err.contains("stop-kafka"),
            "{err}"
        );
        assert_eq!(select(&[]).unwrap().len(), ALL.len());
    }

    #[test]
    fn outages_last_as_long_as_asked_and_the_run_stays_bounded() {
        let outage = Duration::from_secs(30);
        let t = Scenario::Stop(Server::Kafka).timeline(outage);
        assert_eq!(t.fault, outage);
        assert_eq!(t.load(), Duration::from_secs(46));
        let total: Duration = ALL.iter().map(|s| s.timeline(outage).load()).sum();
        // Load only; restarts and drains come on top and are bounded separately.
        assert!(total <= Duration::from_secs(330), "{total:?}");
        assert_eq!(Server::Ferretdb.component(), "ferretdb");
    }
}
