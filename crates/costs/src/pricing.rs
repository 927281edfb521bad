//! The price sheet: what a unit of usage costs, in versions with validity ranges, so a price
//! change applies from its date on and never rewrites what was already charged.
//!
//! Prices are [`Money`] per unit (micro-units of the sheet's currency); usage quantities are
//! integers in small units (nanoseconds of CPU, byte-seconds of memory and storage, bytes
//! of egress, requests, micro-units of a custom meter). A cost is `price × quantity ÷ unit`
//! in 128-bit integers, rounded half up to the micro-unit once per category, so pricing is
//! exact to the micro-unit and independent of how usage was summed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::allocate::{Category, Costs};
use crate::money::{Money, MoneyError};

/// Hours in a month for monthly prices (OpenCost's and the cloud providers' 730).
pub const HOURS_PER_MONTH: u64 = 730;
const NANOS_PER_HOUR: u128 = 3_600 * 1_000_000_000;
const GIB: u128 = 1 << 30;
const SECS_PER_HOUR: u128 = 3_600;

/// What can go wrong with prices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// An amount overflowed.
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// Not an ISO 4217 code (three capital letters).
    #[error("the currency must be a three-letter ISO 4217 code such as USD or BRL")]
    Currency,
    /// A price below zero.
    #[error("prices cannot be negative ({0})")]
    Negative(String),
    /// A version that starts before or when the one in force started: history is not
    /// rewritten.
    #[error("a new price version must start after the current one ({0})")]
    BackDated(OffsetDateTime),
    /// No version covers the instant.
    #[error("no price version covers {0}")]
    NoPrice(OffsetDateTime),
    /// A stored sheet's versions are not in order or do not join up.
    #[error("the price versions must follow each other, each ending where the next starts")]
    Versions,
}

/// An ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Currency(String);

impl Currency {
    /// Validates `code` (three capital ASCII letters).
    pub fn new(code: &str) -> Result<Self, PriceError> {
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(code.to_owned()))
        } else {
            Err(PriceError::Currency)
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Currency::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A machine type of the capacity (the seed's n1-standard-8, n1-highmem-4, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePrice {
    /// Machine type.
    pub name: String,
    /// Price per hour.
    pub hourly: Money,
    /// How many of them run.
    pub count: u32,
}

/// A custom meter's price (usage the platform does not run itself: AI inference, tokens).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterPrice {
    /// Where its cost is reported.
    pub category: Category,
    /// Price per unit of the meter.
    pub per_unit: Money,
}

/// One version's prices.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prices {
    /// Per core-hour of CPU time.
    pub cpu_core_hour: Money,
    /// Per GiB-hour of memory.
    pub ram_gib_hour: Money,
    /// Per GPU-hour.
    pub gpu_hour: Money,
    /// Per GiB-month stored, by storage class (`standard`, `nearline`, `coldline`, …).
    pub storage_gib_month: BTreeMap<String, Money>,
    /// Per GiB of egress.
    pub egress_gib: Money,
    /// Per thousand requests, by route class (`fhir-read`, `fhir-search`, …).
    pub requests_per_thousand: BTreeMap<String, Money>,
    /// Custom meters by name.
    pub meters: BTreeMap<String, MeterPrice>,
    /// The capacity: machines and how many run.
    pub nodes: Vec<NodePrice>,
    /// Managed databases, per month.
    pub database_month: Money,
    /// Load balancers, per month.
    pub load_balancer_month: Money,
    /// Flat platform overhead (monitoring, the control plane), per month.
    pub overhead_month: Money,
    /// What each plan is sold for per month (the tenant's subscription; not a cost of the
    /// platform: plan recommendations price their savings with it).
    pub plan_month: BTreeMap<String, Money>,
}

impl Prices {
    fn check(&self) -> Result<(), PriceError> {
        let neg = |what: &str, m: Money| {
            if m.is_negative() {
                Err(PriceError::Negative(what.to_owned()))
            } else {
                Ok(())
            }
        };
        neg("cpu_core_hour", self.cpu_core_hour)?;
        neg("ram_gib_hour", self.ram_gib_hour)?;
        neg("gpu_hour", self.gpu_hour)?;
        neg("egress_gib", self.egress_gib)?;
        neg("database_month", self.database_month)?;
        neg("load_balancer_month", self.load_balancer_month)?;
        neg("overhead_month", self.overhead_month)?;
        for (k, m) in &self.storage_gib_month {
            neg(&format!("storage_gib_month.{k}"), *m)?;
        }
        for (k, m) in &self.requests_per_thousand {
            neg(&format!("requests_per_thousand.{k}"), *m)?;
        }
        for (k, m) in &self.meters {
            neg(&format!("meters.{k}"), m.per_unit)?;
        }
        for n in &self.nodes {
            neg(&format!("nodes.{}", n.name), n.hourly)?;
        }
        for (k, m) in &self.plan_month {
            neg(&format!("plan_month.{k}"), *m)?;
        }
        Ok(())
    }

    /// The cost of `usage` at these prices. A storage class, route class or meter without
    /// a price costs nothing (and is reported by [`Prices::unpriced`]).
    pub fn cost(&self, usage: &Usage) -> Result<Costs, PriceError> {
        let storage = usage
            .storage_byte_seconds
            .iter()
            .map(|(class, q)| {
                let p = self
                    .storage_gib_month
                    .get(class)
                    .copied()
                    .unwrap_or_default();
                priced(p, *q, GIB * SECS_PER_HOUR * u128::from(HOURS_PER_MONTH))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let api = usage
            .requests
            .iter()
            .map(|(class, n)| {
                let p = self
                    .requests_per_thousand
                    .get(class)
                    .copied()
                    .unwrap_or_default();
                priced(p, *n, 1_000)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut costs = Costs::default()
            .with(
                Category::Cpu,
                priced(self.cpu_core_hour, usage.cpu_nanos, NANOS_PER_HOUR)?,
            )
            .with(
                Category::Ram,
                priced(
                    self.ram_gib_hour,
                    usage.ram_byte_seconds,
                    GIB * SECS_PER_HOUR,
                )?,
            )
            .with(
                Category::Gpu,
                priced(self.gpu_hour, usage.gpu_nanos, NANOS_PER_HOUR)?,
            )
            .with(Category::Storage, Money::sum(storage)?)
            .with(
                Category::Network,
                priced(self.egress_gib, usage.egress_bytes, GIB)?,
            )
            .with(Category::Api, Money::sum(api)?);
        for (name, q) in &usage.meters {
            if let Some(m) = self.meters.get(name) {
                let c = costs
                    .get(m.category)
                    .checked_add(priced(m.per_unit, *q, 1_000_000)?)?;
                costs = costs.with(m.category, c);
            }
        }
        Ok(costs)
    }

    /// Classes and meters in `usage` that these prices do not name.
    pub fn unpriced<'u>(&self, usage: &'u Usage) -> Vec<&'u str> {
        let storage = usage
            .storage_byte_seconds
            .keys()
            .filter(|k| !self.storage_gib_month.contains_key(*k));
        let requests = usage
            .requests
            .keys()
            .filter(|k| !self.requests_per_thousand.contains_key(*k));
        let meters = usage
            .meters
            .keys()
            .filter(|k| !self.meters.contains_key(*k));
        storage
            .chain(requests)
            .chain(meters)
            .map(String::as_str)
            .collect()
    }

    /// What the capacity (nodes) costs over `seconds`.
    pub fn capacity(&self, seconds: u64) -> Result<Money, PriceError> {
        let per_hour = self
            .nodes
            .iter()
            .map(|n| priced(n.hourly, u64::from(n.count), 1))
            .collect::<Result<Vec<_>, _>>()?;
        priced(Money::sum(per_hour)?, seconds, SECS_PER_HOUR)
    }

    /// The monthly costs (database, load balancer, overhead) over `seconds`.
    pub fn monthly(&self, seconds: u64) -> Result<Costs, PriceError> {
        let month = SECS_PER_HOUR * u128::from(HOURS_PER_MONTH);
        Ok(Costs::default()
            .with(
                Category::Database,
                priced(self.database_month, seconds, month)?,
            )
            .with(
                Category::LoadBalancer,
                priced(self.load_balancer_month, seconds, month)?,
            ))
    }

    /// The flat overhead over `seconds`.
    pub fn overhead(&self, seconds: u64) -> Result<Money, PriceError> {
        priced(
            self.overhead_month,
            seconds,
            SECS_PER_HOUR * u128::from(HOURS_PER_MONTH),
        )
    }
}

/// `price × quantity ÷ unit`, rounded half up to the micro-unit.
fn priced(price: Money, quantity: u64, unit: u128) -> Result<Money, PriceError> {
    let p = u128::from(price.micros().max(0).unsigned_abs());
    let num = p
        .checked_mul(u128::from(quantity))
        .ok_or(MoneyError::Overflow)?;
    let micros = (num + unit / 2) / unit;
    i64::try_from(micros)
        .map(Money::from_micros)
        .map_err(|_| MoneyError::Overflow.into())
}

/// Measured usage of one tenant in one interval.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Usage {
    /// CPU time, in nanoseconds.
    pub cpu_nanos: u64,
    /// Memory held × time, in byte-seconds.
    pub ram_byte_seconds: u64,
    /// GPU time, in nanoseconds.
    pub gpu_nanos: u64,
    /// Stored bytes × time, in byte-seconds, by storage class.
    pub storage_byte_seconds: BTreeMap<String, u64>,
    /// Bytes sent out.
    pub egress_bytes: u64,
    /// Requests by route class.
    pub requests: BTreeMap<String, u64>,
    /// Custom meters, in micro-units of each meter's unit.
    pub meters: BTreeMap<String, u64>,
}

/// One version of the prices and when it applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceVersion {
    /// In force from (inclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub valid_from: OffsetDateTime,
    /// In force until (exclusive); `None` for the current version.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub valid_until: Option<OffsetDateTime>,
    /// The prices.
    pub prices: Prices,
}

/// The price sheet: one currency, versions in order, each ending where the next starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceSheet {
    currency: Currency,
    versions: Vec<PriceVersion>,
}

impl<'de> Deserialize<'de> for PriceSheet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            currency: Currency,
            versions: Vec<PriceVersion>,
        }
        let raw = Raw::deserialize(d)?;
        PriceSheet::from_versions(raw.currency, raw.versions).map_err(serde::de::Error::custom)
    }
}

impl PriceSheet {
    /// A sheet whose first prices apply from `from`.
    pub fn new(
        currency: Currency,
        from: OffsetDateTime,
        prices: Prices,
    ) -> Result<Self, PriceError> {
        prices.check()?;
        Ok(Self {
            currency,
            versions: vec![PriceVersion {
                valid_from: from,
                valid_until: None,
                prices,
            }],
        })
    }

    /// A sheet from stored versions, checked: at least one, in order, each ending where
    /// the next starts, the last open-ended, no negative price.
    pub fn from_versions(
        currency: Currency,
        versions: Vec<PriceVersion>,
    ) -> Result<Self, PriceError> {
        if versions.is_empty() {
            return Err(PriceError::Versions);
        }
        for v in &versions {
            v.prices.check()?;
        }
        for pair in versions.windows(2) {
            if let [a, b] = pair
                && (a.valid_until != Some(b.valid_from) || b.valid_from <= a.valid_from)
            {
                return Err(PriceError::Versions);
            }
        }
        if versions.last().is_some_and(|v| v.valid_until.is_some()) {
            return Err(PriceError::Versions);
        }
        Ok(Self { currency, versions })
    }

    /// The currency.
    pub fn currency(&self) -> &Currency {
        &self.currency
    }

    /// Every version, oldest first.
    pub fn versions(&self) -> &[PriceVersion] {
        &self.versions
    }

    /// New prices from `from` on: the version in force ends there. Refused unless `from` is
    /// after the start of the version in force (no rewriting of history).
    pub fn change(&mut self, from: OffsetDateTime, prices: Prices) -> Result<(), PriceError> {
        prices.check()?;
        let current = self.versions.last_mut().ok_or(PriceError::NoPrice(from))?;
        if from <= current.valid_from {
            return Err(PriceError::BackDated(current.valid_from));
        }
        current.valid_until = Some(from);
        self.versions.push(PriceVersion {
            valid_from: from,
            valid_until: None,
            prices,
        });
        Ok(())
    }

    /// The prices in force at `at`.
    pub fn at(&self, at: OffsetDateTime) -> Result<&Prices, PriceError> {
        let i = self.versions.partition_point(|v| v.valid_from <= at);
        i.checked_sub(1)
            .and_then(|i| self.versions.get(i))
            .map(|v| &v.prices)
            .ok_or(PriceError::NoPrice(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn usd(x: &str) -> Money {
        x.parse().unwrap()
    }

    fn seed_prices() -> Prices {
        Prices {
            cpu_core_hour: usd("0.0475"),
            ram_gib_hour: usd("0.00637"),
            gpu_hour: usd("2.48"),
            storage_gib_month: BTreeMap::from([
                ("standard".into(), usd("0.02")),
                ("coldline".into(), usd("0.004")),
            ]),
            egress_gib: usd("0.12"),
            requests_per_thousand: BTreeMap::from([("fhir-read".into(), usd("0.01"))]),
            meters: BTreeMap::from([(
                "inference-tokens".into(),
                MeterPrice {
                    category: Category::Ai,
                    per_unit: usd("0.000002"),
                },
            )]),
            nodes: vec![
                NodePrice {
                    name: "n1-standard-8".into(),
                    hourly: usd("0.38"),
                    count: 3,
                },
                NodePrice {
                    name: "n1-standard-16+V100".into(),
                    hourly: usd("3.24"),
                    count: 1,
                },
            ],
            database_month: usd("730"),
            load_balancer_month: usd("18.25"),
            overhead_month: usd("1460"),
            plan_month: BTreeMap::from([("small".into(), usd("99"))]),
        }
    }

    #[test]
    fn usage_times_prices_exactly() {
        let p = seed_prices();
        let u = Usage {
            cpu_nanos: 2 * 3_600 * 1_000_000_000,    // 2 core-hours
            ram_byte_seconds: 4 * (1 << 30) * 3_600, // 4 GiB-hours
            gpu_nanos: 1_800 * 1_000_000_000,        // half a GPU-hour
            storage_byte_seconds: BTreeMap::from([(
                "standard".into(),
                10 * (1 << 30) * 3_600 * 730, // 10 GiB-months
            )]),
            egress_bytes: 1 << 30,
            requests: BTreeMap::from([("fhir-read".into(), 2_500)]),
            meters: BTreeMap::from([("inference-tokens".into(), 1_000_000 * 1_000_000)]),
        };
        let c = p.cost(&u).unwrap();
        assert_eq!(c.get(Category::Cpu), usd("0.095"));
        assert_eq!(c.get(Category::Ram), usd("0.02548"));
        assert_eq!(c.get(Category::Gpu), usd("1.24"));
        assert_eq!(c.get(Category::Storage), usd("0.2"));
        assert_eq!(c.get(Category::Network), usd("0.12"));
        assert_eq!(c.get(Category::Api), usd("0.025"));
        assert_eq!(c.get(Category::Ai), usd("2"), "a million tokens");
        assert!(p.unpriced(&u).is_empty());
    }

    #[test]
    fn rounding_is_half_up_once_per_category() {
        let p = Prices {
            cpu_core_hour: usd("0.000001"),
            ..Prices::default()
        };
        let half = Usage {
            cpu_nanos: 1_800 * 1_000_000_000,
            ..Usage::default()
        };
        assert_eq!(
            p.cost(&half).unwrap().get(Category::Cpu),
            Money::from_micros(1)
        );
        let less = Usage {
            cpu_nanos: 1_799 * 1_000_000_000,
            ..Usage::default()
        };
        assert_eq!(p.cost(&less).unwrap().get(Category::Cpu), Money::ZERO);
    }

    #[test]
    fn capacity_monthly_and_overhead() {
        let p = seed_prices();
        assert_eq!(p.capacity(3_600).unwrap(), usd("4.38"), "3 × 0.38 + 3.24");
        assert_eq!(p.capacity(24 * 3_600).unwrap(), usd("105.12"));
        let day = p.monthly(24 * 3_600).unwrap();
        assert_eq!(day.get(Category::Database), usd("24"));
        assert_eq!(day.get(Category::LoadBalancer), usd("0.6"));
        assert_eq!(p.overhead(3_600).unwrap(), usd("2"));
    }

    #[test]
    fn unpriced_classes_are_named_and_cost_nothing() {
        let p = seed_prices();
        let u = Usage {
            storage_byte_seconds: BTreeMap::from([("archive".into(), 1 << 40)]),
            requests: BTreeMap::from([("bundle".into(), 10)]),
            meters: BTreeMap::from([("gpu-seconds".into(), 5)]),
            ..Usage::default()
        };
        assert_eq!(p.cost(&u).unwrap().total().unwrap(), Money::ZERO);
        assert_eq!(p.unpriced(&u), ["archive", "bundle", "gpu-seconds"]);
    }

    #[test]
    fn a_price_change_applies_from_its_date_and_never_rewrites_history() {
        let brl = Currency::new("BRL").unwrap();
        let mut sheet =
            PriceSheet::new(brl, datetime!(2026-01-01 0:00 UTC), seed_prices()).unwrap();
        let u = Usage {
            cpu_nanos: 3_600 * 1_000_000_000,
            ..Usage::default()
        };
        let before = sheet
            .at(datetime!(2026-06-30 23:00 UTC))
            .unwrap()
            .cost(&u)
            .unwrap();
        let dearer = Prices {
            cpu_core_hour: usd("0.05"),
            ..seed_prices()
        };
        sheet
            .change(datetime!(2026-07-01 0:00 UTC), dearer)
            .unwrap();
        assert_eq!(
            sheet
                .at(datetime!(2026-06-30 23:00 UTC))
                .unwrap()
                .cost(&u)
                .unwrap(),
            before
        );
        assert_eq!(
            sheet
                .at(datetime!(2026-07-01 0:00 UTC))
                .unwrap()
                .cost(&u)
                .unwrap()
                .get(Category::Cpu),
            usd("0.05")
        );
        assert_eq!(
            sheet.versions()[0].valid_until,
            Some(datetime!(2026-07-01 0:00 UTC))
        );
        assert_eq!(
            sheet.change(datetime!(2026-07-01 0:00 UTC), seed_prices()),
            Err(PriceError::BackDated(datetime!(2026-07-01 0:00 UTC)))
        );
        assert_eq!(
            sheet.at(datetime!(2025-12-31 23:59 UTC)),
            Err(PriceError::NoPrice(datetime!(2025-12-31 23:59 UTC)))
        );
        assert_eq!(sheet.currency().as_str(), "BRL");
    }

    #[test]
    fn bad_prices_and_currencies_are_refused() {
        for bad in ["usd", "US", "USDT", "U$D", ""] {
            assert_eq!(Currency::new(bad), Err(PriceError::Currency), "{bad:?}");
        }
        let negative = Prices {
            egress_gib: usd("-0.01"),
            ..Prices::default()
        };
        let usd_code = Currency::new("USD").unwrap();
        assert_eq!(
            PriceSheet::new(usd_code, datetime!(2026-01-01 0:00 UTC), negative),
            Err(PriceError::Negative("egress_gib".into()))
        );
        let bad: Result<Prices, _> =
            serde_json::from_str(r#"{"cpu_core_hour":"0.1","cpu_core_hours":"0.2"}"#);
        assert!(
            bad.is_err(),
            "an unknown price name is refused, not ignored"
        );
    }

    #[test]
    fn overflow_is_an_error() {
        let p = Prices {
            cpu_core_hour: Money::from_micros(i64::MAX),
            ..Prices::default()
        };
        let u = Usage {
            cpu_nanos: u64::MAX,
            ..Usage::default()
        };
        assert_eq!(p.cost(&u), Err(PriceError::Money(MoneyError::Overflow)));
    }

    #[test]
    fn stored_sheets_round_trip_and_are_checked() {
        let mut sheet = PriceSheet::new(
            Currency::new("BRL").unwrap(),
            datetime!(2026-01-01 0:00 UTC),
            seed_prices(),
        )
        .unwrap();
        sheet
            .change(datetime!(2026-07-01 0:00 UTC), Prices::default())
            .unwrap();
        let json = serde_json::to_value(&sheet).unwrap();
        let back: PriceSheet = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, sheet);
        // Versions that do not join up, an end on the last one, none, a negative price.
        let mut gap = json.clone();
        gap["versions"][0]["valid_until"] = "2026-06-01T00:00:00Z".into();
        let mut closed = json.clone();
        closed["versions"][1]["valid_until"] = "2027-01-01T00:00:00Z".into();
        let mut empty = json.clone();
        empty["versions"] = serde_json::json!([]);
        let mut negative = json;
        negative["versions"][1]["prices"]["cpu_core_hour"] = "-1".into();
        for bad in [gap, closed, empty, negative] {
            assert!(serde_json::from_value::<PriceSheet>(bad).is_err());
        }
    }
}
