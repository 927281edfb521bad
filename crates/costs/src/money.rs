//! Exact money: integer micro-units (10⁻⁶) of the report's currency, never floats.
//!
//! Sums are checked: an amount past ±9.2 × 10¹² currency units is an error
//! ([`MoneyError::Overflow`]), not a wrapped number.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Micro-units per currency unit.
pub const MICROS: i64 = 1_000_000;

/// An amount in micro-units. Serialized as a decimal string with six places
/// (`"42.687500"`), so no JSON reader turns it into a float.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

/// What can go wrong with amounts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// A sum or product left the representable range.
    #[error("the amount is too large")]
    Overflow,
    /// Not a decimal amount with at most six places.
    #[error("not an amount: expected a decimal number with at most six decimal places")]
    Invalid,
}

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(0);

    /// From micro-units.
    pub const fn from_micros(micros: i64) -> Self {
        Money(micros)
    }

    /// Whole currency units.
    pub fn from_units(units: i64) -> Result<Self, MoneyError> {
        units
            .checked_mul(MICROS)
            .map(Money)
            .ok_or(MoneyError::Overflow)
    }

    /// The amount in micro-units.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// `self + other`, checked.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.0
            .checked_add(other.0)
            .map(Money)
            .ok_or(MoneyError::Overflow)
    }

    /// `self - other`, checked.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.0
            .checked_sub(other.0)
            .map(Money)
            .ok_or(MoneyError::Overflow)
    }

    /// The sum of `amounts`, checked.
    pub fn sum<I: IntoIterator<Item = Money>>(amounts: I) -> Result<Money, MoneyError> {
        amounts
            .into_iter()
            .try_fold(Money::ZERO, |acc, m| acc.checked_add(m))
    }

    /// Whether the amount is below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let m = MICROS.unsigned_abs();
        write!(f, "{sign}{}.{:06}", abs / m, abs % m)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(frac) || frac.len() > 6 {
            return Err(MoneyError::Invalid);
        }
        if digits.contains('.') && frac.is_empty() {
            return Err(MoneyError::Invalid);
        }
        let units: i64 = whole.parse().map_err(|_| MoneyError::Overflow)?;
        let mut micros: i64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            let place = 10_i64.pow(5 - i as u32);
            micros += i64::from(b - b'0') * place;
        }
        let total = Money::from_units(units)?.checked_add(Money(micros))?;
        Ok(if neg { Money(-total.0) } else { total })
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        for (text, micros) in [
            ("0", 0),
            ("42.6875", 42_687_500),
            ("-0.000001", -1),
            ("7", 7_000_000),
            ("123456.654321", 123_456_654_321),
        ] {
            let m: Money = text.parse().unwrap();
            assert_eq!(m.micros(), micros, "{text}");
            assert_eq!(m.to_string().parse::<Money>().unwrap(), m);
        }
        assert_eq!(Money::from_micros(42_687_500).to_string(), "42.687500");
        assert_eq!(Money::from_micros(-5).to_string(), "-0.000005");
    }

    #[test]
    fn refuses_what_is_not_an_amount() {
        for bad in [
            "",
            "-",
            ".5",
            "1.",
            "1.2345678",
            "1e3",
            "1,5",
            " 1",
            "NaN",
            "--1",
        ] {
            assert_eq!(bad.parse::<Money>(), Err(MoneyError::Invalid), "{bad:?}");
        }
        assert_eq!(
            "99999999999999999999".parse::<Money>(),
            Err(MoneyError::Overflow)
        );
        assert_eq!("9300000000000".parse::<Money>(), Err(MoneyError::Overflow));
    }

    #[test]
    fn sums_are_checked() {
        let big = Money::from_micros(i64::MAX - 1);
        assert_eq!(
            Money::sum([big, Money::from_micros(2)]),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::sum([Money::from_micros(1), Money::from_micros(2)]).unwrap(),
            Money::from_micros(3)
        );
    }

    #[test]
    fn serializes_as_a_decimal_string() {
        let m = Money::from_micros(1_500_000);
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"1.500000\"");
        assert_eq!(serde_json::from_str::<Money>("\"1.5\"").unwrap(), m);
        assert!(
            serde_json::from_str::<Money>("1.5").is_err(),
            "a float is refused"
        );
        assert!(serde_json::from_str::<Money>("\"1.5e3\"").is_err());
    }
}
