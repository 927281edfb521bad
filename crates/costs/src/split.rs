//! Dividing an amount by weights so the parts add up to the whole, exactly.
//!
//! Largest remainder (Hamilton): each part gets the floor of its exact share; the micro-units
//! left over go, one each, to the parts with the largest remainders (ties to the earlier
//! part), so every split is deterministic and `Σ parts = amount`. Negative amounts (negative
//! idle, a refund) split as the negation of the positive split.

use crate::money::{Money, MoneyError};

/// Splits `amount` in proportion to `weights` (non-negative). `None` when no weight is
/// positive: there is nobody to give the amount to.
pub fn by_weight(amount: Money, weights: &[u64]) -> Option<Vec<Money>> {
    let total: u128 = weights.iter().map(|w| u128::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let neg = amount.is_negative();
    let abs = u128::from(amount.micros().unsigned_abs());
    let mut parts = Vec::with_capacity(weights.len());
    let mut rems = Vec::with_capacity(weights.len());
    let mut given: u128 = 0;
    for (i, w) in weights.iter().enumerate() {
        // abs < 2^63 and w < 2^64: the product fits in u128.
        let p = abs * u128::from(*w);
        let (q, r) = (p / total, p % total);
        given += q;
        parts.push(q);
        if *w > 0 {
            rems.push((r, i));
        }
    }
    // Σ floor(share) ≥ abs − (number of weighted parts − 1): the leftover is fewer micro-units
    // than weighted parts, so one each is enough.
    let left = usize::try_from(abs - given).ok()?;
    rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in rems.into_iter().take(left) {
        parts[i] += 1;
    }
    parts
        .into_iter()
        .map(|p| {
            let v = i64::try_from(p).ok()?;
            Some(Money::from_micros(if neg { -v } else { v }))
        })
        .collect()
}

/// Splits `amount` in proportion to amounts of money (negative weights count as zero).
pub fn by_money(amount: Money, weights: &[Money]) -> Option<Vec<Money>> {
    let w: Vec<u64> = weights
        .iter()
        .map(|m| m.micros().max(0).unsigned_abs())
        .collect();
    by_weight(amount, &w)
}

/// Splits `amount` into `n` equal parts (the first ones get the extra micro-units).
pub fn evenly(amount: Money, n: usize) -> Option<Vec<Money>> {
    by_weight(amount, &vec![1; n])
}

/// Adds `parts` into `into`, element by element, checked.
pub fn add_into(into: &mut [Money], parts: &[Money]) -> Result<(), MoneyError> {
    for (a, b) in into.iter_mut().zip(parts) {
        *a = a.checked_add(*b)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(x: i64) -> Money {
        Money::from_micros(x)
    }

    #[test]
    fn thirds_and_ties() {
        assert_eq!(
            evenly(m(16_000_000), 3).unwrap(),
            vec![m(5_333_334), m(5_333_333), m(5_333_333)]
        );
        assert_eq!(evenly(m(2), 3).unwrap(), vec![m(1), m(1), m(0)]);
        assert_eq!(evenly(m(-2), 3).unwrap(), vec![m(-1), m(-1), m(0)]);
        assert_eq!(
            by_weight(m(10), &[0, 1, 0]).unwrap(),
            vec![m(0), m(10), m(0)]
        );
        assert_eq!(by_weight(m(10), &[0, 0]), None);
        assert_eq!(by_weight(m(10), &[]), None);
    }

    #[test]
    fn weighted_like_opencost_4b() {
        // 18 shared by 28:36 → 7.875 / 10.125.
        let parts = by_money(m(18_000_000), &[m(28_000_000), m(36_000_000)]).unwrap();
        assert_eq!(parts, vec![m(7_875_000), m(10_125_000)]);
    }

    #[test]
    fn a_zero_weight_never_gets_a_leftover() {
        // 1 micro over weights (0, 0, 3, 3): the leftover goes to a weighted part.
        let parts = by_weight(m(1), &[0, 0, 3, 3]).unwrap();
        assert_eq!(parts, vec![m(0), m(0), m(1), m(0)]);
    }

    proptest! {
        #[test]
        fn parts_add_up_and_stay_close(
            amount in -1_000_000_000_000i64..1_000_000_000_000,
            weights in proptest::collection::vec(0u64..1_000_000_000, 1..40),
        ) {
            if let Some(parts) = by_weight(m(amount), &weights) {
                let total: u64 = weights.iter().sum();
                prop_assert_eq!(Money::sum(parts.iter().copied()).unwrap(), m(amount));
                for (p, w) in parts.iter().zip(&weights) {
                    let exact = amount as f64 * (*w as f64) / total as f64;
                    prop_assert!((p.micros() as f64 - exact).abs() <= 1.0 + exact.abs() * 1e-12);
                    if *w == 0 { prop_assert_eq!(p.micros(), 0); }
                }
            } else {
                prop_assert!(weights.iter().all(|w| *w == 0));
            }
        }
    }
}
