//! Document lines and totals (O6), in integer minor units.
//!
//! The rounding rule, the only one: each line's value without VAT is
//! `quantity_milli × unit_price × (10000 − discount_bp) / (1000 × 10000)` and its VAT is
//! `value × vat_rate_bp / 10000`, each rounded half away from zero to a minor unit; its value
//! with VAT is their sum. A document's totals (and its per-rate breakdown) are the sums of its
//! lines' rounded amounts, so they always equal the sum of the lines, to the unit.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::money::{div_round_half_away, fit};

/// Most lines a document may have.
pub const MAX_LINES: usize = 500;
/// Largest quantity, in thousandths (a million units).
pub const MAX_QUANTITY_MILLI: i64 = 1_000_000_000;
/// Largest unit price, in minor units (a billion currency units). With the quantity bound, a
/// line's value stays below 10^17 minor units, so 40 lines at 100% VAT still fit in `i64`; a
/// document whose total does not fit is refused by [`Totals::of`].
pub const MAX_UNIT_PRICE: i64 = 100_000_000_000;
/// 100% in basis points.
pub const FULL_BP: i32 = 10_000;

/// What a line's amounts are computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineValues {
    /// Quantity in thousandths of the unit, greater than 0.
    pub quantity_milli: i64,
    /// Price per unit without VAT, in minor units, not negative.
    pub unit_price: i64,
    /// VAT rate in basis points, 0..=10000.
    pub vat_rate_bp: i32,
    /// Discount in basis points, 0..=10000.
    pub discount_bp: i32,
}

impl LineValues {
    /// Checks every bound; the reasons name the proto field of the line that is wrong.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut bad = Vec::new();
        if self.quantity_milli <= 0 {
            bad.push(("quantity_milli", "must be greater than 0".to_owned()));
        } else if self.quantity_milli > MAX_QUANTITY_MILLI {
            bad.push((
                "quantity_milli",
                format!("must be at most {MAX_QUANTITY_MILLI}"),
            ));
        }
        if self.unit_price < 0 {
            bad.push(("unit_price", "must not be negative".to_owned()));
        } else if self.unit_price > MAX_UNIT_PRICE {
            bad.push(("unit_price", format!("must be at most {MAX_UNIT_PRICE}")));
        }
        if !(0..=FULL_BP).contains(&self.vat_rate_bp) {
            bad.push(("vat_rate_bp", "must be between 0 and 10000".to_owned()));
        }
        if !(0..=FULL_BP).contains(&self.discount_bp) {
            bad.push(("discount_bp", "must be between 0 and 10000".to_owned()));
        }
        bad
    }

    /// The line's amounts by the rounding rule. Values within [`LineValues::check`]'s bounds
    /// always fit.
    pub fn amounts(&self) -> Result<LineAmounts, String> {
        let gross_price = i128::from(self.quantity_milli) * i128::from(self.unit_price);
        let without_vat = div_round_half_away(
            gross_price * i128::from(FULL_BP - self.discount_bp),
            1000 * i128::from(FULL_BP),
        );
        let vat = div_round_half_away(
            without_vat * i128::from(self.vat_rate_bp),
            i128::from(FULL_BP),
        );
        Ok(LineAmounts {
            without_vat: fit(without_vat)?,
            vat: fit(vat)?,
            with_vat: fit(without_vat + vat)?,
        })
    }
}

/// The rounded amounts of one line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineAmounts {
    /// Value without VAT.
    pub without_vat: i64,
    /// VAT.
    pub vat: i64,
    /// Value with VAT (= without_vat + vat).
    pub with_vat: i64,
}

/// A line of a document as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Its id.
    pub id: Uuid,
    /// The article.
    pub article_id: Uuid,
    /// The article's code when the line was written.
    pub article_code: String,
    /// Text of the line.
    pub description: String,
    /// Unit of measure.
    pub unit: String,
    /// Quantity, price, VAT rate, discount.
    pub values: LineValues,
    /// Its amounts, computed from `values`.
    pub amounts: LineAmounts,
    /// The line of the source document it came from.
    pub source_line_id: Option<Uuid>,
}

/// The VAT of one rate on a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VatBreakdown {
    /// VAT rate in basis points.
    pub vat_rate_bp: i32,
    /// Sum of the lines' values without VAT at this rate.
    pub taxable: i64,
    /// Sum of the lines' VAT at this rate.
    pub vat: i64,
}

/// A document's totals: sums of its lines' rounded amounts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Sum of values without VAT.
    pub without_vat: i64,
    /// Sum of VAT.
    pub vat: i64,
    /// Sum of values with VAT.
    pub with_vat: i64,
    /// One entry per rate used, ascending.
    pub breakdown: Vec<VatBreakdown>,
}

impl Totals {
    /// The totals of `amounts` (each with its VAT rate).
    pub fn of<'a>(lines: impl IntoIterator<Item = (&'a LineAmounts, i32)>) -> Result<Self, String> {
        let (mut without_vat, mut vat, mut with_vat) = (0_i128, 0_i128, 0_i128);
        let mut by_rate: BTreeMap<i32, (i128, i128)> = BTreeMap::new();
        for (amounts, rate) in lines {
            without_vat += i128::from(amounts.without_vat);
            vat += i128::from(amounts.vat);
            with_vat += i128::from(amounts.with_vat);
            let entry = by_rate.entry(rate).or_default();
            entry.0 += i128::from(amounts.without_vat);
            entry.1 += i128::from(amounts.vat);
        }
        Ok(Self {
            without_vat: fit(without_vat)?,
            vat: fit(vat)?,
            with_vat: fit(with_vat)?,
            breakdown: by_rate
                .into_iter()
                .map(|(vat_rate_bp, (taxable, vat))| {
                    Ok(VatBreakdown {
                        vat_rate_bp,
                        taxable: fit(taxable)?,
                        vat: fit(vat)?,
                    })
                })
                .collect::<Result<_, String>>()?,
        })
    }

    /// The totals of `lines`.
    pub fn of_lines(lines: &[Line]) -> Result<Self, String> {
        Self::of(lines.iter().map(|l| (&l.amounts, l.values.vat_rate_bp)))
    }
}

/// The quantity in thousandths of hours for `minutes` of work, rounded half away from zero
/// (T9: 50 minutes → 833 thousandths of an hour).
pub fn hours_milli_from_minutes(minutes: i64) -> i64 {
    // Within i64: minutes × 1000 for any realistic task length.
    i64::try_from(div_round_half_away(i128::from(minutes) * 1000, 60)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn values(quantity_milli: i64, unit_price: i64, vat: i32, discount: i32) -> LineValues {
        LineValues {
            quantity_milli,
            unit_price,
            vat_rate_bp: vat,
            discount_bp: discount,
        }
    }

    #[test]
    fn a_line_is_rounded_half_away_from_zero_at_each_step() {
        // 1.5 × 3.33 = 4.995 → 5.00; VAT 19% of 5.00 = 0.95.
        let a = values(1500, 333, 1900, 0).amounts().unwrap();
        assert_eq!(
            a,
            LineAmounts {
                without_vat: 500,
                vat: 95,
                with_vat: 595
            }
        );
        // 3 × 0.10 with 15% discount = 0.255 → 0.26; VAT 9% of 0.26 = 0.0234 → 0.02.
        let a = values(3000, 10, 900, 1500).amounts().unwrap();
        assert_eq!((a.without_vat, a.vat, a.with_vat), (26, 2, 28));
        // A full discount is zero.
        assert_eq!(
            values(1000, 999, 1900, 10_000).amounts().unwrap().with_vat,
            0
        );
    }

    #[test]
    fn bounds_name_the_fields() {
        let bad: Vec<&str> = values(0, -1, 10_001, -5)
            .check()
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            bad,
            ["quantity_milli", "unit_price", "vat_rate_bp", "discount_bp"]
        );
        assert!(
            values(MAX_QUANTITY_MILLI, MAX_UNIT_PRICE, 10_000, 0)
                .check()
                .is_empty()
        );
    }

    #[test]
    fn the_breakdown_is_per_rate_ascending() {
        let lines = [
            (values(1000, 10_000, 1900, 0).amounts().unwrap(), 1900),
            (values(2000, 500, 900, 0).amounts().unwrap(), 900),
            (values(1000, 100, 1900, 0).amounts().unwrap(), 1900),
        ];
        let totals = Totals::of(lines.iter().map(|(a, r)| (a, *r))).unwrap();
        assert_eq!(
            totals.breakdown,
            [
                VatBreakdown {
                    vat_rate_bp: 900,
                    taxable: 1000,
                    vat: 90
                },
                VatBreakdown {
                    vat_rate_bp: 1900,
                    taxable: 10_100,
                    vat: 1919
                },
            ]
        );
        assert_eq!(totals.with_vat, 11_100 + 2009);
    }

    #[test]
    fn task_hours_are_rounded() {
        assert_eq!(hours_milli_from_minutes(60), 1000);
        assert_eq!(hours_milli_from_minutes(50), 833);
        assert_eq!(hours_milli_from_minutes(1), 17);
        assert_eq!(hours_milli_from_minutes(90), 1500);
    }

    fn valid_values() -> impl Strategy<Value = LineValues> {
        (
            1..=MAX_QUANTITY_MILLI,
            0..=MAX_UNIT_PRICE,
            0..=FULL_BP,
            0..=FULL_BP,
        )
            .prop_map(|(q, p, v, d)| values(q, p, v, d))
    }

    proptest! {
        /// The totals equal the sum of the lines, with VAT equals without plus VAT, and the
        /// breakdown adds up to the totals — for any lines within bounds.
        #[test]
        fn totals_are_the_sum_of_the_lines(lines in prop::collection::vec(valid_values(), 0..40)) {
            let amounts: Vec<(LineAmounts, i32)> = lines
                .iter()
                .map(|v| (v.amounts().unwrap(), v.vat_rate_bp))
                .collect();
            let totals = Totals::of(amounts.iter().map(|(a, r)| (a, *r))).unwrap();
            let sum = |f: fn(&LineAmounts) -> i64| amounts.iter().map(|(a, _)| i128::from(f(a))).sum::<i128>();
            prop_assert_eq!(i128::from(totals.without_vat), sum(|a| a.without_vat));
            prop_assert_eq!(i128::from(totals.vat), sum(|a| a.vat));
            prop_assert_eq!(i128::from(totals.with_vat), sum(|a| a.with_vat));
            prop_assert_eq!(totals.with_vat, totals.without_vat + totals.vat);
            prop_assert_eq!(totals.breakdown.iter().map(|b| b.taxable).sum::<i64>(), totals.without_vat);
            prop_assert_eq!(totals.breakdown.iter().map(|b| b.vat).sum::<i64>(), totals.vat);
        }

        /// Each rounded amount is within half a minor unit of the exact rational value.
        #[test]
        fn each_line_is_within_half_a_unit_of_exact(v in valid_values()) {
            let a = v.amounts().unwrap();
            let exact_num = i128::from(v.quantity_milli) * i128::from(v.unit_price) * i128::from(FULL_BP - v.discount_bp);
            let den = 1000 * i128::from(FULL_BP);
            // |without_vat − num/den| ≤ 1/2  ⇔  |2·without_vat·den − 2·num| ≤ den
            prop_assert!((2 * i128::from(a.without_vat) * den - 2 * exact_num).abs() <= den);
            let vat_num = i128::from(a.without_vat) * i128::from(v.vat_rate_bp);
            prop_assert!((2 * i128::from(a.vat) * i128::from(FULL_BP) - 2 * vat_num).abs() <= i128::from(FULL_BP));
            prop_assert_eq!(a.with_vat, a.without_vat + a.vat);
        }
    }
}
