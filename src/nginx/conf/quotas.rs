//! `cql_limit_req`, `cql_limit_conn`, `cql_limit_in_flight` and `cql_dry_run`: the limits
//! of each identity, counted in the zones the `stream` block declares (see [`super::zones`]).

use ngx::ffi::{ngx_command_t, NGX_CONF_TAKE1, NGX_CONF_TAKE12, NGX_CONF_TAKE2};
use ngx::ngx_string;

use super::super::limit_zones::Zones;
use super::{duplicate, inherit, on_off, setting, At, Located, Reading, Refusal};
// MAX_COUNT: the largest cap of `cql_limit_conn` and `cql_limit_in_flight`.
use crate::limits::{Counter, MAX_COUNT};
use crate::session::{AuthMode, CountLimit, Quotas, RateLimit};

/// The largest `burst=` of `cql_limit_req`.
const MAX_BURST: u32 = 1_000_000;

/// The limit directives of a block; `None` is unset.
#[derive(Default)]
pub(super) struct QuotasConf {
    /// `cql_limit_req`: zones and bursts, where the first is.
    pub limit_req: Option<Located<Vec<(String, u32)>>>,
    /// `cql_limit_conn` and `cql_limit_in_flight`: zones, what they count, and the caps.
    pub limit_counts: Option<Located<Vec<(String, Counter, u32)>>>,
    pub dry_run: Option<Located<bool>>,
}

pub(super) const COMMANDS: [ngx_command_t; 4] = [
    setting(ngx_string!("cql_limit_req"), NGX_CONF_TAKE12, set_limit_req),
    setting(
        ngx_string!("cql_limit_conn"),
        NGX_CONF_TAKE2,
        set_limit_conn,
    ),
    setting(
        ngx_string!("cql_limit_in_flight"),
        NGX_CONF_TAKE2,
        set_limit_in_flight,
    ),
    setting(ngx_string!("cql_dry_run"), NGX_CONF_TAKE1, set_dry_run),
];

setting_handlers! {
    set_limit_req => quotas: limit_req;
    set_limit_conn => quotas: limit_conn;
    set_limit_in_flight => quotas: limit_in_flight;
    set_dry_run => quotas: dry_run;
}

/// `cql_limit_req zone=NAME [burst=N]`
fn limit_req(conf: &mut QuotasConf, args: &[&str], reading: &Reading) -> Result<(), String> {
    let mut zone = None;
    let mut burst = 0;
    for arg in args {
        if let Some(name) = arg.strip_prefix("zone=").filter(|n| !n.is_empty()) {
            zone = Some(name.to_string());
        } else if let Some(n) = arg.strip_prefix("burst=") {
            burst = n
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= MAX_BURST)
                .ok_or_else(|| format!("invalid burst \"{n}\": expected 0 to {MAX_BURST}"))?;
        } else {
            return Err(format!("invalid parameter \"{arg}\""));
        }
    }
    let Some(zone) = zone else {
        return Err("takes zone=name [burst=N]".to_string());
    };
    let reqs = conf
        .limit_req
        .get_or_insert_with(|| reading.locate(Vec::new()));
    if reqs.value.iter().any(|(z, _)| *z == zone) {
        return Err(format!("names zone \"{zone}\" twice"));
    }
    reqs.value.push((zone, burst));
    Ok(())
}

/// `cql_limit_conn ZONE N`
fn limit_conn(conf: &mut QuotasConf, args: &[&str], reading: &Reading) -> Result<(), String> {
    limit_count(conf, Counter::Connections, args, reading)
}

/// `cql_limit_in_flight ZONE N`
fn limit_in_flight(conf: &mut QuotasConf, args: &[&str], reading: &Reading) -> Result<(), String> {
    limit_count(conf, Counter::InFlight, args, reading)
}

fn limit_count(
    conf: &mut QuotasConf,
    counter: Counter,
    args: &[&str],
    reading: &Reading,
) -> Result<(), String> {
    let [zone, max] = args else {
        return Err("takes a zone and a number".to_string());
    };
    let max = max
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_COUNT).contains(n))
        .ok_or_else(|| format!("invalid number \"{max}\": expected 1 to {MAX_COUNT}"))?;
    let counts = conf
        .limit_counts
        .get_or_insert_with(|| reading.locate(Vec::new()));
    if counts
        .value
        .iter()
        .any(|(z, c, _)| z == zone && *c == counter)
    {
        return Err(format!("names zone \"{zone}\" twice"));
    }
    counts.value.push((zone.to_string(), counter, max));
    Ok(())
}

/// `cql_dry_run on | off`
fn dry_run(conf: &mut QuotasConf, args: &[&str], reading: &Reading) -> Result<(), String> {
    if conf.dry_run.is_some() {
        return duplicate();
    }
    conf.dry_run = Some(reading.locate(on_off(args)?));
    Ok(())
}

impl QuotasConf {
    /// Unset directives take the `stream` block's values.
    pub(super) fn inherit(&mut self, parent: &QuotasConf) {
        inherit(&mut self.limit_req, &parent.limit_req);
        inherit(&mut self.limit_counts, &parent.limit_counts);
        inherit(&mut self.dry_run, &parent.dry_run);
    }

    /// Whether `cql_dry_run on`.
    pub(super) fn is_dry_run(&self) -> bool {
        self.dry_run.as_ref().is_some_and(|d| d.value)
    }

    /// Where the first `cql_limit_req` is.
    pub(super) fn limit_req_at(&self) -> Option<&At> {
        self.limit_req.as_ref().map(|l| &l.at)
    }

    /// The server's limits, their zones found among `zones`, those the `stream` block
    /// declares (`None`: there is no stream configuration to find them in).
    pub(super) fn quotas(&self, zones: Option<&Zones>, auth: AuthMode) -> Result<Quotas, Refusal> {
        let mut quotas = Quotas::default();
        if self.limit_req.is_none() && self.limit_counts.is_none() {
            if let Some(dry) = self.dry_run.as_ref().filter(|d| d.value) {
                if auth == AuthMode::Off {
                    return Err(Refusal::new(
                        Some(&dry.at),
                        "\"cql_dry_run\" needs \"cql_auth\": without it the proxy decides nothing"
                            .to_string(),
                    ));
                }
            }
            return Ok(quotas);
        }
        let first = self
            .limit_req
            .as_ref()
            .map(|l| &l.at)
            .or(self.limit_counts.as_ref().map(|l| &l.at));
        if auth == AuthMode::Off {
            return Err(Refusal::new(
                first,
                "the cql_limit_* directives need \"cql_auth\": the limits are per identity"
                    .to_string(),
            ));
        }
        let Some(zones) = zones else {
            return Err(Refusal::new(first, "no stream configuration".to_string()));
        };
        if let Some(reqs) = &self.limit_req {
            for (zone, burst) in &reqs.value {
                let Some((limit, rate)) = zones.rate(zone) else {
                    return Err(Refusal::new(
                        Some(&reqs.at),
                        format!("\"cql_limit_req\": unknown zone \"{zone}\": declare it with cql_limit_req_zone in the stream block"),
                    ));
                };
                if *burst > rate.max_burst() {
                    return Err(Refusal::new(
                        Some(&reqs.at),
                        format!(
                            "\"cql_limit_req\": burst={burst} of zone \"{zone}\" is too large \
                             for its rate {rate}: at most {}",
                            rate.max_burst()
                        ),
                    ));
                }
                quotas.rates.push(RateLimit {
                    zone: limit,
                    rate,
                    burst: *burst,
                });
            }
        }
        if let Some(counts) = &self.limit_counts {
            for (zone, counter, max) in &counts.value {
                let Some(limit) = zones.count(zone) else {
                    let directive = match counter {
                        Counter::Connections => "cql_limit_conn",
                        Counter::InFlight => "cql_limit_in_flight",
                    };
                    return Err(Refusal::new(
                        Some(&counts.at),
                        format!("\"{directive}\": unknown zone \"{zone}\": declare it with cql_limit_conn_zone in the stream block"),
                    ));
                };
                quotas.counts.push(CountLimit {
                    zone: limit,
                    counter: *counter,
                    max: *max,
                });
            }
        }
        Ok(quotas)
    }
}
